"""`nlpft lm train | eval | generate` for the RNN language model.

train: validate options and inputs -> open OUT.partial/ -> tokenizer (given, the one of
--init-vectors, or trained on the corpus) -> encode the corpus once into memory-mapped id
files with a seeded train/valid/test split -> build the model (optionally from static
vectors) -> train with checkpoints -> evaluate the best weights -> publish OUT.

Several processes: run the same command under `torchrun --nproc-per-node N`; rank 0
prepares data and output, every rank trains its slice of the batch rows (DDP).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from nlpft.data.fingerprint import fingerprint, record_or_check
from nlpft.errors import UserInputError, check_threads
from nlpft.lm.files import load_model_dir
from nlpft.lm.options import LMTrainOptions
from nlpft.options import fingerprinted_options
from nlpft.runners.output import peak_rss_bytes, write_json
from nlpft.training.memory import set_phase

LN2 = math.log(2)


def _distributed() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; sets up the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if _cuda_available() else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _check_paths(opts: LMTrainOptions) -> None:
    """Cheap checks before anything heavy is loaded."""
    if opts.tokenizer and not Path(opts.tokenizer).exists():
        raise UserInputError(f"{opts.tokenizer}: tokenizer file not found; pass a tokenizer.json written by nlpft")
    if opts.init_vectors and not Path(opts.init_vectors).exists():
        raise UserInputError(
            f"{opts.init_vectors}: not found; pass a directory written by `nlpft embed train` "
            "or a word2vec text/binary file")


def _load_tokenizer(opts: LMTrainOptions, text, quiet: bool):
    from nlpft.lm.data import build_lm_tokenizer, ensure_eos
    from nlpft.tokenization import WordTokenizer

    source = opts.tokenizer
    if source is None and opts.init_vectors and (Path(opts.init_vectors) / "tokenizer.json").is_file():
        # the vectors' own vocabulary: every LM word then has a trained vector
        source = str(Path(opts.init_vectors) / "tokenizer.json")
    if source is not None:
        tokenizer = WordTokenizer.load(source)
        origin = source
    else:
        set_phase("counting the corpus words")
        tokenizer = build_lm_tokenizer(text, min_count=opts.min_count, max_vocab=opts.max_vocab)
        origin = f"trained on the corpus (min count {opts.min_count}, max vocab {opts.max_vocab})"
    ensure_eos(tokenizer)
    if not quiet:
        print(f"tokenizer: {tokenizer.vocab_size:,} ids, {origin}", file=sys.stderr)
    return tokenizer


def _progress_callbacks(state_total: int, quiet: bool, rank: int):
    """tqdm bar per epoch with tokens/s and running perplexity; one line per evaluation."""
    from tqdm.auto import tqdm

    bar = {"bar": None, "epoch": None, "loss": None}
    show = not quiet and rank == 0

    def on_step(state, loss: float, tokens: int, seconds: float) -> None:
        if not show:
            return
        if bar["epoch"] != state.epoch or bar["bar"] is None:
            if bar["bar"] is not None:
                bar["bar"].close()
            bar["bar"] = tqdm(total=state_total, desc=f"epoch {state.epoch + 1}", unit="tok", unit_scale=True,
                              dynamic_ncols=True, file=sys.stderr, disable=None)
            bar["epoch"] = state.epoch
            bar["loss"] = None
        smooth = loss if bar["loss"] is None else 0.95 * bar["loss"] + 0.05 * loss
        bar["loss"] = smooth
        bar["bar"].update(tokens)
        bar["bar"].set_postfix_str(f"ppl {math.exp(min(smooth, 50)):.1f} lr {state.lr:.2g}", refresh=False)

    def on_evaluate(state, record: dict) -> None:
        if bar["bar"] is not None:
            bar["bar"].close()
            bar["bar"] = None
        if show:
            print(f"epoch {record['epoch']} step {record['step']}: valid ppl {record['valid_ppl']:.2f}"
                  f" (lr {record['lr']:.3g})", file=sys.stderr)

    return on_step, on_evaluate


def _both(first, second):
    """One callback calling `first`, then `second`, with the same arguments."""
    def both(*args) -> None:
        first(*args)
        second(*args)

    return both


def _eval_rows(ids, batch_size: int, name: str, corpus_name: str):
    """Held-out ids as (rows, N); fewer rows for a short split, so small corpora still evaluate."""
    from nlpft.lm.data import batchify

    rows = min(batch_size, len(ids) // 2)
    if rows < 1:
        raise UserInputError(f"{corpus_name}: the {name} split holds {len(ids)} tokens, too few to measure "
                             "perplexity; use a longer corpus or raise --valid-fraction / --test-fraction")
    return batchify(ids, rows)


def train_lm(opts: LMTrainOptions) -> Path:
    """Train, evaluate and publish an RNN LM in `opts.out`; returns the output directory.
    `report_to` "tensorboard": the training curves into OUT/runs/ (`nlpft.training.reporting`)."""
    import torch

    from nlpft.data.registry import resolve_corpus
    from nlpft.lm.model import RNNLMConfig
    from nlpft.runners.output import RunOutput

    opts.validate()
    train_config = _train_config(opts)
    train_config.validate()
    model_options = _model_options(opts)
    model_shape = RNNLMConfig(vocab_size=8, **model_options)
    model_shape.validate()
    _check_paths(opts)
    text = resolve_corpus(opts.corpus, text_col=opts.text_col, streaming=opts.streaming)
    output = RunOutput(opts.out, resume=opts.resume, overwrite=opts.overwrite,  # only rank 0 opens it
                       command="lm train", inputs=[*text.local_paths(), opts.tokenizer, opts.init_vectors])
    text.validate()
    if not opts.quiet and int(os.environ.get("RANK", "0")) == 0:
        for note in text.notes():
            print(note, file=sys.stderr)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    rank, world = _distributed()

    if rank == 0:
        if opts.resume and not output.has_checkpoint():
            print(f"no checkpoint under {output.partial}: starting from scratch", file=sys.stderr)
        output.open()
    _barrier(world)
    work = output.partial
    try:
        with output.cleaned_up_on_error(owner=rank == 0):
            record_or_check(work, _fingerprint(opts, text), resuming=opts.resume, record=rank == 0)
            return _train_into(opts, model_options, train_config, text, work, output, rank, world)
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()


def _train_config(opts: LMTrainOptions):
    """The trainer's settings: the options of the same names; one left at None (--epochs)
    takes the trainer's default."""
    from nlpft.lm.trainer import LMTrainConfig

    return LMTrainConfig(**_given_fields(opts, LMTrainConfig))


