"""`nlpft embed train`: corpus -> tokenizer -> Word2Vec / fastText / GloVe vectors.

Order of work, so that bad input fails fast and nothing half-written stays:
validate options and corpus -> open `OUT.partial/` -> tokenize (count words) -> choose the
vocabulary -> estimate memory -> train (checkpoint each epoch) -> write vectors,
tokenizer, config and metrics -> rename to OUT.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from nlpft.data.fingerprint import fingerprint, record_or_check
from nlpft.data.registry import resolve_corpus
from nlpft.embeddings.config import EmbeddingConfig, estimate_memory_bytes
from nlpft.embeddings.options import EmbedTrainOptions
from nlpft.embeddings.prepare import iter_token_ids, tokenize_to_file
from nlpft.errors import ResourceLimitError, UserInputError
from nlpft.options import fingerprinted_options
from nlpft.runners.output import RunOutput, peak_rss_bytes, write_json
from nlpft.tokenization import WordTokenizer, select_vocabulary
from nlpft.training.divergence import check_weights
from nlpft.training.memory import set_phase
from nlpft.version import __version__

GIB = 1 << 30
#: most working memory for GloVe co-occurrence counting (a smaller corpus gets what its size
#: needs): a bigger dense table did not count faster on a 17M-word corpus (8.9 s either way)
#: but doubled peak memory (2.6 vs 1.5 GB)
COUNT_BUDGET_BYTES = 2 * GIB
#: a "step" of word2vec/fastText for --max-steps: one gensim job of this many words
WORDS_PER_GENSIM_STEP = 10_000


def _bar(desc: str, quiet: bool, total: float | None = None, unit: str = "word") -> tqdm:
    """A progress bar on stderr; off with --quiet and when stderr is not a terminal."""
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True,
                disable=True if quiet else None, file=sys.stderr, leave=True)


def _vocabulary_or_error(counts, config: EmbeddingConfig, corpus_name: str) -> list[str]:
    vocabulary = select_vocabulary(counts, config.min_count, config.max_vocab)
    if not vocabulary:
        top = max(counts.values())
        raise UserInputError(
            f"{corpus_name}: no word occurs --min-count {config.min_count} times "
            f"(the most frequent occurs {top} times); lower --min-count or use a larger corpus"
        )
    return vocabulary


def train_embeddings(opts: EmbedTrainOptions) -> Path:
    """Train static vectors and publish them in `opts.out`; returns the output directory.
    An earlier nlpft output there is replaced only with `overwrite` (see RunOutput).
    `text_col` is the column read from dataset sources; `streaming` streams hf: and Parquet
    ones: the corpus is read once (into the token file gensim and GloVe pass over), so a
    stream needs no --max-steps (for word2vec/fastText it bounds how much is read)."""
    config = opts.resolved()
    text = resolve_corpus(config.corpus, text_col=config.text_col, streaming=config.streaming)
    output = RunOutput(config.out, resume=config.resume, overwrite=config.overwrite, command="embed train",
                       inputs=text.local_paths())
    text.validate()
    if not config.quiet:
        for note in text.notes():
            print(note, file=sys.stderr)
    if config.resume and not output.has_checkpoint():
        print(f"no checkpoint under {output.partial}: starting from scratch", file=sys.stderr)
    work = output.open()
    with output.cleaned_up_on_error():
        record_or_check(work, _fingerprint(config, text), resuming=config.resume)
        return _train_into(config, text, work, output, config.resume and output.has_checkpoint(), config.quiet)


def _fingerprint(config: EmbedTrainOptions, text) -> dict:
    """The corpus and the options marked fingerprinted, with the algorithm's defaults filled
    in (--epochs, --max-steps, --threads and --max-memory may change on resume)."""
    return fingerprint({"--corpus": text.inputs()}, {**fingerprinted_options(config), **text.reading_options()})


def _train_into(config: EmbedTrainOptions, text, work: Path, output: RunOutput, resume: bool, quiet: bool) -> Path:
    started = time.perf_counter()
    max_tokens = None
    if config.max_steps is not None and config.algo != "glove":
        max_tokens = config.max_steps * WORDS_PER_GENSIM_STEP

    tokenizer = WordTokenizer.untrained(lowercase=config.lowercase)
    token_file = work / "tokens.txt"
    set_phase("tokenizing the corpus")
    with _bar("tokenize", quiet, unit="word") as bar:
        prepared = tokenize_to_file(text, tokenizer, token_file, max_tokens=max_tokens, progress=bar.update)
    tokenize_s = time.perf_counter() - started

    vocabulary = _vocabulary_or_error(prepared.counts, config, str(text.path))
    needed = estimate_memory_bytes(config, len(vocabulary))
    if needed > config.max_memory_gb * GIB:
        raise ResourceLimitError(
            f"{config.algo} needs ~{needed / GIB:.1f} GiB for a vocabulary of {len(vocabulary):,} words "
            f"(dim {config.dim}); raise --max-memory (now {config.max_memory_gb:g} GiB), "
            "lower --max-vocab or --dim, or raise --min-count"
        )
    in_vocab_tokens = sum(prepared.counts[w] for w in vocabulary)

    set_phase("training")
    train_started = time.perf_counter()
    extra_metrics: dict = {}
    if config.algo == "glove":
        vectors, extra_metrics = _train_glove(config, token_file, vocabulary, in_vocab_tokens, output, resume,
                                              quiet)
        kv = _keyed_vectors(vocabulary, vectors)
        trained_words = in_vocab_tokens * config.epochs
    else:
        model, epoch_losses = _train_gensim(config, prepared, vocabulary, output, resume, quiet)
        kv = model.wv
        trained_words = prepared.n_tokens * config.epochs
        # gensim's loss is a sum over the epoch's training examples; per corpus word it
        # compares across corpora and epochs
        extra_metrics["losses_per_word"] = [x / prepared.n_tokens for x in epoch_losses]
        extra_metrics["final_loss"] = extra_metrics["losses_per_word"][-1] if epoch_losses else None
    train_s = time.perf_counter() - train_started
    check_weights([("vectors", kv.vectors)], "the end of training",
                  hint="lower --glove-lr" if config.algo == "glove" else "lower --alpha")

    from nlpft.embeddings.vectors_io import save_vectors

    token_file.unlink()
    save_vectors(kv, work)
    if config.algo == "fasttext":
        from gensim.models.fasttext import save_facebook_model

        # the subword model in Facebook's binary format (no pickle): gensim's
        # load_facebook_model and the fasttext tools read it, OOV words included
        save_facebook_model(model, str(work / "fasttext.bin"))
    # built from the final table so tokenizer ids and vector rows line up (gensim
    # re-sorts words of equal count in its own order)
    WordTokenizer.from_vocabulary(kv.index_to_key, lowercase=config.lowercase).save(work)

    total_s = time.perf_counter() - started
    metrics = {
        "algo": config.algo,
        "corpus": {
            "name": text.name,
            "files": [str(p) for p in text.inputs()],
            "lines": prepared.n_lines,
            "tokens": prepared.n_tokens,
            "types": prepared.n_types,
            "vocab_size": len(vocabulary),
            "in_vocab_token_ratio": in_vocab_tokens / prepared.n_tokens,
        },
        "time_s": {"tokenize": tokenize_s, "train": train_s, "total": total_s},
        "tokenize_words_per_s": prepared.n_tokens / max(tokenize_s, 1e-9),
        "train_words_per_s": trained_words / max(train_s, 1e-9),
        "peak_rss_bytes": peak_rss_bytes(),
        "estimated_train_memory_bytes": needed,
        **extra_metrics,
    }
    write_json(work / "metrics.json", metrics)
    write_json(work / "config.json", {
        "nlpft_version": __version__,
        "kind": "static-vectors",
        **config.to_dict(),
        "corpus": [str(p) for p in text.paths],
        "tokenizer": {"type": "word", "lowercase": config.lowercase, "file": "tokenizer.json"},
        "python": platform.python_version(),
    })
    final = output.publish()
    if not quiet:
        rate = (f"{metrics['train_pairs_per_s']:,.0f} pairs/s training" if config.algo == "glove"
                else f"{metrics['train_words_per_s']:,.0f} words/s training")
        print(
            f"{config.algo}: {len(vocabulary):,} words x {config.dim} dims from {prepared.n_tokens:,} tokens "
            f"in {total_s:.1f} s ({rate}) -> {final}",
            file=sys.stderr,
        )
    return final


def _keyed_vectors(vocabulary: list[str], vectors: np.ndarray):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=vectors.shape[1], count=len(vocabulary), dtype=np.float32)
    kv.index_to_key = list(vocabulary)
    kv.key_to_index = {w: i for i, w in enumerate(vocabulary)}
    kv.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return kv


def _train_gensim(config, prepared, vocabulary, output: RunOutput, resume: bool, quiet: bool):
    from nlpft.embeddings.word2vec import train_gensim

    total = prepared.n_tokens * config.epochs
    with _bar(f"{config.algo}", quiet, total=total) as bar:

        def progress(done: float) -> None:
            # gensim reports the share of the epoch done once a second; tqdm derives
            # words/s (raw corpus words, before subsampling) from it
            bar.n = min(done, total)
            bar.refresh()

        model, losses = train_gensim(
            config, prepared.token_file, vocabulary, prepared.counts, prepared.n_tokens,
            checkpoint_dir=output.checkpoint_dir, resume=resume, progress=progress,
        )
        bar.n = total
        bar.refresh()
    return model, losses


def _train_glove(config, token_file: Path, vocabulary, n_words: int, output: RunOutput, resume: bool,
                 quiet: bool):
    from nlpft.embeddings.cooccurrence import CooccurrenceMatrix, count_cooccurrences
    from nlpft.training.allocator import release_freed_memory

    cooc_dir = output.checkpoint_dir / "cooccurrence"
    metrics: dict = {}
    started = time.perf_counter()
    if resume and cooc_dir.is_dir():
        cooc = CooccurrenceMatrix.load(cooc_dir)
    else:
        with _bar("co-occurrences", quiet) as bar:
            cooc = count_cooccurrences(
                iter_token_ids(token_file, vocabulary), len(vocabulary), window=config.window,
                max_memory_bytes=min(int(config.max_memory_gb * GIB), COUNT_BUDGET_BYTES), tmp_dir=output.partial,
                progress=bar.update, n_words=n_words,
            )
        output.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        cooc.save(cooc_dir)
    count_s = time.perf_counter() - started
    metrics["cooccurrence"] = {"nonzero_pairs": int(cooc.nnz), "count_s": count_s}

    # the counting buffers go back to the system, and the trainer's numba is imported only
    # now: neither stays resident under the other's peak
    release_freed_memory()
    from nlpft.embeddings.glove import GloveConfig, GloveTrainer

    trainer = GloveTrainer(cooc, GloveConfig(
        dim=config.dim, epochs=config.epochs, x_max=config.x_max, alpha=config.weight_power,
        learning_rate=config.glove_lr, threads=config.threads, seed=config.seed,
    ))
    metrics["kernel"] = trainer.kernel
    if not quiet:
        print(trainer.kernel_note(), file=sys.stderr)
    total = cooc.nnz * config.epochs
    train_started = time.perf_counter()
    with _bar("glove", quiet, total=total, unit="pair") as bar:
        vectors = trainer.train(checkpoint_dir=str(output.checkpoint_dir / "glove"), resume=resume,
                                progress=bar.update, max_steps=config.max_steps)
    train_s = time.perf_counter() - train_started
    metrics["final_loss"] = float(trainer.losses[-1]) if trainer.losses else None
    metrics["losses"] = [float(x) for x in trainer.losses]
    metrics["train_pairs_per_s"] = cooc.nnz * max(len(trainer.losses), 1) / max(train_s, 1e-9)
    # the pairs and the AdaGrad state go back to the system before the vectors are written
    # (gensim's import there), which would otherwise stack on numba's ~160 MiB
    del trainer, cooc
    release_freed_memory()
    return vectors, metrics
