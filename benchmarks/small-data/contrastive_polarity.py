"""Few-shot accuracy on pang_lee_polarity_200.csv: frozen MiniLM vs contrastive-tuned MiniLM,
each read by mean pooling and a scikit-learn LogisticRegression.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/small-data/contrastive_polarity.py \
        --shots 8 16 64 --seeds 1 2 3 [--readme-step]

--shots k: k seeded training rows per class, test = every other row. --readme-step: the
160 training rows `nlpft finetune --train polarity` uses (seed 1 split), test = its 40
held-out rows. Prints one JSON line per run. With one thread, tune_cpu_s is the tuning time
on one uncontended core; tune_wall_s also counts waiting for a shared core.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "pang_lee_polarity_200.csv"


def read_rows(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [(row["text"], row["label"]) for row in csv.DictReader(fh)]


def few_shot_split(rows, shots: int, seed: int):
    rng = np.random.default_rng(seed)
    train = []
    for label in sorted({label for _, label in rows}):
        members = [i for i, (_, lab) in enumerate(rows) if lab == label]
        train.extend(int(i) for i in rng.choice(members, size=shots, replace=False))
    chosen = set(train)
    return [rows[i] for i in sorted(train)], [row for i, row in enumerate(rows) if i not in chosen]


def readme_split(rows):
    from nlpft.data.labeled.examples import LabeledExample
    from nlpft.data.labeled.splitting import stratified_split

    examples = [LabeledExample(text, label, i) for i, (text, label) in enumerate(rows)]
    train, valid, test = stratified_split(examples, 0.1, 0.1, seed=1)
    return [(e.text, e.label) for e in train], [(e.text, e.label) for e in valid + test]


def accuracies(encoder, train, test, max_length: int) -> tuple[float, float]:
    """Test accuracy of a LogisticRegression on the raw and on the unit-length embeddings."""
    from sklearn.linear_model import LogisticRegression

    results = []
    for normalize in (False, True):
        x_train = encoder.encode([t for t, _ in train], max_length=max_length, normalize=normalize)
        x_test = encoder.encode([t for t, _ in test], max_length=max_length, normalize=normalize)
        head = LogisticRegression(max_iter=1000).fit(x_train, [lab for _, lab in train])
        results.append(round(float(np.mean(head.predict(x_test) == np.array([lab for _, lab in test]))), 4))
    return results[0], results[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shots", type=int, nargs="*", default=[8, 16, 64])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--readme-step", action="store_true")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--max-pairs", type=int, default=None, help="default: tune_encoder's")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()

    import torch

    from nlpft.finetune.contrastive import tune_encoder
    from nlpft.pretrained.encode import SentenceEncoder

    torch.set_num_threads(1)
    base = SentenceEncoder.load("minilm", quiet=True)
    rows = read_rows(args.corpus)
    settings = [("readme", None, seed) for seed in ([1] if args.readme_step else [])]
    settings += [("few-shot", shots, seed) for shots in args.shots for seed in args.seeds]
    for kind, shots, seed in settings:
        train, test = readme_split(rows) if kind == "readme" else few_shot_split(rows, shots, seed)
        frozen, frozen_unit = accuracies(base, train, test, args.max_length)
        tuned = SentenceEncoder(copy.deepcopy(base.model), base.tokenizer)
        cpu_started = time.process_time()
        summary = tune_encoder(tuned.model, tuned.tokenizer, [t for t, _ in train], [{lab} for _, lab in train],
                               iterations=args.iterations, epochs=args.epochs,
                               **({"max_pairs": args.max_pairs} if args.max_pairs else {}), lr=args.lr,
                               batch_size=args.batch_size, max_length=args.max_length, seed=seed, progress=False)
        tune_cpu = time.process_time() - cpu_started
        started = time.perf_counter()
        contrastive, contrastive_unit = accuracies(tuned, train, test, args.max_length)
        print(json.dumps({"setting": kind, "shots_per_class": shots, "seed": seed, "train": len(train),
                          "test": len(test), "frozen_lr_acc": frozen, "frozen_unit_lr_acc": frozen_unit,
                          "contrastive_lr_acc": contrastive, "contrastive_unit_lr_acc": contrastive_unit,
                          "tune_wall_s": round(summary.seconds, 1), "tune_cpu_s": round(tune_cpu, 1), "head_s": round(time.perf_counter() - started, 1),
                          "pairs": summary.pairs, "steps": summary.steps, "iterations": args.iterations, "max_pairs": args.max_pairs,
                          "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
