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
    method_name = "frozen"  # the --method that trains through it, for errors
    # the encoder is not trained, so the head's C is all there is to tune
    search_parameters = {"head_c": Param(0.01, 100.0, log=True)}
    # no optimiser runs (--batch-size still sets how many texts are embedded at once; --stride
    # and --long-text say how a long text is read, as for the standard method)
    ignored_options = TRAINER_OPTIONS - {"batch_size"}

    @classmethod
    def detect(cls, spec: str) -> bool:
        return False

    def supports(self, task) -> bool:
        return task.target_kind in TARGET_KINDS

    def check_options(self, opts) -> None:
        if opts.random_init:
            raise UserInputError("--random-init and --method frozen: a frozen random encoder reads nothing; "
                                 "drop --random-init, or use --method standard")

    def check(self, opts, task) -> None:
        super().check(opts, task)
        long_text = getattr(task, "long_text", None)  # text tasks: how a long text is read
        if long_text is None:
            return
        if long_text["mode"] == "windows" and task.has_pairs:
            raise UserInputError(f"--long-text windows and --method {self.method_name} on text pairs: the two texts "
                                 "are embedded apart and windows are for single texts; use --long-text truncate, or "
                                 "--method standard (its windows run over the second text)")
        if long_text["pooling"] != "mean":
            raise UserInputError(f"--window-pooling {long_text['pooling']} and --method {self.method_name}: a long "
                                 "text's features are the mean of its windows' embeddings; drop --window-pooling, "
                                 "or use --method standard")

    def fit(self, opts, task, splits, work: Path, output) -> dict:
        from nlpft.finetune.backbones.hf_encoder import HFEncoder
        from nlpft.finetune.fit import windows_read
        from nlpft.finetune.frozen import HEAD_C, FrozenEncoderClassifier
        from nlpft.finetune.observers import report_validation, validation_value

        pairs = task.texts_and_pairs(splits.train)[1] is not None
        checked = HFEncoder(self.spec).prepare(opts)  # the tokenizer, checked against the config as fine-tuning does
        self._plan_long_texts(opts, task, checked, splits.train, pairs)
        model = FrozenEncoderClassifier.pretrained(self.spec, checked.tokenizer, checked.max_length, pairs)
        started = time.perf_counter()
        windows = self._encode_windows(task, checked, splits)
        counts = windows_read(opts, windows) if windows is not None else None  # said on stderr
        self.tune_encoder(model.encoder, opts, task, splits, windows)
        features = self._embed_splits(model, task, splits, opts, windows)
        model.fit_head(features["train"], task, task.gold(splits.train), seed=opts.seed,
                       C=HEAD_C if opts.head_c is None else opts.head_c)
        model.windows = windows is not None
        train_s = time.perf_counter() - started
        valid_logits = model.logits(features["valid"])
        report_validation(validation_value(task, valid_logits, task.gold(splits.valid)), evaluation=1,
                          can_stop=False)  # one fit: `--search` reads its score, nothing to prune
        task.tune(task.scores(valid_logits), splits.valid)
        model.save(work)
        # train_s: embedding every split (the bulk of it) and fitting the head
        return {"test_scores": task.scores(model.logits(features["test"])), "train_s": train_s, "history": [],
                "parameters": model.num_parameters(), "steps": None, "epochs": None,
                **({"windows": counts, "truncated": {name: e.truncated for name, e in windows.items()}}
                   if windows is not None else {})}

    def tune_encoder(self, encoder, opts, task, splits, windows: dict | None) -> None:
        """Change the encoder's weights before the head is fitted: nothing, for a frozen one.
        `windows`: each split's windows (`Encoded`) under --long-text windows, else None."""

    def _plan_long_texts(self, opts, task, checked, train_rows: list, pairs: bool) -> None:
        """--long-text decided as the standard method decides it (the task's `plan_encoding`:
        the same auto rule and stride), said on stderr. Text pairs are read truncated: `check`
        refused windows for them, and auto does not pick windows for them."""
        if pairs and getattr(task, "long_text", None) is not None:
            asked, task.long_text["mode"] = task.long_text["mode"], "truncate"
            note = (f"long texts: each text of a pair is read up to {checked.max_length} tokens (--method {self.method_name} "
                    "embeds the two texts apart; windows are for single texts)" if asked == "auto" else None)
        else:
            note = task.plan_encoding(checked, train_rows)
        if note and not opts.quiet:
            print(f"  {note}", file=sys.stderr)

    @staticmethod
    def _encode_windows(task, checked, splits) -> dict | None:
        """Each split's texts in windows by the task's own encoding (training: at most
        --max-windows per text) when the task reads long texts in windows, else None."""
        if not getattr(task, "windowed", False):
            return None
        return {name: task.encode(checked, getattr(splits, name), with_targets=False, training=name == "train")[1]
                for name in SPLITS}

    def _embed_splits(self, model, task, splits, opts, windows: dict | None) -> dict[str, np.ndarray]:
        """Each split's features, behind one progress bar over every text or window (unless --quiet)."""
        from tqdm import tqdm

        if windows is not None:
            total, unit = sum(len(encoded.input_ids) for encoded in windows.values()), "window"
        else:
            texts = {name: task.texts_and_pairs(getattr(splits, name)) for name in SPLITS}
            total, unit = sum(len(t) * (2 if p is not None else 1) for t, p in texts.values()), "text"
        with tqdm(total=total, unit=unit, desc="embedding", file=sys.stderr, disable=opts.quiet) as bar:
            if windows is not None:
                return {name: model.document_features(windows[name], batch_size=opts.batch_size,
                                                      progress=bar.update) for name in SPLITS}
            return {name: model.features(t, p, batch_size=opts.batch_size, progress=bar.update)
                    for name, (t, p) in texts.items()}

    # -- inference --------------------------------------------------------------------------
    def load(self, model_dir: Path, meta: dict, task) -> Prepared:
        from nlpft.finetune.frozen import FrozenEncoderClassifier
        from nlpft.training.hf import transformers_quiet

        with transformers_quiet():
            model = FrozenEncoderClassifier.load(Path(model_dir), max_length=int(meta.get("max_length") or 512))
        tokenizer = model.encoder.tokenizer
        return Prepared(tokenizer=tokenizer, pad_id=tokenizer.pad_id or 0,
                        max_length=min(model.max_length, tokenizer.max_length), model=model)

    def logits(self, prepared: Prepared, task, rows: list, batch_size: int) -> tuple[np.ndarray, int]:
        """Texts read as training read them: in windows when the head was fitted on windows and
        finetune.json's task.long_text says how (the task's own encoding: the same stride, every
        window up to its input bound), else cut at max_length, as every head saved before this
        method read windows was fitted."""
        if prepared.model.windows and getattr(task, "windowed", False):
            _, windows = task.encode(prepared, rows, with_targets=False)
            return prepared.model.logits(prepared.model.document_features(windows, batch_size)), windows.truncated
        texts, pairs = task.texts_and_pairs(rows)
        return prepared.model.logits(prepared.model.features(texts, pairs, batch_size=batch_size)), 0
