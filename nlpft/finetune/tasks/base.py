"""The `Task` plug-in: what one kind of prediction means, from the file to the metrics.

A task owns everything that depends on what is predicted, so the runner, the trainer,
`predict` and `evaluate` never ask which task they run:

reading      `read_splits` (train/valid/test, split when needed, label space built and
             checked), `write_split` (the split as files: `nlpft split`), `read_file` (predict/evaluate input), `rows_from_text` (predict --text)
labels       `describe_labels`, `check_rows`, `fit_targets` (class weights), state in
             `to_meta` / `from_meta` (the keys of finetune.json the task owns)
model side   `head` and `hf_problem_type` (the Hugging Face head), `num_outputs`, `encode`
             (rows -> a dataset through the backbone's tokenizer; `plan_encoding` decides how,
             e.g. long texts in windows), `collator`, `loss`
             (from the logits, or from the model itself when `labels_into_model`),
             `collect_logits` (inference outputs of rows batched apart, put together; windows
             pooled per row), `per_document` (the same for validation during training),
             `default_lr` (from the backbone's), `word_model` / `load_word_model` (its
             head over a word-level backbone),
             `finish_model` / `reload_model` (layers over a transformer's head, e.g. a CRF),
             `export_obstacle` (what keeps `nlpft export` from writing the model as a graph)
decisions    `scores` (probabilities or values), `decide`, `tune` (on validation rows)
metrics      `eval_metrics` (during training), `selection_metric` / `greater_is_better`
             (keep-best and early stopping), `metrics`, `confidence_intervals` (small
             test sets), `headline`, `plots`
predictions  `predictions_file`, `write_predictions`, `describe_prediction` / `describe_row`
             (predict --text)

options      `options`: a frozen dataclass of the options only this task takes (`--task tag`:
             --tag-scheme, --crf, ...), declared with `nlpft.options.option`; registering
             the task adds their flags, --help section and config keys
             (`nlpft.finetune.plugin_options`). `from_options` finds them resolved in
             `opts.task_options`, `from_meta` reads them back with `saved_options`

A new task is one module with a `Task` subclass plus one `register(...)` line in
`nlpft/finetune/tasks/__init__.py`. Task modules import torch and scikit-learn inside
their methods, so listing the registry for `--help` stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from nlpft.errors import UserInputError
from nlpft.finetune import plugin_options

if TYPE_CHECKING:  # numpy loads when a method needs it: listing the plug-ins stays cheap
    import numpy as np


# the training text alone, one text a line, that `write_split` writes beside the parts
SPLIT_CORPUS_FILE = "train.txt"


@dataclass
class Splits:
    train: list
    valid: list
    test: list
    skipped: dict  # split name -> summary of the rows dropped by --skip-bad-rows
    fractions: dict | None = None  # the shares of --train held out (`held_out_fractions`); None: none were


class Task:
    name: ClassVar[str]
    summary: ClassVar[str]  # one line for --help
    head: ClassVar[str] = "sequence-classification"  # the Hugging Face head (see pretrained.loading)
    hf_problem_type: ClassVar[str | None] = None  # config.problem_type of that head
    selection_metric: ClassVar[str] = "macro_f1"  # validation metric that keep-best and early stopping follow
    greater_is_better: ClassVar[bool] = True
    target_kind: ClassVar[str | None] = None  # one row's target: "class", "label-set", "number", "tags"
    labels_into_model: ClassVar[bool] = False  # the model computes the loss itself (e.g. a CRF layer)
    predictions_file: ClassVar[str] = "predictions.csv"
    normalize_labels: bool = False  # evaluate --normalize-labels: labels merged by case (label-space tasks)
    options: ClassVar[type | None] = None  # the dataclass of this task's own options (see plugin_options)

    # -- construction and state -------------------------------------------------------------
    @classmethod
    def from_options(cls, opts) -> Task:
        """An untrained task configured by the finetune options (label space still empty)."""
        raise NotImplementedError

    def to_meta(self) -> dict:
        """The finetune.json fields this task owns (its state, label names, reading settings)."""
        raise NotImplementedError

    @classmethod
    def from_meta(cls, meta: dict, source: Path) -> Task:
        """The trained task back from finetune.json; raises UserInputError naming `source`."""
        raise NotImplementedError

    @classmethod
    def saved_options(cls, meta: dict, bad=None):
        """This task's own options as finetune.json saved them (None when it declares none)."""
        return plugin_options.saved(plugin_options.TASK, cls, meta, bad)

    @classmethod
    def check_meta(cls, meta: dict, bad) -> None:
        """Raise `bad(problem)` when a field this task reads is missing or of the wrong kind."""

    # -- data -------------------------------------------------------------------------------
    def read_splits(self, opts, bad_rows_dir: Path | None, warn) -> Splits:
        """Every file read and checked, split when valid/test are not given, the label space
        built from train and checked against valid/test. `warn(text)` reports data problems."""
        raise NotImplementedError

    def write_split(self, directory: Path, splits: Splits) -> dict:
        """`nlpft split`: the three parts as files this task reads back (`finetune --train
        DIR/train.X --valid DIR/valid.X --test DIR/test.X` trains on the same rows) and
        `train.txt`, the training text one text a line, a corpus for `embed train` and `lm
        train`. Returns {part: file name}."""
        raise NotImplementedError

    def read_file(self, path: str, overrides: dict, require_label: bool):
        """An input file of predict (`require_label=False`) or evaluate, read with the settings
        the model was trained with (`overrides` replaces some: text_col=..., ...). Returns a
        sequence of rows with `skipped_rows`."""
        raise NotImplementedError

    def rows_from_text(self, text: str, text_pair: str | None, model_dir: str) -> list:
        """predict --text: the one row to score."""
        raise NotImplementedError

    def check_rows(self, rows: list, source: str) -> list:
        """evaluate: the rows respelled and checked against the training label space."""
        return rows

    def describe_labels(self) -> str:
        """For the run's first line, e.g. ", 4 labels" ("" when there is no label space)."""
        return ""

    def fit_targets(self, rows: list, class_weights: str | None) -> None:
        """Learn what training targets decide (e.g. --class-weights from their counts)."""

    # -- model side -------------------------------------------------------------------------
    @property
    def num_outputs(self) -> int:
        raise NotImplementedError

    @property
    def label_names(self) -> list[str]:
        return []

    def encode(self, encoder, rows: list, with_targets: bool = True, training: bool = False):
        """(dataset, encoding stats) of `rows` through `encoder` (tokenizer, max_length, framing
        ids: what a backbone's `prepare` gives). Stats have `truncated` and `unknown_rate`.
        `training`: the rows are trained on (a task may give them targets it never scores,
        e.g. the later subwords of a word)."""
        raise NotImplementedError

    def plan_encoding(self, encoder, train_rows: list) -> str | None:
        """Decide, from the backbone's encoder and the training rows, how rows are encoded
        (e.g. long texts in windows); returns a line for the console, or None."""
        return None

    def collator(self, pad_id: int):
        raise NotImplementedError

    def word_model(self, features, opts):
        """The model of this task's head over a word-level backbone's `WordFeatures`
        (pretrained weights are copied in afterwards): a pooled classifier by default."""
        from nlpft.finetune.word_models import WordClassifier, WordClassifierConfig

        return WordClassifier(WordClassifierConfig(**features.model_config(self.num_outputs)))

    def load_word_model(self, model_dir: Path):
        """`word_model`'s model back from a saved directory."""
        from nlpft.finetune.word_models import WordClassifier

        return WordClassifier.from_pretrained(model_dir)

    def finish_model(self, model):
        """The model a backbone built with this task's head, with any layers the task adds
        on top (e.g. a CRF); saved by the model's own save_pretrained."""
        return model

    def reload_model(self, model, model_dir: Path):
        """`finish_model`'s layers back around `model`, loaded from `model_dir`."""
        return model

    def export_obstacle(self) -> str | None:
        """Why this task's model is not a plain function from token ids to logits, which
        `nlpft export --format onnx` writes as a graph (e.g. a CRF's decoding), or None."""
        return None

    def collect_logits(self, per_row: list, dataset) -> np.ndarray:
        """One array of the model's outputs from one per row (as batched, so per-token outputs
        carry their batch's padding; a token task trims them by `dataset`'s lengths)."""
        import numpy as np

        return np.stack(per_row).astype(np.float32)

    def per_document(self, logits: np.ndarray, label_ids: np.ndarray, dataset) -> tuple[np.ndarray, np.ndarray]:
        """Validation outputs and labels of `dataset`'s items (as the trainer batched them)
        brought to one per row, e.g. a long text's windows pooled into one."""
        return logits, label_ids

    def loss(self, outputs, labels):
        if self.labels_into_model:
            return outputs["loss"]
        return self.logits_loss(outputs["logits"], labels)

    def logits_loss(self, logits, labels):
        raise NotImplementedError

    def default_lr(self, backbone_lr: float, backbone) -> float:
        """The learning rate without --lr, from the backbone's default for it."""
        return backbone_lr

    def default_lr_note(self, lr: float) -> str | None:
        """Why `default_lr` differs from the backbone's default (a line for the console)."""
        return None

    # -- decisions --------------------------------------------------------------------------
    def scores(self, logits: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def decide(self, scores: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def tune(self, valid_scores: np.ndarray, valid_rows: list) -> None:
        """Adjust the decision rule on validation data (no-op unless the task has one)."""

    # -- metrics and predictions --------------------------------------------------------------
    def eval_metrics(self, logits: np.ndarray, label_ids: np.ndarray) -> dict:
        raise NotImplementedError

    def metrics(self, rows: list, scores: np.ndarray) -> dict:
        raise NotImplementedError

    def headline(self, metrics: dict) -> str:
        raise NotImplementedError

    def confidence_intervals(self, rows: list, scores: np.ndarray, seed: int) -> dict | None:
        """Intervals of the headline scores on `rows` when they are too few to trust a point
        score (`nlpft.finetune.metrics.bootstrap_intervals`), or None."""
        return None

    def plots(self, metrics: dict, folder: Path) -> dict[str, str]:
        """{title: file name} of the plots written into `folder` for `metrics`."""
        return {}

    def report_section(self, metrics: dict, plots: dict[str, str]) -> str | None:
        """report.md's section on `metrics` (with `plots`), or None for the per-label table."""
        return None

    def write_predictions(self, path: Path, rows: list, scores: np.ndarray, gold: bool) -> None:
        raise NotImplementedError

    def describe_prediction(self, scores: np.ndarray) -> list[str]:
        """predict --text: the lines printed for one row's scores."""
        raise NotImplementedError

    def describe_row(self, row, scores: np.ndarray) -> list[str]:
        """predict --text: the lines printed for `row` and its scores (a task whose output
        quotes the input, e.g. entity spans, overrides this one)."""
        return self.describe_prediction(scores)

    def prediction(self, row, scores: np.ndarray) -> dict:
        """The Python API's prediction for `row`: {"label": the decision, "scores": ...}
        (and for a task that quotes its input, what else it finds, e.g. "entities"). This
        default gives the decision as predict --text prints it, and no scores."""
        return {"label": self.describe_row(row, scores)[0], "scores": {}}


_REGISTRY: dict[str, type[Task]] = {}


def register(task: type[Task]) -> type[Task]:
    """Add `task` (and its options: a clash with another's fails here, see plugin_options)."""
    plugin_options.declare(plugin_options.TASK, task)
    _REGISTRY[task.name] = task
    return task


def unregister(name: str) -> None:
    """Remove a plug-in (tests register their own for a while)."""
    _REGISTRY.pop(name, None)
    plugin_options.retract(plugin_options.TASK, name)


def task_names() -> list[str]:
    return list(_REGISTRY)


def task_class(name: str) -> type[Task]:
    if name not in _REGISTRY:
        raise UserInputError(f"unknown --task {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def task_help() -> str:
    return "; ".join(f"{name}: {task.summary}" for name, task in _REGISTRY.items())


def json_kind(value: object) -> str:
    """"a string", "an array", ... as JSON calls what a field holds (for finetune.json checks)."""
    if value is None:
        return "missing or null"
    kinds = {bool: "a boolean", str: "a string", int: "a number", float: "a number", list: "an array",
             dict: "an object"}
    return kinds.get(type(value), type(value).__name__)
