"""How an experienced user fine-tunes MiniLM (or any BERT) on a CSV with stock transformers
and no nlpft import: the texts tokenized once, truncated to --max-length and not padded;
`DataCollatorWithPadding` pads each batch to its own longest text; the Trainer's
length-grouped sampling (`train_sampling_strategy="group_by_length"`) puts texts of
similar length in one batch; bf16 autocast where the CPU does bf16 matrix work natively
(AVX-512 BF16 / AMX), fp32 elsewhere (--precision auto decides that the way nlpft's
`--precision auto` does); the Trainer's default optimizer (fused AdamW). No evaluation
during training, no checkpoints; test accuracy once at the end.

    python benchmarks/finetune/competent_trainer.py --model DIR --train train.csv --test test.csv

Prints one JSON line: {"train_s": ..., "examples_per_s": ..., "accuracy": ..., "macro_f1": ...,
"precision": ...}. train_s is the wall time of `Trainer.train()`: the training loop only
(nothing is evaluated or saved inside it).
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
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)


def read(path):
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def encoded(tok, texts, labels, max_length):
    """One dict per text (input ids and mask, unpadded; its label): what the collator pads
    and the length-grouped sampler measures."""
    enc = tok(texts, truncation=True, max_length=max_length)
    return [{"input_ids": ids, "attention_mask": mask, "labels": label}
            for ids, mask, label in zip(enc["input_ids"], enc["attention_mask"], labels, strict=True)]


def bf16_is_native() -> bool:
    """AVX-512 BF16 / AMX present: oneDNN runs bf16 matrix work in hardware."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--epochs", type=float, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    args = ap.parse_args()
    precision = args.precision if args.precision != "auto" else ("bf16" if bf16_is_native() else "fp32")

    train_x, train_y = read(args.train)
    test_x, test_y = read(args.test)
    names = sorted(set(train_y))
    to_id = {n: i for i, n in enumerate(names)}
    tok = AutoTokenizer.from_pretrained(args.model)
    train = encoded(tok, train_x, [to_id[y] for y in train_y], args.max_length)
    test = encoded(tok, test_x, [to_id[y] for y in test_y], args.max_length)
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=len(names), id2label=dict(enumerate(names)), label2id=to_id)
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(output_dir=out, per_device_train_batch_size=args.batch_size,
                                  per_device_eval_batch_size=32, learning_rate=args.lr, num_train_epochs=args.epochs,
                                  warmup_steps=0.1, weight_decay=0.01, save_strategy="no", eval_strategy="no",
                                  train_sampling_strategy="group_by_length", bf16=precision == "bf16",
                                  logging_steps=50, report_to="none", seed=args.seed, data_seed=args.seed,
                                  use_cpu=True, dataloader_num_workers=0, disable_tqdm=True)
        trainer = Trainer(model=model, args=targs, train_dataset=train,
                          data_collator=DataCollatorWithPadding(tok))
        started = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - started
        # under group_by_length transformers 5 batches evaluation data by length too, so the
        # predictions come back in that order: score them against the labels returned with them
        output = trainer.predict(test)
    predicted = np.asarray(output.predictions).argmax(-1)
    gold = np.asarray(output.label_ids)
    print(json.dumps({"train_s": train_s, "examples_per_s": len(train) * args.epochs / train_s,
                      "accuracy": float(accuracy_score(gold, predicted)),
                      "macro_f1": float(f1_score(gold, predicted, average="macro")), "precision": precision}))


if __name__ == "__main__":
    main()
