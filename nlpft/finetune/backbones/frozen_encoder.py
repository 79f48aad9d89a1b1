"""The backbone `--method frozen` trains through (`nlpft.finetune.methods`): a BERT-style
Hugging Face encoder kept as it is, its mean-pooled sentence embeddings read by the linear
head the TF-IDF backbone also fits (`nlpft.finetune.frozen`). No --model value selects it
by itself. It trains itself in seconds (`fit` overrides the shared trainer), in one
process even under torchrun; --epochs, --lr and the other optimiser options do not apply.

A method that tunes the encoder before the head is fitted (contrastive, SetFit-style) is
this class with `tune_encoder` overridden: saving, loading and scoring stay the same.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from nlpft.errors import UserInputError
from nlpft.finetune.backbones.base import TRAINER_OPTIONS, Backbone, Prepared
from nlpft.finetune.search_space import Param

if TYPE_CHECKING:  # numpy loads when a method needs it: listing the plug-ins stays cheap
    import numpy as np

TARGET_KINDS = ("class", "label-set", "number")
SPLITS = ("train", "valid", "test")


class FrozenEncoder(Backbone):
    name = "frozen-encoder"
    summary = ("chosen by --method frozen on a BERT-style encoder, not by --model: the encoder frozen, its "
               "mean-pooled sentence embeddings + logistic regression (scikit-learn)")
    uses_precision = False
    every_rank = False
    # the encoder is not trained, so the head's C is all there is to tune
    search_parameters = {"head_c": Param(0.01, 100.0, log=True)}
    # no optimiser runs (--batch-size still sets how many texts are embedded at once), and a
    # text is embedded once, cut at --max-length, never in windows
    ignored_options = (TRAINER_OPTIONS - {"batch_size"}) | {"stride"}

    @classmethod
    def detect(cls, spec: str) -> bool:
        return False

    def supports(self, task) -> bool:
        return task.target_kind in TARGET_KINDS

    def check_options(self, opts) -> None:
        if opts.random_init:
            raise UserInputError("--random-init and --method frozen: a frozen random encoder reads nothing; "
                                 "drop --random-init, or use --method standard")

    def fit(self, opts, task, splits, work: Path, output) -> dict:
        from nlpft.finetune.backbones.hf_encoder import HFEncoder
        from nlpft.finetune.frozen import HEAD_C, FrozenEncoderClassifier
        from nlpft.finetune.observers import report_validation, validation_value

        pairs = task.texts_and_pairs(splits.train)[1] is not None
        checked = HFEncoder(self.spec).prepare(opts)  # the tokenizer, checked against the config as fine-tuning does
        model = FrozenEncoderClassifier.pretrained(self.spec, checked.tokenizer, checked.max_length, pairs)
        started = time.perf_counter()
        self.tune_encoder(model.encoder, opts, task, splits)
        features = self._embed_splits(model, task, splits, opts)
        model.fit_head(features["train"], task, task.gold(splits.train), seed=opts.seed,
                       C=HEAD_C if opts.head_c is None else opts.head_c)
        train_s = time.perf_counter() - started
        valid_logits = model.logits(features["valid"])
        report_validation(validation_value(task, valid_logits, task.gold(splits.valid)), evaluation=1,
                          can_stop=False)  # one fit: `--search` reads its score, nothing to prune
        task.tune(task.scores(valid_logits), splits.valid)
        model.save(work)
        # train_s: embedding every split (the bulk of it) and fitting the head
        return {"test_scores": task.scores(model.logits(features["test"])), "train_s": train_s, "history": [],
                "parameters": model.num_parameters(), "steps": None, "epochs": None}

    def tune_encoder(self, encoder, opts, task, splits) -> None:
        """Change the encoder's weights before the head is fitted: nothing, for a frozen one."""

    def _embed_splits(self, model, task, splits, opts) -> dict[str, np.ndarray]:
        """Each split's features, behind one progress bar over every text (unless --quiet)."""
        from tqdm import tqdm

        texts = {name: task.texts_and_pairs(getattr(splits, name)) for name in SPLITS}
        total = sum(len(t) * (2 if p is not None else 1) for t, p in texts.values())
        with tqdm(total=total, unit="text", desc="embedding", file=sys.stderr, disable=opts.quiet) as bar:
            return {name: model.features(t, p, batch_size=opts.batch_size, progress=bar.update)
                    for name, (t, p) in texts.items()}

    # -- inference --------------------------------------------------------------------------
    def load(self, model_dir: Path, meta: dict, task) -> Prepared:
        from nlpft.finetune.frozen import FrozenEncoderClassifier
        from nlpft.training.hf import transformers_quiet

        with transformers_quiet():
            model = FrozenEncoderClassifier.load(Path(model_dir), max_length=int(meta.get("max_length") or 512))
        return Prepared(tokenizer=model.encoder.tokenizer, pad_id=model.encoder.tokenizer.pad_id or 0,
                        max_length=model.max_length, model=model)

    def logits(self, prepared: Prepared, task, rows: list, batch_size: int) -> tuple[np.ndarray, int]:
        texts, pairs = task.texts_and_pairs(rows)
        return prepared.model.logits(prepared.model.features(texts, pairs, batch_size=batch_size)), 0
