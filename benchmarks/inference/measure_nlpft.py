"""`nlpft predict`'s scoring path on a list of texts, timed as `plain_pipeline.py` times
the stock pipeline: the model loaded and warmed up first, then every text in batches of
--batch-size (`LoadedModel.score`, which `nlpft predict`, `evaluate` and `serve` call),
then single-text calls over the first --latency-texts texts.

    python benchmarks/inference/measure_nlpft.py --model DIR --texts texts.jsonl --runtime onnx

Prints one JSON line with the keys of plain_pipeline.py, plus the precision and runtime
that ran.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # nlpft from this checkout

import torch  # noqa: E402

from nlpft.finetune.inference import load_for_inference, rows_from_texts  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--texts", required=True)
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--latency-texts", type=int, default=100)
    args = ap.parse_args()
    with open(args.texts, encoding="utf-8") as fh:
        texts = [json.loads(line) for line in fh]

    loaded = load_for_inference(args.model, runtime=args.runtime, precision=args.precision)
    rows = rows_from_texts(loaded, texts, [None] * len(texts))
    loaded.score(rows[:4], batch_size=args.batch_size)  # warm-up: loads the model, first-call allocations
    started = time.perf_counter()
    scores, _ = loaded.score(rows, batch_size=args.batch_size)
    batch_s = time.perf_counter() - started
    latencies = []
    for row in rows[:args.latency_texts]:
        started = time.perf_counter()
        loaded.score([row], batch_size=1)
        latencies.append((time.perf_counter() - started) * 1000)
    decided = loaded.task.decide(scores)
    names = loaded.task.label_names
    print(json.dumps({"texts": len(texts), "batch_s": batch_s, "latencies_ms": latencies,
                      "labels": [names[int(i)] for i in decided], "threads": torch.get_num_threads(),
                      "runtime": getattr(loaded, "runtime", args.runtime),
                      "precision": getattr(loaded, "precision", args.precision)}))


if __name__ == "__main__":
    main()
