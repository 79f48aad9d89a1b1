"""The example-script way to fine-tune MiniLM (or any BERT) on a CSV, with stock transformers
and no nlpft import: every text padded to --max-length (the `run_glue` default), plain
random batches, fp32 (--precision bf16: bf16 autocast, for a comparison at nlpft's precision).
`run.py` compares nlpft's examples/s with this one's; `speed.py` times it as its pad-to-max row.

    python benchmarks/finetune/plain_trainer.py --model DIR --train train.csv --test test.csv

Prints one JSON line: {"train_s": ..., "examples_per_s": ..., "accuracy": ..., "macro_f1": ..., "precision": ...}.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
)


class Padded(torch.utils.data.Dataset):
    def __init__(self, enc, labels):
        self.enc, self.labels = enc, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        item = {k: torch.tensor(v[i]) for k, v in self.enc.items()}
        item["labels"] = torch.tensor(self.labels[i])
        return item


def read(path):
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = ap.parse_args()

    train_x, train_y = read(args.train)
    test_x, test_y = read(args.test)
    names = sorted(set(train_y))
    to_id = {n: i for i, n in enumerate(names)}
    tok = AutoTokenizer.from_pretrained(args.model)
    pad = dict(padding="max_length", truncation=True, max_length=args.max_length)
    train = Padded(tok(train_x, **pad), [to_id[y] for y in train_y])
    test = Padded(tok(test_x, **pad), [to_id[y] for y in test_y])
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=len(names), id2label=dict(enumerate(names)), label2id=to_id)
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(output_dir=out, per_device_train_batch_size=args.batch_size,
                                  per_device_eval_batch_size=32, learning_rate=args.lr, num_train_epochs=args.epochs,
                                  warmup_steps=0.1, weight_decay=0.01, save_strategy="no", eval_strategy="no",
                                  bf16=args.precision == "bf16", logging_steps=50, report_to="none", seed=args.seed, use_cpu=True,
                                  dataloader_num_workers=0, disable_tqdm=True)
        trainer = Trainer(model=model, args=targs, train_dataset=train)
        started = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - started
        logits = trainer.predict(test).predictions
    predicted = np.asarray(logits).argmax(-1)
    gold = np.asarray(test.labels)
    print(json.dumps({"train_s": train_s, "examples_per_s": len(train) * args.epochs / train_s,
                      "accuracy": float(accuracy_score(gold, predicted)),
                      "macro_f1": float(f1_score(gold, predicted, average="macro")),
                      "precision": args.precision}))


if __name__ == "__main__":
    main()
