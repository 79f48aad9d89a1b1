"""Measure nlpft's GloVe speed: co-occurrence counting (corpus words/s) and training (pairs/s).

The corpus is read once to build the vocabulary (words seen >= --min-count times, sorted by
descending count -> ids) and once more to turn each line into an int32 id array; only
`count_cooccurrences` and the training epochs are timed.  Prints one JSON line, e.g.

    python benchmarks/embeddings/glove_speed.py --corpus ../shared/corpora/text17m.txt.gz \
        --max-words 2000000 --epochs 1

Reference (Stanford C GloVe on this 2-core machine, text17m, 100 dim, window 15, 70k words):
counting ~1.2M words/s, training ~1.5M pairs/s, peak RSS 1.86 GiB.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nlpft.embeddings.cooccurrence import count_cooccurrences  # noqa: E402
from nlpft.embeddings.glove import GloveConfig, GloveTrainer  # noqa: E402

WORD = re.compile(r"[a-z]+")


def _lines(paths: list[str]):
    for path in paths:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            yield from f


def _tokens(line: str, regex: bool) -> list[str]:
    return WORD.findall(line.lower()) if regex else line.split()


def load_corpus(paths: list[str], min_count: int, max_words: int | None, regex: bool):
    """(vocabulary, list of int32 id arrays): one streaming pass to count, one to convert."""
    counts: collections.Counter = collections.Counter()
    seen = 0
    for line in _lines(paths):
        toks = _tokens(line, regex)
        if max_words is not None:
            toks = toks[:max_words - seen]
        counts.update(toks)
        seen += len(toks)
        if max_words is not None and seen >= max_words:
            break
    vocab = [w for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count]
    index = {w: i for i, w in enumerate(vocab)}
    arrays, seen = [], 0
    for line in _lines(paths):
        toks = _tokens(line, regex)
        if max_words is not None:
            toks = toks[:max_words - seen]
        seen += len(toks)
        ids = np.fromiter((index.get(w, -1) for w in toks), np.int32, len(toks))
        arrays.append(ids[ids >= 0])
        if max_words is not None and seen >= max_words:
            break
    return vocab, arrays, seen


def evaluate(vocab: list[str], vectors: np.ndarray) -> dict:
    """Analogy accuracy, WordSim-353 and SimLex-999 Spearman rho with gensim's test files."""
    import logging

    from gensim.models import KeyedVectors
    from gensim.test.utils import datapath

    logging.getLogger("gensim").setLevel(logging.ERROR)
    kv = KeyedVectors(vectors.shape[1])
    kv.add_vectors(vocab, vectors)
    analogy, _ = kv.evaluate_word_analogies(datapath("questions-words.txt"))
    ws = kv.evaluate_word_pairs(datapath("wordsim353.tsv"))
    sl = kv.evaluate_word_pairs(datapath("simlex999.txt"))
    return {"analogy_acc": float(analogy), "ws353_rho": float(ws[1][0]), "simlex_rho": float(sl[1][0])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", nargs="+", required=True, help="text file(s), .gz allowed")
    ap.add_argument("--max-words", type=int, default=None, help="use only the first N tokens")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--window", type=int, default=15)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--x-max", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-memory-gb", type=float, default=2.0)
    ap.add_argument("--regex", action="store_true",
                    help="tokenise with lowercase [a-z]+ (for raw text like austen.txt) instead of split()")
    ap.add_argument("--evaluate", action="store_true", help="also score analogies / WS353 / SimLex")
    args = ap.parse_args()

    t0 = time.perf_counter()
    vocab, arrays, n_tokens = load_corpus(args.corpus, args.min_count, args.max_words, args.regex)
    load_s = time.perf_counter() - t0
    n_words = int(sum(a.size for a in arrays))

    t0 = time.perf_counter()
    cooc = count_cooccurrences(arrays, len(vocab), window=args.window,
                               max_memory_bytes=int(args.max_memory_gb * (1 << 30)))
    count_s = time.perf_counter() - t0
    count_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20)
    del arrays

    trainer = GloveTrainer(cooc, GloveConfig(dim=args.dim, epochs=args.epochs, x_max=args.x_max,
                                             threads=args.threads))
    epoch_times = []
    last = [time.perf_counter()]

    def on_epoch_end(epoch: int, loss: float) -> None:
        now = time.perf_counter()
        epoch_times.append(now - last[0])
        last[0] = now
        print(f"epoch {epoch}: loss {loss:.5f} in {epoch_times[-1]:.1f}s", file=sys.stderr)

    t0 = time.perf_counter()
    vectors = trainer.train(on_epoch_end=on_epoch_end)
    train_s = time.perf_counter() - t0
    result = {
        "corpus": [Path(p).name for p in args.corpus],
        "tokens": n_tokens,
        "words_in_vocab": n_words,
        "vocab_size": len(vocab),
        "nonzero_pairs": cooc.nnz,
        "load_s": round(load_s, 2),
        "count_s": round(count_s, 2),
        "count_words_per_s": round(n_words / count_s),
        "count_peak_rss_gib": round(count_rss, 3),
        "epochs": args.epochs,
        "train_s": round(train_s, 2),
        "train_pairs_per_s": round(cooc.nnz / min(epoch_times)),  # fastest epoch
        "train_pairs_per_s_mean": round(cooc.nnz * len(epoch_times) / sum(epoch_times)),
        "mean_epoch_s": round(float(np.mean(epoch_times)), 2),
        "losses": [round(x, 5) for x in trainer.losses],
        "threads": args.threads,
    }
    if args.evaluate:
        result.update(evaluate(vocab, vectors))
    result["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20), 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
