"""The same GPT-2 pretraining as `nlpft pretrain --arch gpt2 --size tiny`, written by hand
with stock transformers (no nlpft import), as in the `run_clm` example: tokenize, join,
cut into blocks, `Trainer`. `run.py` times both on the same tokenizer and text to show
what nlpft's wrapper costs.

    python benchmarks/pretrain/plain_trainer.py --tokenizer DIR --text train.txt --steps 60

Prints one JSON line: {"train_s": ..., "tokens_per_s": ..., "steps": ..., "loss": ...}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
)


class Blocks(torch.utils.data.Dataset):
    def __init__(self, ids: np.ndarray, block: int):
        self.ids, self.block = ids, block

    def __len__(self):
        return len(self.ids) // self.block

    def __getitem__(self, i):
        return {"input_ids": torch.from_numpy(self.ids[i * self.block:(i + 1) * self.block].astype(np.int64))}


def collate(examples):
    x = torch.stack([e["input_ids"] for e in examples])
    return {"input_ids": x, "labels": x.clone()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()

    tok = PreTrainedTokenizerFast.from_pretrained(args.tokenizer)
    lines = [line.rstrip("\n") for line in open(args.text, encoding="utf-8")]
    texts = [line + "\n" for line in lines if line.strip()]
    ids = np.fromiter((i for row in tok(texts, add_special_tokens=False)["input_ids"] for i in row), dtype=np.uint32)

    torch.manual_seed(args.seed)
    eos = tok.eos_token_id
    config = GPT2Config(vocab_size=len(tok), n_positions=args.block_size, n_embd=128, n_layer=4, n_head=4,
                        n_inner=512, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    model = GPT2LMHeadModel(config)
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(output_dir=out, per_device_train_batch_size=args.batch_size, learning_rate=1e-3,
                                  weight_decay=0.01, warmup_steps=0.05, lr_scheduler_type="cosine",
                                  max_steps=args.steps, save_strategy="no", eval_strategy="no", logging_steps=50,
                                  report_to="none", seed=args.seed, data_seed=args.seed, use_cpu=True,
                                  dataloader_num_workers=0, disable_tqdm=True)
        trainer = Trainer(model=model, args=targs, train_dataset=Blocks(ids, args.block_size), data_collator=collate)
        started = time.perf_counter()
        result = trainer.train()
        train_s = time.perf_counter() - started
    tokens = args.steps * args.batch_size * args.block_size
    print(json.dumps({"train_s": train_s, "tokens_per_s": tokens / train_s, "steps": args.steps,
                      "loss": result.metrics.get("train_loss")}))


if __name__ == "__main__":
    main()
