"""The stock way to tag texts with a token-classification model directory, with no nlpft
import: `pipeline("token-classification", aggregation_strategy="first")` over a text file
of one text per line, entities written as JSON lines (`--aggregation simple` for the
subword-level grouping). `run.py` compares the words/s of
`nlpft predict` on the same model and file with this one's.

    python benchmarks/tagging/plain_pipeline.py --model DIR --texts texts.txt --out entities.jsonl

Prints one JSON line: {"texts", "words", "import_s", "run_s", "entities"}; run_s covers
loading the model, reading the texts, tagging them and writing the entities (not the
imports of torch and transformers' model and pipeline code, which import_s times). fp32,
as `nlpft predict`.
"""

from __future__ import annotations

import time

started = time.perf_counter()

import argparse
import json

# the imports run.py's nlpft child also makes before its clock starts
import torch  # noqa: F401
import transformers.modeling_utils  # noqa: F401
from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline  # noqa: F401

imported = time.perf_counter()


def _entity(found: dict) -> dict:
    """One entity in the keys `nlpft predict` writes (type, text, start, end, score)."""
    return {"type": found["entity_group"], "text": found["word"], "start": int(found["start"]),
            "end": int(found["end"]), "score": float(found["score"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--texts", required=True, help="one text per line")
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--aggregation", default="first", choices=("first", "simple", "average", "max"))
    args = ap.parse_args()

    tagger = pipeline("token-classification", model=args.model, aggregation_strategy=args.aggregation,
                      device="cpu")
    with open(args.texts, encoding="utf-8") as fh:
        texts = [line.rstrip("\n") for line in fh if line.strip()]
    found = tagger(texts, batch_size=args.batch_size)
    with open(args.out, "w", encoding="utf-8") as out:
        out.writelines(json.dumps([_entity(e) for e in entities]) + "\n" for entities in found)
    done = time.perf_counter()
    print(json.dumps({"texts": len(texts), "words": sum(len(t.split()) for t in texts),
                      "import_s": imported - started, "run_s": done - imported,
                      "entities": sum(len(e) for e in found)}))


if __name__ == "__main__":
    main()
