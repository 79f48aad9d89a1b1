"""The baseline: what a user writes with gensim alone, with the same settings as nlpft.

Same tokenization rule (NFKC, lowercase, split on non-letters/digits, one line = one
sentence), same token-file + `corpus_file` training, same hyper-parameters; saves the
vectors in word2vec binary and text formats. Prints one JSON line of what it measured.
Imports nothing from nlpft, on purpose.

    python benchmarks/embeddings/plain_gensim.py --corpus a.txt b.txt --out DIR [--dim ...]
"""

import argparse
import json
import os
import resource
import tempfile
import time
import unicodedata

import regex
from gensim.models import Word2Vec

SEPARATOR = regex.compile(r"[^\p{L}\p{N}'’]+|(?<![\p{L}\p{N}])['’]+|['’]+(?![\p{L}\p{N}])")


def main() -> None:
    started = time.perf_counter()
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--min-count", type=int, default=5)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)

    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        token_file = os.path.join(tmp, "tokens.txt")
        with open(token_file, "w", encoding="utf-8") as out:
            for path in args.corpus:
                with open(path, encoding="utf-8") as fh:
                    for line in fh:
                        words = [w for w in SEPARATOR.split(unicodedata.normalize("NFKC", line).lower()) if w]
                        if words:
                            out.write(" ".join(words) + "\n")
        tokenized = time.perf_counter()
        model = Word2Vec(vector_size=args.dim, window=args.window, min_count=args.min_count, sg=1, hs=0,
                         negative=5, sample=1e-3, workers=args.threads, seed=args.seed, epochs=args.epochs)
        model.build_vocab(corpus_file=token_file)
        model.train(corpus_file=token_file, total_words=model.corpus_total_words, epochs=args.epochs,
                    compute_loss=True)
        trained = time.perf_counter()
    model.wv.save_word2vec_format(os.path.join(args.out, "vectors.bin"), binary=True)
    model.wv.save_word2vec_format(os.path.join(args.out, "vectors.txt"), binary=False)
    done = time.perf_counter()
    print(json.dumps({
        "tokenize_s": tokenized - started,
        "train_s": trained - tokenized,
        "total_s": done - started,
        "vocab_size": len(model.wv),
        "corpus_words": model.corpus_total_words,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


if __name__ == "__main__":
    main()
