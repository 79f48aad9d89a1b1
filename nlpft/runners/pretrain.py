"""`nlpft pretrain`: train a GPT-2 or BERT-style transformer from scratch, or continue
pretraining any loaded checkpoint on domain text, with the Hugging Face Trainer.

validate options and inputs -> open OUT.partial/ -> tokenizer (the checkpoint's, one given
with --tokenizer, or byte-level BPE / WordPiece trained on the corpus) -> encode the corpus
once into memory-mapped ids with a seeded train/valid/test split -> packed blocks, or
sentence pairs for --objective mlm+nsp -> model (fresh from a size preset, or loaded with
--from) -> Trainer with pickle-free checkpoints -> validation and test loss (and NSP
accuracy) -> publish OUT as a plain Hugging Face model directory.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from nlpft.data.fingerprint import fingerprint, record_or_check
from nlpft.errors import UserInputError
from nlpft.options import fingerprinted_options
from nlpft.pretrained.options import PretrainOptions
from nlpft.pretrained.presets import OBJECTIVE, SIZES, TOKENIZER_KIND
from nlpft.runners.output import RunOutput, peak_rss_bytes, write_json
from nlpft.training.memory import set_phase

__all__ = ["PretrainOptions", "pretrain"]

DATA_DIR = "data"
TOKENIZER_DIR = "tokenizer"


def _check_tokenizer(opts: PretrainOptions) -> None:
    """--tokenizer names a directory or an alias (before anything heavy is loaded)."""
    if opts.tokenizer and not Path(opts.tokenizer).exists():
        from nlpft.pretrained.aliases import ALIASES

        if opts.tokenizer not in ALIASES:
            raise UserInputError(f"{opts.tokenizer}: not found; pass a directory with Hugging Face tokenizer "
                                 "files (tokenizer.json / vocab.txt), or a model alias")


def pretrain(opts: PretrainOptions) -> Path:
    from nlpft.data.registry import resolve_corpus

    opts.validate()
    _check_tokenizer(opts)
    text = resolve_corpus(opts.corpus, text_col=opts.text_col, streaming=opts.streaming)
    output = RunOutput(opts.out, resume=opts.resume, overwrite=opts.overwrite, command="pretrain",
                       inputs=[*text.local_paths(), opts.tokenizer, opts.from_model])
    text.validate()
    if not opts.quiet:
        for note in text.notes():
            print(note, file=sys.stderr)
    source = None
    if opts.from_model:
        from nlpft.pretrained.loading import resolve_model

        source = resolve_model(opts.from_model)  # fails fast on a bad spec, before anything loads
    objective = _objective(opts, source)
    import torch

    from nlpft.training.hf import (
        transformers_quiet,  # slow to import: before the partial directory exists
    )

    if opts.threads:
        torch.set_num_threads(opts.threads)
    from nlpft.training.precision import resolve_precision

    opts = dataclasses.replace(opts, precision=resolve_precision(opts.precision))
    if opts.resume and not output.has_checkpoint():
        print(f"no checkpoint under {output.partial}: starting from scratch", file=sys.stderr)
    work = output.open()
    with output.cleaned_up_on_error(), transformers_quiet():
        record_or_check(work, _fingerprint(opts, text, objective), resuming=opts.resume)
        return _pretrain_into(opts, text, source, objective, work, output)


def _objective(opts: PretrainOptions, source) -> str:
    """What the model learns: --objective, or the architecture's / checkpoint's own."""
    from nlpft.pretrained import pretraining

    if source is None:
        return opts.objective or OBJECTIVE[opts.arch]
    from nlpft.pretrained.loading import detect_family

    return pretraining.checkpoint_objective(source.model_type or "?", detect_family(source.config), opts.objective)


def _fingerprint(opts: PretrainOptions, text, objective: str) -> dict:
    """Inputs and the options that shape the data and the model (those marked fingerprinted;
    the rest, --epochs, --max-steps, --lr, the schedule, --threads, ..., may change when a
    run is resumed)."""
    options = fingerprinted_options(opts)
    # None for the model's own objective, so runs started before --objective existed still resume
    options["--objective"] = objective if objective == "mlm+nsp" else None
    return fingerprint({"--corpus": text.inputs(), "--tokenizer": opts.tokenizer, "--from": opts.from_model},
                       {**options, **text.reading_options()})


def _words_to_read(opts: PretrainOptions, preset) -> int:
    """How much of a streamed corpus --max-steps trains on: its tokens (blocks per step, at
    most the preset's block size, or 128 with --from, in every process), plus the held-out
    share. Counted in words, of which a subword tokenizer makes at least as many tokens."""
    block_size = opts.block_size or (preset.block_size if opts.arch else 128)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    train_tokens = opts.max_steps * opts.batch_size * opts.grad_accum * block_size * world
    return math.ceil(train_tokens / (1 - opts.valid_fraction - opts.test_fraction))


def _tokenizer(opts: PretrainOptions, text, source, preset, data_dir: Path):
    """The transformers tokenizer for this run; trained ones are saved in `data_dir`."""
    from nlpft.pretrained.loading import load_tokenizer

    saved = data_dir / TOKENIZER_DIR
    if (data_dir / "complete").is_file():
        return load_tokenizer(saved).hf
    if source is not None:
        return load_tokenizer(source).hf
    if opts.tokenizer:
        return load_tokenizer(opts.tokenizer).hf
    from nlpft.tokenization.subword import train_subword_tokenizer

    kind = TOKENIZER_KIND[opts.arch]
    vocab_size = opts.vocab_size or preset.vocab_size
    if not opts.quiet:
        print(f"training a {kind} tokenizer ({vocab_size:,} ids) on {text.name}", file=sys.stderr)
    set_phase("training the tokenizer")
    return train_subword_tokenizer(text, kind, vocab_size, model_max_length=opts.block_size or preset.block_size,
                                   show_progress=not opts.quiet)


def _model(opts: PretrainOptions, source, preset, tokenizer, block_size: int, objective: str):
    """(model, the LM-head weights that had to be initialised: None or a list of names)."""
    from nlpft.pretrained import pretraining

    if source is None:
        config = pretraining.build_config(opts.arch, preset, tokenizer, block_size)
        return pretraining.build_model(opts.arch, config, objective), None
    from nlpft.pretrained.loading import load_model

    model, info = load_model(source, head=objective, quiet=True, output_loading_info=True)
    return model, pretraining.head_is_new(info.get("missing_keys", []))


def _default_lr(opts: PretrainOptions) -> float:
    if opts.lr is not None:
        return opts.lr
    return 5e-5 if opts.from_model else 1e-3


def _pretrain_into(opts: PretrainOptions, text, source, objective: str, work: Path, output: RunOutput) -> Path:
    import torch

    from nlpft.data.token_ids import SPLIT_MIN_LINES, EncodedSplits
    from nlpft.pretrained import pretraining
    from nlpft.training.dropout import use_fast_dropout

    started = time.perf_counter()
    preset = SIZES[opts.size]
    data_dir = work / DATA_DIR
    if text.streamed and not (data_dir / "complete").is_file():
        data_dir.mkdir(parents=True, exist_ok=True)  # the tokenizer and the split each pass over the corpus
        text.fetch_streams(data_dir, _words_to_read(opts, preset), min_lines=SPLIT_MIN_LINES)
    tokenizer = _tokenizer(opts, text, source, preset, data_dir)
    if not (data_dir / "complete").is_file():
        _encode_corpus(opts, text, tokenizer, objective, data_dir)
    splits = EncodedSplits.load(data_dir, len(tokenizer))
    prepare_s = time.perf_counter() - started
    block_size = _block_size(opts, source, preset)
    pairs = objective == "mlm+nsp"
    datasets = (_sentence_pairs(text, splits, tokenizer, block_size, opts.seed) if pairs
                else _packed_blocks(text, splits, tokenizer, block_size, objective))

    set_phase("building the model")
    torch.manual_seed(opts.seed)
    model, new_head = _model(opts, source, preset, tokenizer, block_size, objective)
    use_fast_dropout(model)  # the same dropout with cheaper random masks (nlpft.training.dropout)
    if opts.freeze_base:
        trainable = pretraining.freeze_all_but_head(model)
        if trainable == 0:
            raise UserInputError("--freeze-base leaves nothing to train: this model's LM head shares all its "
                                 "weights with the input embedding; drop --freeze-base")
        if not opts.quiet:
            print(f"--freeze-base: training the LM head only ({trainable:,} parameters)", file=sys.stderr)
    if new_head:  # said even with --quiet: the user should know part of the model starts untrained
        print(f"{source.name}: the checkpoint has no {objective.upper()} head; initialised "
              f"{len(new_head)} new weight tensors ({', '.join(new_head[:3])}{', ...' if len(new_head) > 3 else ''}) "
              "that training will learn", file=sys.stderr)
    eval_sets = {name: _eval_subset(ds, opts.max_eval_blocks) for name, ds in datasets.items() if name != "train"}
    masker = None
    if objective in ("mlm", "mlm+nsp"):
        masker = pretraining.TokenMasker(tokenizer, opts.mlm_probability)
        eval_sets = {name: pretraining.FixedMaskBlocks(ds, masker, seed=opts.seed) for name, ds in eval_sets.items()}
    if pairs:
        from nlpft.pretrained.sentence_pairs import PairCollator

        collator = PairCollator(tokenizer.pad_token_id)
    else:
        collator = pretraining.collate_stacked if objective == "mlm" else pretraining.collate_causal

    trainer, stopper = _trainer(opts, model, tokenizer, datasets["train"], eval_sets["valid"], collator, masker,
                                work, objective)
    from nlpft.training.hf import checkpoint_step, latest_checkpoint

    resume_from = latest_checkpoint(output.checkpoint_dir) if opts.resume else None
    if opts.resume and resume_from is not None and not opts.quiet:
        print(f"resuming from {resume_from.name}", file=sys.stderr)
    set_phase("training")
    before = None
    if resume_from is None:
        before = _evaluate(trainer, eval_sets["valid"])
    train_started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_s = time.perf_counter() - train_started
    if stopper.signal_name is not None:
        from nlpft.errors import Interrupted

        raise Interrupted(stopper.signal_name)

    valid = _evaluate(trainer, eval_sets["valid"])
    test = _evaluate(trainer, eval_sets["test"])
    steps_this_run = trainer.state.global_step - (checkpoint_step(resume_from) if resume_from else 0)
    tokens_per_example = float(datasets["train"].lengths().mean()) if pairs else block_size
    tokens_per_step = opts.batch_size * opts.grad_accum * tokens_per_example
    model.config.use_cache = True
    trainer.save_model(str(work))  # model.safetensors, config.json, tokenizer files, training_args.json
    (work / "training_args.json").unlink(missing_ok=True)
    unit = "pairs" if pairs else "blocks"
    metrics = {
        "objective": objective,
        "valid": valid, "test": test, "valid_before": before,
        "splits_tokens": ({name: ds.text_tokens for name, ds in datasets.items()} if pairs
                          else splits.lengths()),
        unit: {name: len(ds) for name, ds in datasets.items()},
        f"eval_{unit}": {name: len(ds) for name, ds in eval_sets.items()},
        "block_size": block_size,
        "vocab_size": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "new_head_weights": new_head,
        "time_s": {"prepare": prepare_s, "train": train_s},
        "train_tokens_per_s": steps_this_run * tokens_per_step / train_s if train_s > 0 else None,
        "train_loss_history": [h for h in trainer.state.log_history if "loss" in h],
        "eval_history": [h for h in trainer.state.log_history if "eval_loss" in h],
        "precision": opts.precision,
        "threads": torch.get_num_threads(),
        "peak_rss_bytes": peak_rss_bytes(),
        "train_runtime_s": result.metrics.get("train_runtime"),
    }
    if pairs:
        metrics["is_next_share"] = {name: ds.is_next_share() for name, ds in datasets.items()}
        metrics["mean_pair_tokens"] = tokens_per_example
    write_json(work / "metrics.json", metrics)
    write_json(work / "nlpft_pretrain.json", {"corpus": [str(p) for p in text.paths], **asdict(opts),
                                              "objective": objective,
                                              "source": source.name if source else None})
    import shutil

    shutil.rmtree(data_dir, ignore_errors=True)
    final = output.publish()
    if opts.name:
        from nlpft.pretrained.aliases import register_user_alias

        registry = register_user_alias(opts.name, final, f"{model.config.model_type} pretrained by nlpft on "
                                                         f"{text.name} ({objective.upper()})")
        if not opts.quiet:
            print(f"model name '{opts.name}' -> {final} (in {registry})", file=sys.stderr)
    if not opts.quiet:
        print(f"pretrain: {_summary(valid, test, objective)} after {trainer.state.global_step} steps -> {final}",
              file=sys.stderr)
    return final


def _summary(valid: dict, test: dict, objective: str) -> str:
    what = "loss" if objective == "clm" else "MLM loss"
    line = f"valid {what} {valid['loss']:.3f} (perplexity {valid['perplexity']:.2f}), "
    if objective == "mlm+nsp":
        return line + (f"NSP accuracy {valid['nsp_accuracy']:.1%}; test perplexity {test['perplexity']:.2f}, "
                       f"NSP accuracy {test['nsp_accuracy']:.1%}")
    return line + f"test perplexity {test['perplexity']:.2f}"


def _encode_corpus(opts: PretrainOptions, text, tokenizer, objective: str, data_dir: Path) -> None:
    """The corpus as ids in `data_dir`, split; for sentence pairs with line and document ends marked."""
    from nlpft.data.token_ids import encode_splits
    from nlpft.pretrained import pretraining

    data_dir.mkdir(parents=True, exist_ok=True)
    set_phase("encoding the corpus")
    if objective == "mlm+nsp":
        from nlpft.pretrained.sentence_pairs import FileEndMarked, LineMarkedEncoder

        corpus, encoder = FileEndMarked(text), LineMarkedEncoder(tokenizer)
    else:
        keep_newlines = bool(getattr(tokenizer, "eos_token", None)) and tokenizer.mask_token is None
        corpus, encoder = text, pretraining.SubwordLineEncoder(tokenizer, keep_newlines=keep_newlines)
    encode_splits(corpus, encoder, data_dir, valid_fraction=opts.valid_fraction,
                  test_fraction=opts.test_fraction, seed=opts.seed)
    tokenizer.save_pretrained(str(data_dir / TOKENIZER_DIR))
    (data_dir / "complete").write_text("")


def _block_size(opts: PretrainOptions, source, preset) -> int:
    if source is None:
        return opts.block_size or preset.block_size
    from nlpft.pretrained.loading import max_positions

    limit = max_positions(source.config) or 512
    block_size = opts.block_size or min(128, limit)
    if block_size > limit:
        raise UserInputError(f"--block-size {block_size} exceeds the {limit} positions of {source.name}")
    return block_size


def _packed_blocks(text, splits, tokenizer, block_size: int, objective: str) -> dict:
    from nlpft.pretrained import pretraining

    wrap = objective == "mlm"
    blocks = {name: pretraining.PackedBlocks(getattr(splits, name), block_size,
                                             cls_id=tokenizer.cls_token_id if wrap else None,
                                             sep_id=tokenizer.sep_token_id if wrap else None)
              for name in ("train", "valid", "test")}
    for name, ds in blocks.items():
        if len(ds) == 0:
            raise UserInputError(f"{text.name}: the {name} split has {getattr(splits, name).shape[0]:,} tokens, "
                                 f"less than one block of {block_size}; use a longer corpus, a smaller "
                                 "--block-size, or a larger --valid-fraction/--test-fraction")
    return blocks


def _sentence_pairs(text, splits, tokenizer, block_size: int, seed: int) -> dict:
    """IsNext/NotNext pairs of each split, drawn with its own seeded generator."""
    from nlpft.pretrained.sentence_pairs import SentencePairs

    if tokenizer.pad_token_id is None:
        raise UserInputError("the tokenizer has no [PAD] token; --objective mlm+nsp batches pairs of different "
                             "lengths and needs one (train a tokenizer with nlpft, or pass a BERT tokenizer)")
    pairs = {name: SentencePairs(getattr(splits, name), block_size, tokenizer.cls_token_id, tokenizer.sep_token_id,
                                 seed=(seed, number))
             for number, name in enumerate(("train", "valid", "test"))}
    for name, ds in pairs.items():
        if len(ds) == 0:
            raise UserInputError(f"{text.name}: the {name} split gives no sentence pairs ({ds.index.lines:,} lines); "
                                 "use a longer corpus or a larger --valid-fraction/--test-fraction")
    if not 0 < pairs["train"].is_next_share() < 1:
        raise UserInputError(f"{text.name}: the training pairs are all of one kind (IsNext share "
                             f"{pairs['train'].is_next_share():.0%}); next-sentence prediction needs documents of "
                             "several lines and more than one document: use a longer corpus")
    return pairs


def _eval_subset(ds, limit: int):
    """At most `limit` examples, spread evenly over the split (evaluation is a sample)."""
    if len(ds) <= limit:
        return ds
    from torch.utils.data import Subset

    step = len(ds) / limit
    return Subset(ds, [int(i * step) for i in range(limit)])


def _evaluate(trainer, dataset) -> dict:
    """Mean loss over `dataset` (token-weighted by the model's own averaging per batch). With
    NSP, "loss" is the MLM loss over all masked tokens (so it compares with MLM-only runs),
    next to NSP loss and accuracy and the summed loss the model trains on."""
    metrics = trainer.evaluate(eval_dataset=dataset)
    loss = float(metrics["eval_loss"])
    if "eval_nsp_accuracy" not in metrics:
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "blocks": len(dataset)}
    mlm_loss = float(metrics["eval_mlm_loss"])
    return {"loss": mlm_loss, "perplexity": math.exp(min(mlm_loss, 50.0)),
            "nsp_loss": float(metrics["eval_nsp_loss"]), "nsp_accuracy": float(metrics["eval_nsp_accuracy"]),
            "total_loss": loss, "pairs": len(dataset)}


def _trainer(opts: PretrainOptions, model, tokenizer, train_set, valid_set, collator, masker, work: Path,
             objective: str):
    from nlpft.training.hf import (
        ProgressBar,
        ReportScalars,
        SafeCheckpointTrainer,
        StopOnSignal,
        training_arguments,
        use_progress_bar,
    )

    args = training_arguments(
        work / "checkpoint", seed=opts.seed, precision=opts.precision,
        per_device_train_batch_size=opts.batch_size,
        per_device_eval_batch_size=opts.batch_size,
        gradient_accumulation_steps=opts.grad_accum,
        learning_rate=_default_lr(opts),
        weight_decay=opts.weight_decay,
        warmup_steps=opts.warmup,
        lr_scheduler_type=opts.scheduler,
        num_train_epochs=opts.epochs if opts.epochs is not None else 1.0,
        max_steps=opts.max_steps or -1,
        eval_strategy="steps",
        eval_steps=opts.eval_every,
        save_steps=opts.checkpoint_every,
        logging_steps=min(50, opts.eval_every),
        prediction_loss_only=objective != "mlm+nsp",  # NSP: logits become per-pair scores for the metrics
    )
    pair_hooks = {}
    if objective == "mlm+nsp":
        from nlpft.pretrained.sentence_pairs import pair_metrics, per_pair_scores

        pair_hooks = {"compute_metrics": pair_metrics, "preprocess_logits_for_metrics": per_pair_scores}
    stopper = StopOnSignal()
    tokens_per_step = opts.batch_size * opts.grad_accum * train_set.block_size
    callbacks = [stopper]
    if opts.report_to == "tensorboard":
        callbacks.append(ReportScalars(work, units_per_step=tokens_per_step * args.world_size, perplexity=True))
    trainer = SafeCheckpointTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=valid_set,
                                    data_collator=collator, train_batch_transform=masker, processing_class=tokenizer,
                                    callbacks=callbacks, **pair_hooks)
    eval_name = {"clm": "valid loss", "mlm": "valid MLM loss", "mlm+nsp": "valid MLM+NSP loss"}[objective]
    bar = None if opts.quiet else ProgressBar(
        tokens_per_step=tokens_per_step, eval_name=eval_name,
        perplexity=objective != "mlm+nsp")  # the summed loss has none; the MLM perplexity is among the metrics
    use_progress_bar(trainer, bar)
    return trainer, stopper
