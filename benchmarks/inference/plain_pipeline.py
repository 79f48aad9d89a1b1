"""The stock way to classify texts with a sequence-classification model directory, with no
nlpft import: `pipeline("text-classification", batch_size=32)`, cut at the model's
--max-length as nlpft cuts them. `run.py` compares it with `nlpft predict` on the same
model, texts and CPU.

    python benchmarks/inference/plain_pipeline.py --model DIR --texts texts.jsonl --max-length 256

texts.jsonl: one JSON string per line. Prints one JSON line (see `measure_nlpft.py`, which
prints the same keys): {"texts", "batch_s", "latencies_ms", "labels"}: batch_s is the
time to classify every text in batches of --batch-size (the model loaded and warmed up
first, outside the clock); latencies_ms the time of each single-text call over the first
--latency-texts texts; labels the predicted label of every text (from the batch run).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from transformers import pipeline


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--texts", required=True)
    ap.add_argument("--max-length", type=int, required=True)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--latency-texts", type=int, default=100)
    args = ap.parse_args()
    with open(args.texts, encoding="utf-8") as fh:
        texts = [json.loads(line) for line in fh]

    classify = pipeline("text-classification", model=args.model, device="cpu")
    settings = {"truncation": True, "max_length": args.max_length}
    classify(texts[:4], batch_size=args.batch_size, **settings)  # warm-up: first-call allocations
    with torch.inference_mode():
        started = time.perf_counter()
        found = classify(texts, batch_size=args.batch_size, **settings)
        batch_s = time.perf_counter() - started
        latencies = []
        for text in texts[:args.latency_texts]:
            started = time.perf_counter()
            classify(text, **settings)
            latencies.append((time.perf_counter() - started) * 1000)
    print(json.dumps({"texts": len(texts), "batch_s": batch_s, "latencies_ms": latencies,
                      "labels": [f["label"] for f in found], "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
