"""`nlpft finetune | predict | evaluate`: text classification and regression from a labeled file.

finetune: read and validate the file(s) (before any model loads) -> seeded stratified split
when valid/test files are not given -> label map from train, checked against valid/test ->
backbone: `tfidf` (scikit-learn) or a Hugging Face checkpoint with a sequence-classification
head -> train with the fine-tuning trainer (dynamic padding, length-grouped batches,
warmup + decay, keep-best, early stopping, pickle-free checkpoints) -> test metrics,
predictions.csv, report.md and plots -> publish OUT.

For Hugging Face backbones OUT is a standard model directory (config.json with id2label,
model.safetensors, tokenizer), so `transformers.pipeline("text-classification", model=OUT)`
works without nlpft; nlpft's own files sit beside it (finetune.json, metrics.json, ...).
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nlpft.data.fingerprint import fingerprint, record_or_check
from nlpft.errors import UserInputError, check_seed, check_threads
from nlpft.runners.output import RunOutput, peak_rss_bytes, place_errors_reported, write_json
from nlpft.training.memory import set_phase

META_FILE = "finetune.json"
BEST_DIR = "best"
TRANSFORMER_EPOCHS = 3.0
WORD_LEVEL_EPOCHS = 20.0  # static vectors and the RNN LM: seconds to minutes an epoch; early stopping ends them
SMALL_MODEL = 10_000_000  # transformers below this (e.g. from `nlpft pretrain --size tiny`) get SMALL_MODEL_LR
SMALL_MODEL_LR = 5e-4
UNKNOWN_WARNING = 0.05  # word-level backbones: say so when this share of the training words is [UNK]


@dataclass
class FinetuneOptions:
    train: str
    out: str
    valid: str | None = None
    test: str | None = None
    model: str = "minilm"
    text_col: str = "text"
    text_pair_col: str | None = None
    label_col: str = "label"
    task: str = "single"
    label_delimiter: str = ";"
    skip_bad_rows: bool = False
    normalize_labels: bool = False  # merge labels that differ only in case (see data.labeled.label_key)
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    epochs: float | None = None
    max_steps: int | None = None
    lr: float | None = None
    batch_size: int = 16
    grad_accum: int = 1
    max_length: int = 256
    warmup: float = 0.1
    weight_decay: float = 0.01
    scheduler: str = "linear"
    class_weights: str | None = None
    patience: int | None = 2
    eval_every: int | None = None  # steps; None: every epoch
    checkpoint_every: int = 200
    group_by_length: bool = True
    freeze_embeddings: bool = False
    no_gradual_unfreeze: bool = False
    layer_lr_factor: float = 2.6
    random_init: bool = False
    pooling: str = "cls"  # BERT-style encoders: "cls" (the stock pooler) or "mean"
    precision: str = "auto"  # auto: bf16 for transformers where the hardware does it natively
    seed: int = 1
    threads: int | None = None
    quiet: bool = False
    resume: bool = False
    overwrite: bool = False  # replace an earlier nlpft output in `out`


# -- data ----------------------------------------------------------------------------------
@dataclass
class Splits:
    train: list
    valid: list
    test: list
    label_map: object | None  # LabelMap; None for regression
    skipped: dict


def read_splits(opts: FinetuneOptions, bad_rows_dir: Path | None = None) -> Splits:
    """Every file read and checked, split if needed; raises UserInputError on bad input."""
    from nlpft.data.labeled import (
        build_label_map,
        check_labels,
        preferred_spellings,
        read_labeled,
        respell_labels,
        stratified_split,
    )

    common = dict(text_col=opts.text_col, label_col=opts.label_col, text_pair_col=opts.text_pair_col,
                  task=opts.task, label_delimiter=opts.label_delimiter, skip_bad_rows=opts.skip_bad_rows,
                  bad_rows_dir=bad_rows_dir, normalize_labels=opts.normalize_labels)
    train = read_labeled(opts.train, training=True, **common)
    valid = read_labeled(opts.valid, training=False, **common) if opts.valid else None
    test = read_labeled(opts.test, training=False, **common) if opts.test else None
    files = [data for data in (train, valid, test) if data is not None]
    for warning in filter(None, (data.label_variants_warning() for data in files)):
        if _rank() == 0:  # a data problem: shown even with --quiet, once under torchrun
            print(f"warning: {warning}", file=sys.stderr)
    skipped = {name: data.skipped_summary() for name, data in (("train", train), ("valid", valid), ("test", test))
               if data is not None and data.num_skipped}
    train_rows, valid_rows, test_rows = list(train), list(valid) if valid else None, list(test) if test else None
    if opts.normalize_labels and opts.task != "regression":  # valid/test spell each label as train does
        spellings = preferred_spellings(train_rows)
        valid_rows = respell_labels(valid_rows, spellings) if valid_rows is not None else None
        test_rows = respell_labels(test_rows, spellings) if test_rows is not None else None
    if valid_rows is None or test_rows is None:
        fractions = (0.0 if valid_rows is not None else opts.valid_fraction,
                     0.0 if test_rows is not None else opts.test_fraction)
        train_rows, split_valid, split_test = stratified_split(train_rows, valid_fraction=fractions[0],
                                                               test_fraction=fractions[1], seed=opts.seed)
        valid_rows = valid_rows if valid_rows is not None else split_valid
        test_rows = test_rows if test_rows is not None else split_test
    if not valid_rows or not test_rows:
        raise UserInputError(f"{opts.train}: too few rows to hold out validation and test examples; "
                             "pass --valid and --test files or use a larger file")
    label_map = None
    if opts.task != "regression":
        label_map = build_label_map(train_rows)
        check_labels(valid_rows, label_map, opts.valid or f"{opts.train} (validation split)")
        check_labels(test_rows, label_map, opts.test or f"{opts.train} (test split)")
    return Splits(train_rows, valid_rows, test_rows, label_map, skipped)


def _check_options(opts: FinetuneOptions) -> None:
    from nlpft.finetune.tasks import TASKS

    checks = [
        (opts.task in TASKS, f"--task must be one of {', '.join(TASKS)}"),
        (opts.batch_size >= 1 and opts.grad_accum >= 1, "--batch-size and --grad-accum must be at least 1"),
        (opts.max_length >= 8, "--max-length must be at least 8"),
        (opts.epochs is None or opts.epochs > 0, "--epochs must be positive"),
        (opts.max_steps is None or opts.max_steps >= 1, "--max-steps must be at least 1"),
        (opts.lr is None or opts.lr > 0, "--lr must be positive"),
        (opts.patience is None or opts.patience >= 1, "--patience must be at least 1"),
        (opts.eval_every is None or opts.eval_every >= 1, "--eval-every must be at least 1"),
        (opts.checkpoint_every >= 1, "--checkpoint-every must be at least 1"),
        (opts.pooling in ("cls", "mean"), "--pooling must be cls or mean"),
        (opts.layer_lr_factor >= 1, "--layer-lr-factor must be 1 (one rate for all layers) or more"),
        (0 < opts.valid_fraction < 0.5 and 0 < opts.test_fraction < 0.5,
         "--valid-fraction and --test-fraction must be between 0 and 0.5"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserInputError(message)
    check_seed(opts.seed)
    check_threads(opts.threads)


# -- finetune ------------------------------------------------------------------------------
def finetune(opts: FinetuneOptions) -> Path:
    _check_options(opts)
    from nlpft.data.registry import resolve_labeled_file

    opts.train = resolve_labeled_file(opts.train)  # a path, or a dataset name such as `polarity`
    opts.valid = resolve_labeled_file(opts.valid) if opts.valid else None
    opts.test = resolve_labeled_file(opts.test) if opts.test else None
    rank = _rank()
    # under torchrun every process runs this; rank 0 owns the output directory
    output = RunOutput(opts.out, resume=opts.resume or rank != 0, overwrite=opts.overwrite, command="finetune",
                       inputs=[opts.train, opts.valid, opts.test, None if opts.model == "tfidf" else opts.model])
    splits = read_splits(opts, bad_rows_dir=output.final.parent if output.final.parent.exists() else None)
    resolved = None
    if opts.model == "tfidf":
        backbone = "tfidf"
    elif (word_kind := word_backbone_kind(opts.model)) is not None:
        backbone = word_kind
    else:
        from nlpft.pretrained.loading import resolve_model

        resolved = resolve_model(opts.model)  # a bad model name fails here, before anything loads
        if resolved.family not in ("encoder", "decoder"):
            raise UserInputError(f"{opts.model}: a {resolved.model_type} model is neither an encoder (BERT-style) "
                                 "nor a decoder (GPT-style)")
        backbone = f"hf-{resolved.family}"
    if opts.pooling == "mean" and backbone != "hf-encoder":
        what = "a GPT-style decoder (pooled at its last token)" if backbone == "hf-decoder" else "not one"
        raise UserInputError(f"--pooling mean applies to BERT-style encoders; {opts.model} is {what}")
    from nlpft.training.precision import resolve_precision

    opts.precision = resolve_precision(opts.precision, transformer=backbone.startswith("hf-"))
    opts.quiet = opts.quiet or rank != 0
    if not opts.quiet:
        sizes = f"{len(splits.train):,} train, {len(splits.valid):,} valid, {len(splits.test):,} test examples"
        labels = f", {len(splits.label_map)} labels" if splits.label_map is not None else ""
        matrix_work = f", {opts.precision}" if backbone != "tfidf" else ""
        print(f"finetune: {sizes}{labels}; backbone {opts.model}{matrix_work}", file=sys.stderr)
        for name, summary in splits.skipped.items():
            print(f"  {name}: skipped {summary}", file=sys.stderr)
    import torch

    if opts.threads:
        torch.set_num_threads(opts.threads)
    if backbone == "tfidf" and rank != 0:
        return output.final  # one process is enough for scikit-learn
    from nlpft.training.hf import transformers_quiet  # imported before OUT.partial exists: it takes a while

    work = output.open() if rank == 0 else output.partial
    with output.cleaned_up_on_error(owner=rank == 0), transformers_quiet():
        record_or_check(work, _fingerprint(opts), resuming=opts.resume, record=rank == 0)
        if backbone == "tfidf":
            result = _finetune_tfidf(opts, splits, work)
        else:
            built = _hf_backbone(opts, resolved) if resolved is not None else _word_backbone(opts, backbone)
            result = _finetune_neural(opts, splits, built, work, output)
        if rank != 0:
            return output.final
        headline = _write_outputs(opts, splits, work, backbone, **result)
        final = output.publish()
    if not opts.quiet:
        print(f"finetune: test {headline} -> {final}", file=sys.stderr)
    return final


#: options that shape the data, the labels and the model; the rest (--epochs, --max-steps,
#: --lr, the schedule, --patience, --threads, ...) may change when a run is resumed
_SHAPING_OPTIONS = ("text_col", "text_pair_col", "label_col", "task", "label_delimiter", "skip_bad_rows",
                    "valid_fraction", "test_fraction", "batch_size", "grad_accum", "max_length", "class_weights",
                    "group_by_length", "freeze_embeddings", "no_gradual_unfreeze", "layer_lr_factor", "random_init",
                    "pooling", "precision", "seed")


def _fingerprint(opts: FinetuneOptions) -> dict:
    options = {f"--{name.replace('_', '-')}": getattr(opts, name) for name in _SHAPING_OPTIONS}
    return fingerprint({"--train": opts.train, "--valid": opts.valid, "--test": opts.test, "--model": opts.model},
                       options)


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))


def _finetune_tfidf(opts: FinetuneOptions, splits: Splits, work: Path) -> dict:
    from nlpft.finetune.tfidf import TfidfClassifier

    started = time.perf_counter()
    model = TfidfClassifier.fit(splits.train, opts.task, splits.label_map, seed=opts.seed)
    train_s = time.perf_counter() - started
    if opts.task == "multi":
        model.tune_thresholds(splits.valid, splits.label_map)
    model.save(work)
    scores = model.scores_of(splits.test)
    return {"task_spec": model.task, "test_scores": scores, "train_s": train_s, "history": [],
            "parameters": model.num_parameters(), "steps": None, "epochs": None}


@dataclass
class Backbone:
    """What the shared training path needs from a backbone."""

    kind: str  # "hf-encoder" | "hf-decoder" | "static" | "rnn-lm"
    tokenizer: object  # an nlpft TextTokenizer
    pad_id: int
    max_length: int
    build_model: object  # (num_labels, names, task) -> model
    default_lr: float
    prefix_ids: tuple = ()
    suffix_ids: tuple = ()
    processing_class: object = None  # saved with the model (Hugging Face tokenizers)
    ulmfit: bool = False


def _hf_backbone(opts: FinetuneOptions, resolved) -> Backbone:
    from nlpft.finetune.tasks import HF_PROBLEM_TYPE
    from nlpft.pretrained.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(resolved)
    hf_tok = tokenizer.hf
    if hf_tok.pad_token_id is None:  # GPT-2 style: pad with end-of-text, masked out by attention
        if hf_tok.eos_token is None:
            raise UserInputError(f"{resolved.name}: the tokenizer has neither a pad nor an end-of-text token")
        hf_tok.pad_token = hf_tok.eos_token
    from nlpft.pretrained.loading import load_config

    embedding_rows = getattr(load_config(resolved), "vocab_size", None)  # checked before the weights load
    if embedding_rows is not None and len(hf_tok) > embedding_rows:
        raise UserInputError(f"{resolved.where}: the tokenizer has {len(hf_tok):,} ids but the model's embedding "
                             f"has {embedding_rows:,} rows; the tokenizer and the weights come from different "
                             "checkpoints (save them together, or pass the matching tokenizer's directory)")

    def build(num_labels: int, names: list[str], task: str):
        extra = {"num_labels": num_labels, "problem_type": HF_PROBLEM_TYPE[task]}
        if names:
            extra.update(id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
        if opts.pooling == "mean":
            from nlpft.finetune.pooled import MeanPoolClassifier

            if opts.random_init:
                from transformers import AutoModel

                encoder = AutoModel.from_config(load_config(resolved))
            else:
                encoder = load_model(resolved, head="base", quiet=True)
            for key, value in extra.items():
                setattr(encoder.config, key, value)
            encoder.train()
            return MeanPoolClassifier(encoder, num_labels)
        if opts.random_init:  # the architecture and tokenizer only: what pretraining buys, measured
            from transformers import AutoModelForSequenceClassification

            config = load_config(resolved)
            for key, value in extra.items():
                setattr(config, key, value)
            model, info = AutoModelForSequenceClassification.from_config(config), {}
        else:
            model, info = load_model(resolved, head="sequence-classification", quiet=True,
                                     output_loading_info=True, **extra)
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = hf_tok.pad_token_id
        new_head = sorted(info.get("missing_keys", []))
        if new_head and not opts.quiet:
            print(f"  new {num_labels}-way head initialised ({', '.join(new_head[:3])}); fine-tuning trains it "
                  "with the backbone", file=sys.stderr)
        return model

    return Backbone(kind=f"hf-{resolved.family}", tokenizer=tokenizer, pad_id=hf_tok.pad_token_id,
                    max_length=min(opts.max_length, tokenizer.max_length), build_model=build,
                    default_lr=2e-5 if resolved.family == "encoder" else 5e-5, processing_class=hf_tok)


def word_backbone_kind(spec: str) -> str | None:
    """"rnn-lm" for an `nlpft lm train` directory, "static" for an `nlpft embed train`
    directory or a word2vec file, None otherwise."""
    from nlpft.lm.files import is_rnn_lm_dir

    path = Path(spec)
    if is_rnn_lm_dir(spec):
        return "rnn-lm"
    if path.is_dir() and (path / "vectors.bin").is_file():
        return "static"
    if path.is_file() and path.suffix in {".bin", ".txt", ".vec", ".gz"}:
        return "static"
    return None


def _word_backbone(opts: FinetuneOptions, kind: str) -> Backbone:
    from nlpft.finetune.word_models import WordClassifier, WordClassifierConfig

    if kind == "rnn-lm":
        from nlpft.lm.data import EOS_TOKEN
        from nlpft.lm.files import load_model_dir

        lm, tokenizer = load_model_dir(opts.model)
        eos = tokenizer.token_to_id(EOS_TOKEN)
        marks = (eos,) if eos is not None else ()

        def build(num_labels: int, names: list[str], task: str):
            config = WordClassifierConfig(kind="rnn-lm", num_labels=num_labels, vocab_size=lm.config.vocab_size,
                                          embedding_dim=lm.config.embedding_dim, pad_id=lm.config.pad_id,
                                          freeze_embeddings=opts.freeze_embeddings, rnn=lm.config.to_dict())
            model = WordClassifier(config)
            if not opts.random_init:
                model.lm.load_state_dict(lm.state_dict())
            return model

        # the LM saw every line between [EOS] marks: texts are framed the same way
        return Backbone(kind="rnn-lm", tokenizer=tokenizer, pad_id=lm.config.pad_id, max_length=opts.max_length,
                        build_model=build, default_lr=2e-3, prefix_ids=marks, suffix_ids=marks, ulmfit=True)

    import numpy as np_

    from nlpft.embeddings.vectors_io import load_vectors, vectors_for_vocabulary
    from nlpft.tokenization import WordTokenizer

    kv = load_vectors(opts.model)
    folder = Path(opts.model)
    if folder.is_dir() and (folder / "tokenizer.json").is_file():
        tokenizer = WordTokenizer.load(folder / "tokenizer.json")
    else:  # a bare word2vec file: its words are the vocabulary; keep case if the file has any
        words = list(kv.index_to_key)
        tokenizer = WordTokenizer.from_vocabulary(words, lowercase=not any(w != w.lower() for w in words[:10000]))
    pad = tokenizer.token_to_id("[PAD]") or 0

    def build(num_labels: int, names: list[str], task: str):
        import torch

        config = WordClassifierConfig(kind="static", num_labels=num_labels, vocab_size=tokenizer.vocab_size,
                                      embedding_dim=kv.vector_size, pad_id=pad,
                                      freeze_embeddings=opts.freeze_embeddings)
        model = WordClassifier(config)
        if opts.random_init:
            return model
        init = np_.random.default_rng(opts.seed).uniform(-0.1, 0.1, (tokenizer.vocab_size, kv.vector_size))
        matrix, coverage = vectors_for_vocabulary(kv, tokenizer, init.astype(np_.float32))
        if coverage["found"] == 0:
            raise UserInputError(f"{opts.model}: none of the tokenizer's {coverage['words']:,} words has a vector; "
                                 "tokenizer.json and the vectors come from different runs")
        matrix[pad] = 0.0
        with torch.no_grad():
            model.embedding.weight.copy_(torch.from_numpy(matrix))
        if not opts.quiet:
            print(f"  static vectors: {coverage['found']:,}/{coverage['words']:,} words "
                  f"({coverage['coverage']:.1%}) {'frozen' if opts.freeze_embeddings else 'tuned'}", file=sys.stderr)
        return model

    return Backbone(kind="static", tokenizer=tokenizer, pad_id=pad, max_length=opts.max_length, build_model=build,
                    default_lr=2e-3)


def _finetune_neural(opts: FinetuneOptions, splits: Splits, backbone: Backbone, work: Path,
                     output: RunOutput) -> dict:
    import torch

    from nlpft.finetune.data import EncodedDataset, encode_examples, label_values
    from nlpft.finetune.tasks import TaskSpec, class_weights

    def encode(rows):
        pairs = [e.text_pair for e in rows] if opts.text_pair_col else None
        return encode_examples(backbone.tokenizer, [e.text for e in rows], pairs, backbone.max_length,
                               prefix_ids=backbone.prefix_ids, suffix_ids=backbone.suffix_ids)

    set_phase("encoding the texts")
    encoded = {name: encode(getattr(splits, name)) for name in ("train", "valid", "test")}
    labels = {name: label_values(getattr(splits, name), opts.task, splits.label_map) for name in encoded}
    datasets = {name: EncodedDataset(encoded[name], labels[name]) for name in encoded}
    train_unknown = encoded["train"].unknown_rate
    if not opts.quiet and train_unknown >= UNKNOWN_WARNING:
        print(f"  {train_unknown:.1%} of the training text's words are outside {opts.model}'s "
              f"{backbone.tokenizer.vocab_size:,}-word vocabulary and read as [UNK]; a backbone trained on "
              "text like yours (or tfidf) covers more", file=sys.stderr)
    if not opts.quiet and encoded["train"].truncated:
        print(f"  {encoded['train'].truncated:,} training texts are longer than {backbone.max_length} tokens and "
              "were cut (raise --max-length to keep more)", file=sys.stderr)

    names = list(splits.label_map.labels) if splits.label_map is not None else []
    num_labels = len(names) if opts.task != "regression" else 1
    counts = [sum(1 for v in labels["train"] if v == i) for i in range(num_labels)] if opts.task == "single" else \
        [int(sum(v[i] for v in labels["train"])) for i in range(num_labels)] if opts.task == "multi" else []
    task = TaskSpec(opts.task, num_labels, class_weights=class_weights(opts.class_weights, counts, names)
                    if opts.task != "regression" else None)

    torch.manual_seed(opts.seed)
    model = backbone.build_model(num_labels, names, opts.task)
    trainer = _trainer(opts, model, backbone, datasets, task, work, output)
    from nlpft.training.hf import (
        StopOnSignal,
        checkpoint_step,
        complete_checkpoints,
        latest_checkpoint,
    )

    resume_from = None
    if opts.resume:
        # rank 0 clears half-written checkpoints; the others only look
        resume_from = (latest_checkpoint(output.checkpoint_dir) if _rank() == 0
                       else (complete_checkpoints(output.checkpoint_dir) or [None])[-1])
    if resume_from is not None and not opts.quiet:
        print(f"resuming from {resume_from.name}", file=sys.stderr)
    set_phase("training")
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_s = time.perf_counter() - started
    stopper = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, StopOnSignal))
    if stopper.signal_name is not None:
        from nlpft.errors import Interrupted

        raise Interrupted(stopper.signal_name)

    trainer.accelerator.wait_for_everyone()  # rank 0 may still be writing the best weights
    best = work / BEST_DIR
    if (best / "model.safetensors").is_file():
        from safetensors.torch import load_model as load_weights

        missing, unexpected = load_weights(model, str(best / "model.safetensors"), strict=False)
        if missing or unexpected:
            raise RuntimeError(f"best weights do not match the model: missing {sorted(missing)[:3]}, "
                               f"unexpected {sorted(unexpected)[:3]}")
    if opts.task == "multi":
        task.tune_thresholds(task.scores(_logits(trainer, datasets["valid"])), np.asarray(labels["valid"]))
    test_scores = task.scores(_logits(trainer, datasets["test"]))
    if hasattr(model, "config") and hasattr(model.config, "use_cache"):
        model.config.use_cache = True
    trainer.save_model(str(work))
    trainer.accelerator.wait_for_everyone()
    if _rank() == 0:
        import shutil

        if backbone.processing_class is None:
            backbone.tokenizer.save(work)  # tokenizer.json next to the classifier
        (work / "training_args.json").unlink(missing_ok=True)
        shutil.rmtree(best, ignore_errors=True)
    steps_this_run = trainer.state.global_step - (checkpoint_step(resume_from) if resume_from else 0)
    examples_seen = steps_this_run * opts.batch_size * opts.grad_accum * trainer.args.world_size
    return {"task_spec": task, "test_scores": test_scores, "train_s": train_s,
            "history": trainer.state.log_history, "parameters": sum(p.numel() for p in model.parameters()),
            "steps": trainer.state.global_step, "epochs": trainer.state.epoch,
            "train_examples_per_s": examples_seen / train_s if train_s > 0 else None,
            "truncated": {name: e.truncated for name, e in encoded.items()},
            **({"unknown_token_rate": {name: round(e.unknown_rate, 4) for name, e in encoded.items()}}
               if backbone.kind in ("static", "rnn-lm") else {}),
            "text_framing": {"prefix_ids": list(backbone.prefix_ids), "suffix_ids": list(backbone.suffix_ids)}}


def _save_state(model, directory: Path) -> None:
    """The whole module's weights, under the names `load_weights` restores them by (a
    mean-pooling classifier's save_pretrained writes encoder and head to separate files)."""
    from nlpft.training.weights import save_model

    save_model(model, str(Path(directory) / "model.safetensors"))