def _model_options(opts: LMTrainOptions) -> dict:
    """The model's settings given as options (the fields of `RNNLMConfig` of the same names);
    one left at None (--embedding-dim) takes the model's default, or the vectors' size."""
    from nlpft.lm.model import RNNLMConfig

    return _given_fields(opts, RNNLMConfig)


def _given_fields(opts: LMTrainOptions, config_class) -> dict:
    """{name: value} of the options that are also fields of `config_class`, except None."""
    return {f.name: getattr(opts, f.name) for f in fields(config_class)
            if hasattr(opts, f.name) and getattr(opts, f.name) is not None}


def _fingerprint(opts: LMTrainOptions, text) -> dict:
    """Inputs and the options that shape the data, the model and the batches (those marked
    fingerprinted: not --epochs, --max-steps, --lr or --threads, which a resumed run may change)."""
    return fingerprint({"--corpus": text.inputs(), "--tokenizer": opts.tokenizer,
                        "--init-vectors": opts.init_vectors}, {**fingerprinted_options(opts), **text.reading_options()})


def _words_to_read(opts: LMTrainOptions, train_config, world: int) -> int:
    """How much of a streamed corpus --max-steps trains on: its tokens (batch rows x BPTT
    window per step), plus the held-out share. Counted in words, of which the tokenizer
    makes at least as many tokens."""
    train_tokens = train_config.max_steps * train_config.batch_size * world * train_config.bptt
    return math.ceil(train_tokens / (1 - opts.valid_fraction - opts.test_fraction))


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _train_into(opts: LMTrainOptions, model_options: dict, train_config, text, work: Path, output,
                rank: int, world: int) -> Path:
    import torch

    from nlpft.embeddings.vectors_io import vectors_for_vocabulary
    from nlpft.lm.data import EncodedSplits, batchify, encode_corpus, shard_for_rank
    from nlpft.lm.model import RNNLanguageModel, RNNLMConfig
    from nlpft.lm.trainer import LMReportScalars, LMTrainer, evaluate_loss

    started = time.perf_counter()
    kv = None
    if opts.init_vectors:
        from nlpft.embeddings.vectors_io import load_vectors, vectors_for_vocabulary

        kv = load_vectors(opts.init_vectors)
        requested = model_options.get("embedding_dim")
        if requested is None:
            model_options = {**model_options, "embedding_dim": kv.vector_size}
        elif requested != kv.vector_size:
            raise UserInputError(
                f"{opts.init_vectors}: vectors have {kv.vector_size} dimensions but --embedding-dim is "
                f"{requested}; drop --embedding-dim or pass matching vectors")

    data_dir = work / "data"
    tokenizer_file = data_dir / "tokenizer.json"
    if rank == 0:
        if opts.resume and (data_dir / "complete").is_file():
            from nlpft.tokenization import WordTokenizer

            tokenizer = WordTokenizer.load(tokenizer_file)
        else:
            data_dir.mkdir(parents=True, exist_ok=True)
            if text.streamed:  # the tokenizer and the split each pass over the corpus: keep what they need
                from nlpft.data.token_ids import SPLIT_MIN_LINES

                text.fetch_streams(data_dir, _words_to_read(opts, train_config, world), min_lines=SPLIT_MIN_LINES)
            tokenizer = _load_tokenizer(opts, text, opts.quiet)
            set_phase("encoding the corpus")
            encode_corpus(text, tokenizer, data_dir, valid_fraction=opts.valid_fraction,
                          test_fraction=opts.test_fraction, seed=train_config.seed)
            tokenizer.save(tokenizer_file)
            (data_dir / "complete").write_text("")
    _barrier(world)
    from nlpft.tokenization import WordTokenizer

    tokenizer = WordTokenizer.load(tokenizer_file)
    splits = EncodedSplits.load(data_dir, tokenizer.vocab_size)
    prepare_s = time.perf_counter() - started

    torch.manual_seed(train_config.seed)
    config = RNNLMConfig(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.token_to_id("[PAD]") or 0,
                         **model_options)
    config.validate()
    model = RNNLanguageModel(config)
    coverage = None
    if kv is not None:
        matrix, coverage = vectors_for_vocabulary(kv, tokenizer, model.embedding.weight.detach().numpy())
        model.load_embeddings(matrix, freeze=opts.freeze_embeddings)
        if not opts.quiet and rank == 0:
            print(f"init vectors: {coverage['found']:,}/{coverage['words']:,} words of the LM vocabulary found "
                  f"({coverage['coverage']:.1%}); missing rows {coverage['missing_rows']}"
                  + (f"; e.g. {', '.join(coverage['missing_examples'][:5])}" if coverage["missing"] else ""),
                  file=sys.stderr)

    train_rows = batchify(splits.train, train_config.batch_size * world)
    train_rows = shard_for_rank(train_rows, rank, world)
    valid_rows = _eval_rows(splits.valid, train_config.eval_batch_size, "validation", text.name)
    test_rows = _eval_rows(splits.test, train_config.eval_batch_size, "test", text.name)

    wrapped = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(model)
    per_epoch = train_rows.numel()
    on_step, on_evaluate = _progress_callbacks(per_epoch, opts.quiet, rank)
    curves = LMReportScalars(work, processes=world) if opts.report_to == "tensorboard" and rank == 0 else None
    if curves is not None:
        on_step, on_evaluate = _both(on_step, curves.on_step), _both(on_evaluate, curves.on_evaluate)
    trainer = LMTrainer(wrapped, train_config, train_rows, valid_rows,
                        checkpoint_root=output.checkpoint_dir, best_path=work / "best.safetensors",
                        rank=rank, world_size=world, on_step=on_step, on_evaluate=on_evaluate)
    train_started = time.perf_counter()
    set_phase("training")
    try:
        state = trainer.fit(resume=opts.resume)
    finally:
        if curves is not None:
            curves.close()
    train_s = time.perf_counter() - train_started

    eval_started = time.perf_counter()
    valid_loss, valid_tokens = evaluate_loss(model, valid_rows, train_config.bptt, train_config.precision)
    test_loss, test_tokens = evaluate_loss(model, test_rows, train_config.bptt, train_config.precision)
    eval_s = time.perf_counter() - eval_started

    if rank != 0:
        return output.final
    model.save_pretrained(work)
    tokenizer.save(work)
    metrics = {
        "valid": {"loss": valid_loss, "perplexity": math.exp(valid_loss), "bits_per_token": valid_loss / LN2,
                  "tokens": valid_tokens},
        "test": {"loss": test_loss, "perplexity": math.exp(test_loss), "bits_per_token": test_loss / LN2,
                 "tokens": test_tokens},
        "splits": splits.lengths(),
        "vocab_size": tokenizer.vocab_size,
        "parameters": model.num_parameters(),
        "steps": state.step,
        "epochs_completed": state.epoch,
        "stopped_early": state.stopped_early,
        "history": state.history,
        "time_s": {"prepare": prepare_s, "train": train_s, "eval": eval_s},
        # tokens over time spent in training steps (all processes), this run only
        "train_tokens_per_s": (trainer.step_tokens * world / trainer.step_seconds) if trainer.step_seconds else None,
        "eval_tokens_per_s": (valid_tokens + test_tokens) / eval_s if eval_s > 0 else None,
        "precision": train_config.precision,
        "processes": world,
        "threads": torch.get_num_threads(),
        "peak_rss_bytes": peak_rss_bytes(),
        "init_vectors": coverage,
    }

    write_json(work / "metrics.json", metrics)
    write_json(work / "training.json", _run_record(opts, text, train_config, config))
    import shutil

    shutil.rmtree(data_dir, ignore_errors=True)
    (work / "best.safetensors").unlink(missing_ok=True)
    final = output.publish()
    if not opts.quiet:
        print(f"lm: valid ppl {metrics['valid']['perplexity']:.2f}, test ppl {metrics['test']['perplexity']:.2f} "
              f"({metrics['test']['bits_per_token']:.3f} bits/token) after {state.step} steps -> {final}",
              file=sys.stderr)
    return final


