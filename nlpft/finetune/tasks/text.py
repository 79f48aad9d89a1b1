"""`TextTask`: the shared half of the tasks that make one decision per text (or text pair).

Rows come from a labeled CSV/TSV/JSONL file or a dataset source (hf:NAME, Parquet,
save_to_disk: `nlpft.data.labeled`, `nlpft.data.sources`), are split with a seeded
stratified split when valid/test files are not given, and are encoded by the backbone's
tokenizer one text at a time (`nlpft.finetune.data`). Predictions are a CSV of row, text,
[text_pair], [gold], predicted and the per-label probabilities. Subclasses say what a label
is (`single`, `multi`, `regression`).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from nlpft.errors import UserInputError
from nlpft.finetune.tasks.base import SPLIT_CORPUS_FILE, Splits, Task, json_kind
from nlpft.options import option, positive_int

if TYPE_CHECKING:  # numpy loads when a method needs it: listing the plug-ins stays cheap
    import numpy as np


#: finetune.json fields that say how the files were read (names kept from the first format)
READING_FIELDS = ("text_col", "text_pair_col", "label_col", "label_delimiter")
#: --long-text auto reads in windows when more than this share of the training texts is too long
AUTO_WINDOWS_SHARE = 0.10


@dataclass(frozen=True)
class TextOptions:
    """The options of the text tasks (single, multi, regression): how a long text is read."""

    long_text: str = option(
        "auto", "transformers: truncate = read the first --max-length tokens of a text; windows = read all of it in "
                "windows of --max-length tokens sharing --stride tokens, trained on with the text's label and pooled "
                f"into one prediction per text; auto = windows when more than {AUTO_WINDOWS_SHARE:.0%}% of the "
                "training texts are longer than --max-length. --method frozen/contrastive: a text's embedding is the "
                "mean of its windows' embeddings, and contrastive tuning reads one window of a row, drawn, per pair; "
                "they read text pairs truncated (default: %(default)s)",
        choices=["auto", "truncate", "windows"], fingerprinted=True)
    window_pooling: str = option("mean", "--long-text windows, --method standard: one text's window logits pooled "
                                         "by their mean or their maximum (default: %(default)s)", choices=["mean", "max"],
                                 fingerprinted=True)
    max_windows: int = option(8, "--long-text windows: training reads at most this many windows of one text, evenly "
                                 "spaced over it (first and last included); prediction reads every window (default: "
                                 "%(default)s)", type=positive_int, fingerprinted=True)


class TextTask(Task):
    options = TextOptions
    label_cell: ClassVar[str]  # how `nlpft.data.labeled` reads a label cell: "single", "multi" or "regression"
    has_label_space: ClassVar[bool] = True  # False: the label is a number (regression)
    has_probabilities: ClassVar[bool] = True  # predictions carry one p_<label> column per label

    def __init__(self, reading: dict, label_map=None, class_weights: list[float] | None = None,
                 thresholds: list[float] | None = None, normalize_labels: bool = False, task_options=None,
                 long_text: dict | None = None):
        self.task_options = task_options  # what the task declares in `options` (TextOptions)
        self.reading = {key: reading.get(key) for key in READING_FIELDS}
        self.reading["label_delimiter"] = self.reading["label_delimiter"] or ";"
        self.label_map = label_map
        self.class_weights = class_weights
        self.thresholds = thresholds
        self.normalize_labels = normalize_labels
        # how a text longer than max_length is read: mode auto|truncate|windows ("auto" until
        # `plan_encoding` decides), stride (None: a quarter of max_length), pooling, max_windows
        self.long_text = {"mode": "truncate", "stride": None, "pooling": "mean", "max_windows": None,
                          **(long_text or {})}
        self._weight_tensor = None

    # -- construction and state -------------------------------------------------------------
    @classmethod
    def from_options(cls, opts) -> TextTask:
        own = opts.task_options  # resolved by `finetune`
        # a subclass whose own options do not extend TextOptions reads long texts by their defaults
        reading = own if isinstance(own, TextOptions) else TextOptions()
        return cls({key: getattr(opts, key) for key in READING_FIELDS}, normalize_labels=opts.normalize_labels,
                   task_options=own,
                   long_text={"mode": reading.long_text, "stride": opts.stride, "pooling": reading.window_pooling,
                              "max_windows": reading.max_windows})

    def state(self) -> dict:
        long_text = {**self.long_text, "mode": "windows" if self.windowed else "truncate"}
        return {"task": self.name, "num_labels": self.num_outputs, "class_weights": self.class_weights,
                "thresholds": self.thresholds, "long_text": long_text}

    @property
    def windowed(self) -> bool:
        return self.long_text["mode"] == "windows"

    def to_meta(self) -> dict:
        return {"task": self.state(), "label_map": self.label_map.to_dict() if self.label_map is not None else None,
                **self.reading}

    @classmethod
    def from_meta(cls, meta: dict, source: Path) -> TextTask:
        label_map = None
        if meta.get("label_map"):
            from nlpft.data.labeled import LabelMap

            label_map = LabelMap.from_dict(meta["label_map"], source=f"{source}: label_map")
        state = meta["task"]
        normalize = bool((meta.get("options") or {}).get("normalize_labels"))
        return cls(meta, label_map, class_weights=state.get("class_weights"), thresholds=state.get("thresholds"),
                   normalize_labels=normalize, task_options=cls.saved_options(meta),
                   long_text=state.get("long_text"))  # older outputs: truncate

    @classmethod
    def check_meta(cls, meta: dict, bad) -> None:
        for name in ("text_col", "label_col"):
            if name not in meta:
                raise bad(f"missing field {name!r}")
            if not isinstance(meta[name], str):
                raise bad(f"field {name!r} is {json_kind(meta[name])}, expected a text")
        for name, kinds, what in (("text_pair_col", str, "a text"), ("label_map", dict, "an object")):
            if meta.get(name) is not None and not isinstance(meta[name], kinds):
                raise bad(f"field {name!r} is {json_kind(meta[name])}, expected {what} or null")
        num_labels = meta["task"].get("num_labels")
        if isinstance(num_labels, bool) or not isinstance(num_labels, int):
            raise bad(f"field 'task.num_labels' is {json_kind(num_labels)}, expected a whole number")
        if cls.has_label_space and meta.get("label_map") is None:
            raise bad("missing field 'label_map' (a classifier needs its label names)")
        cls.saved_options(meta, bad)
        cls._check_long_text_meta(meta["task"].get("long_text"), bad)

    @staticmethod
    def _check_long_text_meta(long_text, bad) -> None:
        if long_text is None:
            return
        if not isinstance(long_text, dict):
            raise bad(f"field 'task.long_text' is {json_kind(long_text)}, expected an object or null")
        for name, allowed in (("mode", ("truncate", "windows")), ("pooling", ("mean", "max"))):
            if long_text.get(name) not in allowed:
                raise bad(f"field 'task.long_text.{name}' is {long_text.get(name)!r}, expected one of "
                          f"{', '.join(allowed)}")
        for name in ("stride", "max_windows"):
            value = long_text.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise bad(f"field 'task.long_text.{name}' is {json_kind(value)}, expected a whole number or null")
        if long_text["mode"] == "windows" and long_text.get("stride") is None:
            raise bad("field 'task.long_text.stride' is missing (a windowed model needs its stride)")

    # -- data -------------------------------------------------------------------------------
    def _read(self, path: str, *, training: bool, require_label: bool = True, skip_bad_rows: bool = False,
              bad_rows_dir: Path | None = None, role: str = "test", **overrides):
        from nlpft.data.labeled import read_labeled

        reading = {**self.reading, **{k: v for k, v in overrides.items() if v is not None}}
        return read_labeled(path, text_col=reading["text_col"], label_col=reading["label_col"],
                            text_pair_col=reading["text_pair_col"], task=self.label_cell,
                            label_delimiter=reading["label_delimiter"], skip_bad_rows=skip_bad_rows,
                            require_label=require_label, bad_rows_dir=bad_rows_dir, training=training,
                            normalize_labels=self.normalize_labels and require_label, role=role)

    def read_splits(self, opts, bad_rows_dir: Path | None, warn) -> Splits:
        from nlpft.data.labeled import (
            build_label_map,
            check_labels,
            held_out_fractions,
            preferred_spellings,
            respell_labels,
            stratified_split,
        )

        common = {"skip_bad_rows": opts.skip_bad_rows, "bad_rows_dir": bad_rows_dir}
        files = {"train": self._read(opts.train, training=True, role="train", **common),
                 "valid": self._read(opts.valid, training=False, role="valid", **common) if opts.valid else None,
                 "test": self._read(opts.test, training=False, role="test", **common) if opts.test else None}
        for data in files.values():
            if data is not None and data.note:  # which split of a dataset source was read
                warn(data.note)
            if data is not None and (warning := data.label_variants_warning()):
                warn(warning)
        skipped = {name: data.skipped_summary() for name, data in files.items() if data is not None and data.num_skipped}
        rows = {name: list(data) if data is not None else None for name, data in files.items()}
        if self.normalize_labels and self.has_label_space:  # valid/test spell each label as train does
            spellings = preferred_spellings(rows["train"])
            for name in ("valid", "test"):
                rows[name] = respell_labels(rows[name], spellings) if rows[name] is not None else None
        fractions = held_out_fractions(len(rows["train"]), opts.valid_fraction, opts.test_fraction,
                                       rows["valid"] is not None, rows["test"] is not None)
        if fractions is not None:
            rows["train"], split_valid, split_test = stratified_split(
                rows["train"], valid_fraction=fractions["valid"], test_fraction=fractions["test"],
                seed=opts.data_split_seed)
            rows["valid"] = rows["valid"] if rows["valid"] is not None else split_valid
            rows["test"] = rows["test"] if rows["test"] is not None else split_test
        if not rows["valid"] or not rows["test"]:
            raise UserInputError(f"{opts.train}: too few rows to hold out validation and test examples; "
                                 "pass --valid and --test files or use a larger file")
        if self.has_label_space:
            self.label_map = build_label_map(rows["train"])
            check_labels(rows["valid"], self.label_map, opts.valid or f"{opts.train} (validation split)")
            check_labels(rows["test"], self.label_map, opts.test or f"{opts.train} (test split)")
        return Splits(rows["train"], rows["valid"], rows["test"], skipped, fractions)

    def write_split(self, directory: Path, splits: Splits) -> dict:
        """CSV files in the columns this task reads (multi-label cells joined by the label
        delimiter, numbers as Python writes them), rows in file order."""
        pair_col = self.reading["text_pair_col"]
        header = [self.reading["text_col"], *([pair_col] if pair_col else []), self.reading["label_col"]]
        files = {}
        for part in ("train", "valid", "test"):
            files[part] = f"{part}.csv"
            with open(directory / files[part], "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(header)
                for row in getattr(splits, part):
                    writer.writerow([row.text, *([row.text_pair or ""] if pair_col else []), self._label_cell(row.label)])
        with open(directory / SPLIT_CORPUS_FILE, "w", encoding="utf-8") as fh:
            for row in splits.train:  # one text a line: a line break inside a text becomes a space
                for text in (row.text, row.text_pair):
                    if text:
                        fh.write(" ".join(text.split()) + "\n")
        return files

    def _label_cell(self, label) -> str:
        if isinstance(label, tuple):
            return self.reading["label_delimiter"].join(label)
        return str(label)

    def read_file(self, path: str, overrides: dict, require_label: bool):
        data = self._read(path, training=False, require_label=require_label, **self._pair_override(overrides))
        if not require_label and not len(data):
            raise UserInputError(f"{path}: no row has text to classify")
        return data

    def _pair_override(self, overrides: dict) -> dict:
        """A pair model reads its second text from `text_pair_col` (or the trained column);
        a single-text model reads none, whatever is passed."""
        overrides = dict(overrides)
        if not self.reading["text_pair_col"]:
            overrides.pop("text_pair_col", None)
        return overrides

    def rows_from_text(self, text: str, text_pair: str | None, model_dir: str) -> list:
        from nlpft.data.labeled import LabeledExample

        if not text.strip():
            raise UserInputError("--text is empty")
        pair_col = self.reading["text_pair_col"]
        if pair_col and not (text_pair or "").strip():
            raise UserInputError(f"{model_dir} was trained on text pairs (columns {self.reading['text_col']!r} and "
                                 f"{pair_col!r}); pass the second text with --text-pair")
        if text_pair is not None and not pair_col:
            raise UserInputError(f"{model_dir} was trained on single texts; drop --text-pair")
        return [LabeledExample(text=text, label=None, row=1, text_pair=text_pair)]

    def check_rows(self, rows: list, source: str) -> list:
        from nlpft.data.labeled import check_labels, label_key, respell_labels

        if self.label_map is None:
            return rows
        if self.normalize_labels:  # spelled as the model's labels are
            rows = respell_labels(rows, {label_key(label): label for label in self.label_map.labels})
        check_labels(rows, self.label_map, source)
        return rows

    def describe_labels(self) -> str:
        return f", {len(self.label_map)} labels" if self.label_map is not None else ""

    @property
    def label_names(self) -> list[str]:
        return list(self.label_map.labels) if self.label_map is not None else []

    # -- model side -------------------------------------------------------------------------
    def targets(self, rows: list) -> list:
        """Training targets, one per row, as the collator batches them."""
        raise NotImplementedError

    def gold(self, rows: list) -> np.ndarray:
        import numpy as np

        return np.asarray(self.targets(rows))

    def plan_encoding(self, encoder, train_rows: list) -> str | None:
        """--long-text decided for this backbone: transformers (Hugging Face tokenizers) read
        in windows when asked, or under `auto` when more than AUTO_WINDOWS_SHARE of the
        training texts exceed max_length; word-level backbones truncate. Returns the line
        that says what `auto` decided."""
        if not hasattr(encoder.tokenizer, "hf"):
            asked, self.long_text["mode"] = self.long_text["mode"], "truncate"
            return ("--long-text windows applies to transformers; this backbone reads the first --max-length words"
                    if asked == "windows" else None)
        note = self._decide_auto(encoder, train_rows) if self.long_text["mode"] == "auto" else None
        if self.windowed:
            self._check_stride(encoder)
        return note

    def _decide_auto(self, encoder, train_rows: list) -> str:
        from nlpft.finetune.data import encode_examples

        texts, pairs = self.texts_and_pairs(train_rows)
        too_long = encode_examples(encoder.tokenizer, texts, pairs, encoder.max_length).truncated
        self.long_text["mode"] = "windows" if too_long > AUTO_WINDOWS_SHARE * len(train_rows) else "truncate"
        return (f"long texts: {too_long:,} of {len(train_rows):,} training texts exceed {encoder.max_length} tokens "
                f"-> {self.long_text['mode']} (auto: windows when more than {AUTO_WINDOWS_SHARE:.0%})")

    def _check_stride(self, encoder) -> None:
        """The stride (default: a quarter of max_length) leaves each window new tokens (a
        pair's window at least one token of its first text too)."""
        if self.long_text["stride"] is None:
            self.long_text["stride"] = encoder.max_length // 4
        room = encoder.max_length - encoder.tokenizer.hf.num_special_tokens_to_add(pair=self.has_pairs)
        most = room - 1 if self.has_pairs else room
        if self.long_text["stride"] >= most:
            raise UserInputError(f"--stride {self.long_text['stride']} leaves a window no new tokens: with "
                                 f"--max-length {encoder.max_length} it must be below {most}")

    @property
    def has_pairs(self) -> bool:
        return bool(self.reading["text_pair_col"])

    def encode(self, encoder, rows: list, with_targets: bool = True, training: bool = False):
        from nlpft.finetune.data import EncodedDataset, encode_examples, encode_windows

        texts, pairs = self.texts_and_pairs(rows)
        if self.windowed:
            encoded = encode_windows(encoder.tokenizer.hf, texts, pairs, encoder.max_length, self.long_text["stride"],
                                     max_windows=self.long_text["max_windows"] if training else None)
        else:
            encoded = encode_examples(encoder.tokenizer, texts, pairs, encoder.max_length,
                                      prefix_ids=encoder.prefix_ids, suffix_ids=encoder.suffix_ids)
        return EncodedDataset(encoded, self.targets(rows) if with_targets else None), encoded

    def collect_logits(self, per_row: list, dataset) -> np.ndarray:
        """One row per text: a windowed text's window logits pooled (mean or max) into one."""
        from nlpft.finetune.data import pool_windows

        logits = super().collect_logits(per_row, dataset)
        encoded = dataset.encoded
        if encoded.documents is None:
            return logits
        return pool_windows(logits, encoded.documents, len(encoded.windows_made), self.long_text["pooling"])

    def per_document(self, logits: np.ndarray, label_ids: np.ndarray, dataset) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        from nlpft.finetune.data import first_windows

        encoded = dataset.encoded
        if encoded.documents is None:
            return logits, label_ids
        return (self.collect_logits(list(logits), dataset),
                np.asarray(label_ids)[first_windows(encoded.documents, len(encoded.windows_made))])

    def collator(self, pad_id: int):
        from nlpft.finetune.data import PadCollator

        return PadCollator(pad_id)

    def texts_and_pairs(self, rows: list) -> tuple[list[str], list[str | None] | None]:
        """Backbones that read raw text (TF-IDF) take it from here."""
        return [r.text for r in rows], ([r.text_pair for r in rows] if self.reading["text_pair_col"] else None)

    def _weights(self, device):
        import torch

        if self.class_weights is None:
            return None
        if self._weight_tensor is None or self._weight_tensor.device != device:
            self._weight_tensor = torch.tensor(self.class_weights, dtype=torch.float32, device=device)
        return self._weight_tensor

    # -- metrics and predictions --------------------------------------------------------------
    def metrics(self, rows: list, scores: np.ndarray) -> dict:
        return self.metrics_of(self.gold(rows), self.decide(scores))

    def metrics_of(self, gold: np.ndarray, decided: np.ndarray) -> dict:
        raise NotImplementedError

    def interval_statistics(self) -> dict:
        """{metric name: statistic per bootstrap draw} of the scores the headline shows."""
        return {}

    def confidence_intervals(self, rows: list, scores: np.ndarray, seed: int) -> dict | None:
        from nlpft.finetune.metrics import BOOTSTRAP_BELOW, bootstrap_intervals

        statistics = self.interval_statistics()
        if not statistics or len(rows) >= BOOTSTRAP_BELOW:
            return None
        return bootstrap_intervals(self.gold(rows), self.decide(scores), statistics, seed)

    def format_decision(self, decided) -> str:
        """One row's decision as the predictions CSV writes it."""
        raise NotImplementedError

    def write_predictions(self, path: Path, rows: list, scores: np.ndarray, gold: bool) -> None:
        """CSV: row, text, [text_pair], [gold], predicted, then one probability column per label."""
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # one per process: two runs never share it
        try:
            self._write_prediction_rows(tmp, rows, scores, gold)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _write_prediction_rows(self, tmp: Path, rows: list, scores: np.ndarray, gold: bool) -> None:
        has_pair = any(getattr(row, "text_pair", None) is not None for row in rows)
        names = self.label_names
        decided = self.decide(scores)
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            header = ["row", "text"] + (["text_pair"] if has_pair else []) + (["gold"] if gold else []) + ["predicted"]
            if self.has_probabilities:
                header += [f"p_{name}" for name in names]
            writer.writerow(header)
            for i, row in enumerate(rows):
                record = [row.row, row.text] + ([row.text_pair or ""] if has_pair else [])
                if gold:
                    label = row.label
                    record.append(";".join(label) if isinstance(label, tuple) else label)
                record.append(self.format_decision(decided[i]))
                if self.has_probabilities:
                    record += [f"{p:.6f}" for p in scores[i]]
                writer.writerow(record)

    def prediction(self, row, scores: np.ndarray) -> dict:
        """{"label": the decision (`decision_value`), "scores": {label: probability}}."""
        decided = self.decide(scores[None, ...])[0]
        probabilities = ({name: float(p) for name, p in zip(self.label_names, scores, strict=True)}
                         if self.has_probabilities else {})
        return {"label": self.decision_value(decided), "scores": probabilities}

    def decision_value(self, decided):
        """One row's decision as a Python value (a label, a tuple of labels, a number)."""
        raise NotImplementedError

    def describe_prediction(self, scores: np.ndarray) -> list[str]:
        decided = self.decide(scores[None, ...])[0]
        lines = [self.format_decision(decided) or "(no label)"]
        ranked = sorted(zip(self.label_names, scores, strict=True), key=lambda x: -x[1])[:5]
        return lines + [f"  {name}\t{p:.4f}" for name, p in ranked]