def _logits(trainer, dataset) -> np.ndarray:
    output = trainer.predict(dataset)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    return np.asarray(logits, dtype=np.float32)


def _trainer(opts: FinetuneOptions, model, backbone: Backbone, datasets: dict, task, work: Path,
             output: RunOutput):
    from nlpft.finetune.data import PadCollator
    from nlpft.finetune.trainer import (
        ClassifierTrainer,
        GradualUnfreeze,
        KeepBest,
        discriminative_optimizer,
    )
    from nlpft.training.hf import (
        ProgressBar,
        StopOnSignal,
        training_arguments,
        use_progress_bar,
    )

    per_epoch = math.ceil(len(datasets["train"]) / (opts.batch_size * opts.grad_accum))
    by_steps = opts.eval_every is not None or (opts.max_steps is not None and opts.max_steps < per_epoch)
    eval_steps = opts.eval_every or min(opts.max_steps or per_epoch, per_epoch)
    lr = opts.lr or default_lr(backbone, sum(p.numel() for p in model.parameters()))
    if opts.lr is None and lr != backbone.default_lr and not opts.quiet:
        print(f"  learning rate {lr:g}: the default for a transformer under {SMALL_MODEL:,} parameters "
              "(--lr sets it)", file=sys.stderr)
    default_epochs = TRANSFORMER_EPOCHS if backbone.kind.startswith("hf-") else WORD_LEVEL_EPOCHS
    args = training_arguments(
        output.checkpoint_dir, seed=opts.seed, precision=opts.precision,
        per_device_train_batch_size=opts.batch_size,
        per_device_eval_batch_size=max(opts.batch_size, 32),
        gradient_accumulation_steps=opts.grad_accum,
        learning_rate=lr,
        weight_decay=opts.weight_decay,
        warmup_steps=opts.warmup,
        lr_scheduler_type=opts.scheduler,
        num_train_epochs=opts.epochs if opts.epochs is not None else default_epochs,
        max_steps=opts.max_steps or -1,
        eval_strategy="steps" if by_steps else "epoch",
        eval_steps=eval_steps if by_steps else None,
        save_steps=opts.checkpoint_every,
        logging_steps=max(1, min(50, per_epoch // 4 or 1)),
        label_names=["labels"],
        remove_unused_columns=False,
    )
    greater = opts.task != "regression"
    metric = "macro_f1" if greater else "loss"
    keep_best = KeepBest(work / BEST_DIR, save=_save_state, metric=metric, greater_is_better=greater,
                         patience=opts.patience)
    callbacks = [StopOnSignal(), keep_best]
    optimizers = (None, None)
    if backbone.ulmfit:
        groups = model.layer_groups()
        optimizers = (discriminative_optimizer(groups, lr, opts.weight_decay, opts.layer_lr_factor), None)
        if not opts.no_gradual_unfreeze:
            callbacks.append(GradualUnfreeze(groups))
            # the last group thaws at the start of epoch len(groups) - 1: judge from its end on
            keep_best.patience_from_epoch = float(len(groups))
    trainer = ClassifierTrainer(
        model=model, args=args, train_dataset=datasets["train"], eval_dataset=datasets["valid"],
        data_collator=PadCollator(backbone.pad_id), processing_class=backbone.processing_class,
        callbacks=callbacks, compute_metrics=_metric_fn(task), task=task, group_by_length=opts.group_by_length,
        optimizers=optimizers)
    use_progress_bar(trainer, None if opts.quiet else ProgressBar(eval_name="valid loss", perplexity=False))
    return trainer


def default_lr(backbone: Backbone, parameters: int) -> float:
    """The learning rate when --lr is not given. The BERT/GPT-2 rates (2e-5, 5e-5) suit models
    of tens of millions of parameters; a small transformer barely moves at them (a 1.9M-
    parameter GPT-2 pretrained by nlpft reached 0.43 test accuracy on BBC News in 3 epochs at
    5e-5, 0.93 at 5e-4)."""
    if backbone.kind.startswith("hf-") and parameters < SMALL_MODEL:
        return SMALL_MODEL_LR
    return backbone.default_lr


def _metric_fn(task):
    def compute(eval_pred) -> dict:
        from sklearn.metrics import accuracy_score, f1_score

        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        gold = np.asarray(eval_pred.label_ids)
        decided = task.decide(task.scores(logits))
        if task.task == "regression":
            return {"mse": float(np.mean((decided - gold) ** 2))}
        if task.task == "multi":
            return {"macro_f1": float(f1_score(gold, decided, average="macro", zero_division=0))}
        return {"accuracy": float(accuracy_score(gold, decided)),
                "macro_f1": float(f1_score(gold, decided, average="macro", zero_division=0))}

    return compute


# -- outputs -------------------------------------------------------------------------------
def _gold(rows, task: str, label_map):
    if task == "single":
        return np.asarray([label_map.encode(e.label) for e in rows])
    if task == "multi":
        return np.stack([label_map.encode_multi(e.label) for e in rows])
    return np.asarray([float(e.label) for e in rows])


def _write_outputs(opts: FinetuneOptions, splits: Splits, work: Path, backbone: str, task_spec, test_scores,
                   train_s: float, history: list, parameters: int, steps, epochs, train_examples_per_s=None,
                   truncated=None, text_framing=None, unknown_token_rate=None) -> str:
    from nlpft.finetune import metrics as m

    names = list(splits.label_map.labels) if splits.label_map is not None else []
    decided = task_spec.decide(test_scores)
    test_metrics = m.task_metrics(opts.task, _gold(splits.test, opts.task, splits.label_map), decided, names)
    write_predictions(work / "predictions.csv", splits.test, opts.task, names, test_scores, decided, gold=True)
    plots = {}
    if opts.task == "single":
        plots["confusion matrix"] = m.plot_confusion_matrix(test_metrics, work / "confusion_matrix.png").name
    curve = m.plot_loss_curve(history, work / "loss_curve.png")
    if curve is not None:
        plots["loss curve"] = curve.name
    summary = {"model": opts.model, "task": opts.task, "backbone": backbone, "train_examples": len(splits.train),
               "valid_examples": len(splits.valid), "test_examples": len(splits.test), "epochs": epochs,
               "steps": steps, "train_time_s": train_s, "train_examples_per_s": train_examples_per_s,
               "precision": opts.precision if backbone != "tfidf" else None, "parameters": parameters, "peak_rss_mib": peak_rss_bytes() / 2**20}
    m.write_report(work / "report.md", summary, test_metrics, opts.task, plots)
    write_json(work / "metrics.json", {"test": test_metrics, **summary, "skipped_rows": splits.skipped,
                                       "truncated": truncated,
                                       **({"unknown_token_rate": unknown_token_rate} if unknown_token_rate else {}),
                                       "valid_history": [h for h in history if "eval_loss" in h],
                                       "train_history": [h for h in history if "loss" in h]})
    write_json(work / META_FILE, {"backbone": backbone, "task": task_spec.to_dict(),
                                  "label_map": splits.label_map.to_dict() if splits.label_map else None,
                                  "text_col": opts.text_col, "text_pair_col": opts.text_pair_col,
                                  "label_col": opts.label_col, "label_delimiter": opts.label_delimiter,
                                  "max_length": opts.max_length, "text_framing": text_framing,
                                  "options": asdict(opts)})
    headline = m.headline(opts.task, test_metrics)
    return headline


def write_predictions(path: Path, rows, task: str, names: list[str], scores: np.ndarray, decided: np.ndarray,
                      gold: bool) -> None:
    """CSV: row, text, [text_pair], [gold], predicted, then one probability column per label."""
    has_pair = any(getattr(row, "text_pair", None) is not None for row in rows)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # one per process: two runs never share it
    try:
        _write_prediction_rows(tmp, rows, task, names, scores, decided, gold, has_pair)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_prediction_rows(tmp: Path, rows, task: str, names: list[str], scores: np.ndarray, decided: np.ndarray,
                           gold: bool, has_pair: bool) -> None:
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        header = ["row", "text"] + (["text_pair"] if has_pair else []) + (["gold"] if gold else []) + ["predicted"]
        if task != "regression":
            header += [f"p_{name}" for name in names]
        writer.writerow(header)
        for i, row in enumerate(rows):
            if task == "single":
                predicted = names[int(decided[i])]
            elif task == "multi":
                predicted = ";".join(n for n, on in zip(names, decided[i], strict=True) if on)
            else:
                predicted = f"{float(decided[i]):.6g}"
            record = [row.row, row.text] + ([row.text_pair or ""] if has_pair else [])
            if gold:
                label = row.label
                record.append(";".join(label) if isinstance(label, tuple) else label)
            record.append(predicted)
            if task != "regression":
                record += [f"{p:.6f}" for p in scores[i]]
            writer.writerow(record)


# -- predict / evaluate ----------------------------------------------------------------------
def load_meta(model_dir: str | Path) -> dict:
    import json

    path = Path(model_dir) / META_FILE
    if not Path(model_dir).is_dir():
        raise UserInputError(f"{model_dir}: not a directory; pass the --out directory of `nlpft finetune`")
    if not path.is_file():
        raise UserInputError(f"{model_dir}: no {META_FILE} here; pass the --out directory of `nlpft finetune`")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UserInputError(f"{path}: not valid JSON ({exc})") from None
    _check_meta(meta, path)
    return meta


BACKBONES = ("tfidf", "static", "rnn-lm", "hf-encoder", "hf-decoder")


def _check_meta(meta: object, path: Path) -> None:
    """The fields predict/evaluate read, each of the right kind; a damaged or hand-made
    finetune.json stops here rather than as a KeyError after the model loads."""
    from nlpft.data.labeled import TASKS  # the same names as finetune.tasks, without importing torch

    def bad(problem: str) -> UserInputError:
        return UserInputError(f"{path}: {problem}; the directory is not a complete nlpft fine-tuning output: "
                              "retrain, or pass another --model")

    if not isinstance(meta, dict):
        raise bad(f"a JSON {type(meta).__name__}, not an object")
    for name, kinds, what in (("backbone", str, "a text"), ("task", dict, "an object"),
                              ("text_col", str, "a text"), ("label_col", str, "a text")):
        if name not in meta:
            raise bad(f"missing field {name!r}")
        if not isinstance(meta[name], kinds):
            raise bad(f"field {name!r} is {_json_kind(meta[name])}, expected {what}")
    for name, kinds, what in (("text_pair_col", str, "a text"), ("label_map", dict, "an object"),
                              ("max_length", int, "a whole number"), ("text_framing", dict, "an object"),
                              ("options", dict, "an object")):
        if meta.get(name) is not None and not isinstance(meta[name], kinds):
            raise bad(f"field {name!r} is {_json_kind(meta[name])}, expected {what} or null")
    if meta["backbone"] not in BACKBONES:
        raise bad(f"unknown backbone {meta['backbone']!r} (known: {', '.join(BACKBONES)})")
    task = meta["task"]
    if task.get("task") not in TASKS:
        raise bad(f"field 'task.task' is {task.get('task')!r}, expected one of {', '.join(TASKS)}")
    if isinstance(task.get("num_labels"), bool) or not isinstance(task.get("num_labels"), int):
        raise bad(f"field 'task.num_labels' is {_json_kind(task.get('num_labels'))}, expected a whole number")
    if task["task"] != "regression" and meta.get("label_map") is None:
        raise bad("missing field 'label_map' (a classifier needs its label names)")


def _json_kind(value: object) -> str:
    """"a string", "an array", ... as JSON calls what a field holds."""
    if value is None:
        return "missing or null"
    kinds = {bool: "a boolean", str: "a string", int: "a number", float: "a number", list: "an array",
             dict: "an object"}
    return kinds.get(type(value), type(value).__name__)


def score_texts(model_dir: str | Path, meta: dict, texts: list[str], pairs: list[str | None] | None = None,
                batch_size: int = 32, quiet: bool = True) -> tuple[np.ndarray, object, int]:
    """(scores, TaskSpec, how many texts were cut at max_length) for `texts`."""
    from nlpft.finetune.tasks import TaskSpec

    task = TaskSpec.from_dict(meta["task"])
    if meta["backbone"] == "tfidf":
        from nlpft.finetune.tfidf import TfidfClassifier

        model = TfidfClassifier.load(Path(model_dir))
        model.task.thresholds = task.thresholds
        return model.scores(texts, pairs), task, 0
    import torch

    from nlpft.finetune.data import EncodedDataset, PadCollator, encode_examples

    framing = meta.get("text_framing") or {}
    if meta["backbone"] in ("static", "rnn-lm"):
        from nlpft.finetune.word_models import WordClassifier
        from nlpft.tokenization import WordTokenizer

        model = WordClassifier.from_pretrained(model_dir)
        tokenizer = WordTokenizer.load(Path(model_dir) / "tokenizer.json")
        pad_id, max_length = model.config.pad_id, int(meta.get("max_length") or 256)
    else:
        from nlpft.finetune.pooled import MeanPoolClassifier, is_mean_pooled
        from nlpft.pretrained.loading import load_model, load_tokenizer
        from nlpft.training.hf import transformers_quiet

        with transformers_quiet():
            tokenizer = load_tokenizer(str(model_dir))
            model = (MeanPoolClassifier.from_pretrained(model_dir) if is_mean_pooled(model_dir)
                     else load_model(str(model_dir), head="sequence-classification", quiet=True))
        if tokenizer.hf.pad_token_id is None:
            tokenizer.hf.pad_token = tokenizer.hf.eos_token
        pad_id = tokenizer.hf.pad_token_id
        max_length = min(int(meta.get("max_length") or 512), tokenizer.max_length)
    from nlpft.training.weights import model_tensors, refuse_non_finite

    refuse_non_finite(model_tensors(model), model_dir)
    encoded = encode_examples(tokenizer, texts, pairs, max_length, prefix_ids=framing.get("prefix_ids", ()),
                              suffix_ids=framing.get("suffix_ids", ()))
    dataset = EncodedDataset(encoded)
    collate = PadCollator(pad_id)
    order = np.argsort([len(ids) for ids in encoded.input_ids], kind="stable")  # similar lengths together
    logits = np.zeros((len(texts), task.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            batch = collate([dataset[int(i)] for i in index])
            logits[index] = model(**batch)["logits"].float().numpy()
    return task.scores(logits), task, encoded.truncated


def _label_map(model_dir: str | Path, meta: dict):
    from nlpft.data.labeled import LabelMap

    return LabelMap.from_dict(meta["label_map"], source=f"{Path(model_dir) / META_FILE}: label_map")


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserInputError(f"--batch-size must be at least 1, not {batch_size!r}")


def _pair_column(meta: dict, override: str | None) -> str | None:
    """The second text's column for a pair model (`override` or the trained one), else None."""
    return (override or meta["text_pair_col"]) if meta.get("text_pair_col") else None


def predict(model_dir: str, input_path: str | None, text: str | None, out: str | None,
            text_col: str | None = None, batch_size: int = 32, text_pair: str | None = None,
            text_pair_col: str | None = None) -> dict:
    from nlpft.data.labeled import LabeledExample, read_labeled

    _check_batch_size(batch_size)
    meta = load_meta(model_dir)
    if (input_path is None) == (text is None):
        raise UserInputError("pass either --input FILE or --text TEXT")
    if out is not None:
        _check_predictions_file(Path(out), input_path)
    trained_on_pairs = bool(meta.get("text_pair_col"))
    skipped = []
    if text is not None:
        if not text.strip():
            raise UserInputError("--text is empty")
        if trained_on_pairs and not (text_pair or "").strip():
            raise UserInputError(f"{model_dir} was trained on text pairs (columns {meta['text_col']!r} and "
                                 f"{meta['text_pair_col']!r}); pass the second text with --text-pair")
        if text_pair is not None and not trained_on_pairs:
            raise UserInputError(f"{model_dir} was trained on single texts; drop --text-pair")
        rows = [LabeledExample(text=text, label=None, row=1, text_pair=text_pair)]
    else:
        if out is None:
            raise UserInputError("--input needs --out FILE for the predictions")
        if text_pair is not None:
            raise UserInputError("--text-pair goes with --text; with --input, the pair is a column "
                                 "(--text-pair-col)")
        data = read_labeled(input_path, text_col=text_col or meta["text_col"], label_col=meta["label_col"],
                            text_pair_col=_pair_column(meta, text_pair_col),
                            task=meta["task"]["task"], label_delimiter=meta.get("label_delimiter", ";"),
                            require_label=False, training=False)
        rows, skipped = list(data), list(data.skipped_rows)
        if not rows:
            raise UserInputError(f"{input_path}: no row has text to classify")
    pairs = [r.text_pair for r in rows] if trained_on_pairs else None
    scores, task, truncated = score_texts(model_dir, meta, [r.text for r in rows], pairs, batch_size=batch_size)
    decided = task.decide(scores)
    names = list(_label_map(model_dir, meta).labels) if meta.get("label_map") else []
    if out is not None:
        with place_errors_reported(Path(out)):
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            write_predictions(Path(out), rows, task.task, names, scores, decided, gold=False)
    return {"rows": rows, "scores": scores, "decided": decided, "names": names, "task": task.task,
            "skipped": skipped, "truncated": truncated, "max_length": meta.get("max_length")}


def _check_predictions_file(out: Path, input_path: str | None) -> None:
    """A predictions CSV replaces a file, never a directory nor the input it is made from."""
    if out.is_dir():
        raise UserInputError(f"{out}: is a directory; pass a file name for the predictions CSV to --out, "
                             f"e.g. {out / 'predictions.csv'}")
    if input_path is not None and out.exists() and os.path.exists(input_path) and os.path.samefile(out, input_path):
        raise UserInputError(f"--out {out} is the --input file; pass another file for the predictions")


def evaluate(model_dir: str, input_path: str, out: str | None = None, text_col: str | None = None,
             label_col: str | None = None, batch_size: int = 32, text_pair_col: str | None = None,
             normalize_labels: bool = False, overwrite: bool = False) -> dict:
    """Metrics of `model_dir` on `input_path`. Labels are merged by case as in training when
    the model was trained with normalize_labels, or when `normalize_labels` is given. With
    `out`, also a report directory, written like every nlpft output (an earlier one there
    is replaced only with `overwrite`)."""
    from nlpft.data.labeled import check_labels, label_key, read_labeled, respell_labels
    from nlpft.finetune import metrics as m

    _check_batch_size(batch_size)
    meta = load_meta(model_dir)
    output = RunOutput(out, overwrite=overwrite, command="evaluate", inputs=[model_dir, input_path]) if out else None
    task_name = meta["task"]["task"]
    normalize_labels = normalize_labels or bool((meta.get("options") or {}).get("normalize_labels"))
    data = read_labeled(input_path, text_col=text_col or meta["text_col"], label_col=label_col or meta["label_col"],
                        text_pair_col=_pair_column(meta, text_pair_col), task=task_name,
                        label_delimiter=meta.get("label_delimiter", ";"), training=False,
                        normalize_labels=normalize_labels)
    label_map = _label_map(model_dir, meta) if meta.get("label_map") else None
    rows = list(data)
    if normalize_labels and label_map is not None:  # spelled as the model's labels are
        rows = respell_labels(rows, {label_key(label): label for label in label_map.labels})
    if label_map is not None:
        check_labels(rows, label_map, input_path)
    pairs = [r.text_pair for r in rows] if meta.get("text_pair_col") else None
    if output is not None:
        output.open()
    with output.cleaned_up_on_error() if output is not None else contextlib.nullcontext():
        scores, task, truncated = score_texts(model_dir, meta, [r.text for r in rows], pairs, batch_size=batch_size)
        decided = task.decide(scores)
        names = list(label_map.labels) if label_map is not None else []
        result = m.task_metrics(task_name, _gold(rows, task_name, label_map), decided, names)
        result["truncated"] = truncated
        if output is not None:
            _write_evaluation(output, str(model_dir), rows, task_name, names, scores, decided, result)
    result["headline"] = m.headline(task_name, result)
    return result


def _write_evaluation(output: RunOutput, model_dir: str, rows, task_name: str, names: list[str], scores, decided,
                      result: dict) -> None:
    from nlpft.finetune import metrics as m

    folder = output.partial
    write_json(folder / "metrics.json", result)
    write_predictions(folder / "predictions.csv", rows, task_name, names, scores, decided, gold=True)
    plots = {}
    if task_name == "single":
        plots["confusion matrix"] = m.plot_confusion_matrix(result, folder / "confusion_matrix.png").name
    m.write_report(folder / "report.md", {"model": model_dir, "task": task_name, "test_examples": len(rows)},
                   result, task_name, plots)
    output.publish()