def _run_record(opts: LMTrainOptions, text, train_config, config) -> dict:
    """training.json: the options of the run (the corpus as read), then the trainer's and
    the model's settings as resolved, in place of the options they were built from."""
    resolved = {f.name for f in fields(train_config)} | {f.name for f in fields(config)}
    options = {name: value for name, value in asdict(opts).items() if name not in resolved}
    return {**options, "corpus": [str(p) for p in text.paths], "train": asdict(train_config),
            "model": config.to_dict()}


def eval_lm(model_dir: str, corpus: list[str], batch_size: int = 10, bptt: int = 35,
            precision: str = "fp32", threads: int | None = None, text_col: str = "text") -> dict:
    import tempfile

    import torch

    from nlpft.data.registry import resolve_corpus
    from nlpft.lm.data import batchify, encode_file
    from nlpft.lm.trainer import evaluate_loss

    check_threads(threads)
    if batch_size < 1 or bptt < 1:
        raise UserInputError("--batch-size and --bptt must be at least 1")
    text = resolve_corpus(corpus, text_col=text_col)
    text.validate()
    if threads:
        torch.set_num_threads(threads)
    model, tokenizer = load_model_dir(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        ids = encode_file(text, tokenizer, Path(tmp) / "eval.npy")
        unk = tokenizer.unk_id
        oov = float(np.mean(ids == unk)) if ids.size else 0.0
        rows = batchify(ids, batch_size)
        if rows.size(1) < 2:
            raise UserInputError(f"{text.name}: {ids.size} tokens is too short to measure perplexity "
                                 f"with batch size {batch_size}; use more text or a smaller --batch-size")
        started = time.perf_counter()
        loss, tokens = evaluate_loss(model, rows, bptt, precision)
        elapsed = time.perf_counter() - started
    return {"model": str(model_dir), "corpus": text.name, "tokens": tokens, "loss": loss,
            "perplexity": math.exp(loss), "bits_per_token": loss / LN2, "oov_rate": oov,
            "tokens_per_s": tokens / elapsed if elapsed else None, "precision": precision}


def generate_lm(model_dir: str, prompt: str, max_tokens: int = 50, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None, seed: int | None = None) -> str:
    from nlpft.lm.data import EOS_TOKEN
    from nlpft.lm.sampling import sample

    if max_tokens < 0:
        raise UserInputError("--max-tokens must be 0 or more")
    if temperature < 0:
        raise UserInputError("--temperature must be 0 (greedy) or more")
    if top_k is not None and top_k < 1:
        raise UserInputError("--top-k must be at least 1")
    if top_p is not None and not 0 < top_p <= 1:
        raise UserInputError("--top-p must be in (0, 1]")
    model, tokenizer = load_model_dir(model_dir)
    if max_tokens == 0:
        return ""
    eos = tokenizer.token_to_id(EOS_TOKEN)
    ids = tokenizer.encode(prompt) if prompt.strip() else []
    unk = tokenizer.unk_id
    if ids and all(i == unk for i in ids):
        raise UserInputError(
            f"every word of the prompt {prompt!r} is unknown to the model's vocabulary; "
            "use words that occur in the training corpus")
    # the model has seen every line start after an end-of-line token
    prompt_ids = [eos] + ids if eos is not None else ids
    banned = [i for i in (tokenizer.token_to_id("[PAD]"), unk) if i is not None]
    new_ids = sample(model, prompt_ids, max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                     seed=seed, banned_ids=banned)
    words = ["\n" if i == eos else tokenizer.id_to_token(i) for i in new_ids]
    return " ".join(words).replace(" \n ", "\n").replace(" \n", "\n")
