"""Measure nlpft's GloVe speed: co-occurrence counting (corpus words/s) and training (pairs/s).

The corpus goes through nlpft's own tokenization pass (token file + vocabulary, words seen
>= --min-count times) and is turned into int32 id arrays held in memory; only
`count_cooccurrences` and the training epochs are timed, so the rates compare with the
C reference's `cooccur` and `glove` steps. Prints one JSON line, e.g.

    python benchmarks/embeddings/glove_speed.py --corpus text17m --max-words 2000000 --epochs 1
    python benchmarks/embeddings/glove_speed.py --corpus austen kjv --epochs 15 --evaluate

Reference (Stanford C GloVe on this 2-core machine, text17m, 100 dim, window 15, 70k words):
counting ~1.2M words/s, training ~1.5M pairs/s, peak RSS 1.86 GiB.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nlpft.data.registry import resolve_corpus
from nlpft.embeddings.cooccurrence import count_cooccurrences
from nlpft.embeddings.glove import GloveConfig, GloveTrainer
from nlpft.embeddings.prepare import iter_token_ids, tokenize_to_file
from nlpft.tokenization import WordTokenizer, select_vocabulary


def load_corpus(specs: list[str], min_count: int, max_words: int | None):
    """(vocabulary, list of int32 id arrays, corpus tokens) through nlpft's pipeline."""
    with tempfile.TemporaryDirectory() as tmp:
        token_file = Path(tmp) / "tokens.txt"
        prepared = tokenize_to_file(resolve_corpus(specs), WordTokenizer.untrained(), token_file,
                                    max_tokens=max_words)
        vocab = select_vocabulary(prepared.counts, min_count)
        arrays = list(iter_token_ids(token_file, vocab))
    return vocab, arrays, prepared.n_tokens


def evaluate(vocab: list[str], vectors: np.ndarray) -> dict:
    """Analogy accuracy, WordSim-353 and SimLex-999 Spearman rho (nlpft's evaluation)."""
    from gensim.models import KeyedVectors

    from nlpft.embeddings.evaluation import evaluate as run_evaluation

    kv = KeyedVectors(vectors.shape[1])
    kv.add_vectors(vocab, vectors)
    scores = {s["name"]: s["score"] for s in run_evaluation(kv)["sets"]}
    return {"analogy_acc": scores["analogy"], "ws353_rho": scores["wordsim353"], "simlex_rho": scores["simlex999"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", nargs="+", required=True, help="text file(s), .gz allowed, or corpus names")
    ap.add_argument("--max-words", type=int, default=None, help="use only the first N tokens")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--window", type=int, default=15)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--x-max", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-memory-gb", type=float, default=2.0)
    ap.add_argument("--evaluate", action="store_true", help="also score analogies / WS353 / SimLex")
    ap.add_argument("--out", type=Path, help="also write the result, with the machine it ran on, to this JSON file")
    args = ap.parse_args()

    t0 = time.perf_counter()
    vocab, arrays, n_tokens = load_corpus(args.corpus, args.min_count, args.max_words)
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

    t0, cpu0 = time.perf_counter(), time.process_time()
    vectors = trainer.train(on_epoch_end=on_epoch_end)
    train_s = time.perf_counter() - t0
    train_cpu_s = time.process_time() - cpu0  # all threads
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
        "train_cpu_s": round(train_cpu_s, 2),
        "train_pairs_per_cpu_s": round(cooc.nnz * len(epoch_times) / train_cpu_s),
        "train_pairs_per_s": round(cooc.nnz / min(epoch_times)),  # fastest epoch
        "train_pairs_per_s_mean": round(cooc.nnz * len(epoch_times) / sum(epoch_times)),
        "mean_epoch_s": round(float(np.mean(epoch_times)), 2),
        "losses": [round(x, 5) for x in trainer.losses],
        "threads": args.threads,
        "kernel": trainer.kernel,
    }
    if args.evaluate:
        result.update(evaluate(vocab, vectors))
    result["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20), 3)
    print(json.dumps(result))
    if args.out is not None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/harness.py
        import harness

        result["machine"] = harness.machine()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
