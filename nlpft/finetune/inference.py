"""A saved fine-tuning output loaded back and scoring rows: finetune.json is checked, the
task is rebuilt from it and the backbone named there loads the model directory. Neither
predict nor evaluate knows which task or backbone it runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nlpft.errors import UserInputError

META_FILE = "finetune.json"


@dataclass
class LoadedModel:
    model_dir: Path
    meta: dict
    task: object  # a Task
    backbone: object  # a Backbone
    prepared: object = None  # the backbone's loaded model; None until the first `score`

    def score(self, rows: list, batch_size: int = 32) -> tuple[np.ndarray, int]:
        """(the task's scores, how many texts were cut at the length limit) for `rows`."""
        if self.prepared is None:
            self.prepared = self.backbone.load(self.model_dir, self.meta, self.task)
        logits, truncated = self.backbone.logits(self.prepared, self.task, rows, batch_size)
        return self.task.scores(logits), truncated


def load_for_inference(model_dir: str | Path) -> LoadedModel:
    """The task and backbone of `model_dir` (the model itself loads on the first `score`)."""
    from nlpft.finetune.backbones import backbone_class
    from nlpft.finetune.tasks import task_class

    meta = load_meta(model_dir)
    source = Path(model_dir) / META_FILE
    task = task_class(meta["task"]["task"]).from_meta(meta, source)
    return LoadedModel(Path(model_dir), meta, task, backbone_class(meta["backbone"])(str(model_dir)))


def load_meta(model_dir: str | Path) -> dict:
    path = Path(model_dir) / META_FILE
    if not Path(model_dir).is_dir():
        raise UserInputError(f"{model_dir}: not a directory; pass the --out directory of `nlpft finetune`")
    if not path.is_file():
        raise UserInputError(f"{model_dir}: no {META_FILE} here; pass the --out directory of `nlpft finetune`")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UserInputError(f"{path}: not valid JSON ({exc})") from None
    check_meta(meta, path)
    return meta


def check_meta(meta: object, path: Path) -> None:
    """The fields predict/evaluate read, each of the right kind; a damaged or hand-made
    finetune.json stops here rather than as a KeyError after the model loads. The fields
    every output has are checked here, the task's own by its `check_meta`."""
    from nlpft.finetune.backbones import backbone_class, backbone_names
    from nlpft.finetune.tasks import task_class, task_names
    from nlpft.finetune.tasks.base import json_kind

    def bad(problem: str) -> UserInputError:
        return UserInputError(f"{path}: {problem}; the directory is not a complete nlpft fine-tuning output: "
                              "retrain, or pass another --model")

    if not isinstance(meta, dict):
        raise bad(f"a JSON {type(meta).__name__}, not an object")
    for name, kinds, what in (("backbone", str, "a text"), ("task", dict, "an object")):
        if name not in meta:
            raise bad(f"missing field {name!r}")
        if not isinstance(meta[name], kinds):
            raise bad(f"field {name!r} is {json_kind(meta[name])}, expected {what}")
    for name, kinds, what in (("max_length", int, "a whole number"), ("text_framing", dict, "an object"),
                              ("options", dict, "an object")):
        if meta.get(name) is not None and not isinstance(meta[name], kinds):
            raise bad(f"field {name!r} is {json_kind(meta[name])}, expected {what} or null")
    if meta["backbone"] not in backbone_names():
        raise bad(f"unknown backbone {meta['backbone']!r} (known: {', '.join(backbone_names())})")
    if meta["task"].get("task") not in task_names():
        raise bad(f"field 'task.task' is {meta['task'].get('task')!r}, expected one of {', '.join(task_names())}")
    task_class(meta["task"]["task"]).check_meta(meta, bad)
    backbone_class(meta["backbone"]).saved_options(meta, bad)


def rows_from_texts(loaded, texts: list[str], text_pairs: list[str | None], numbered: bool = False) -> list:
    """The rows `loaded`'s task makes of texts given directly (predict --text, the Python
    API, `nlpft serve`); `numbered`: an error names the text's position (texts[3]: ...)."""
    rows = []
    for position, (text, text_pair) in enumerate(zip(texts, text_pairs, strict=True)):
        try:
            rows += loaded.task.rows_from_text(text, text_pair, str(loaded.model_dir))
        except UserInputError as exc:
            raise (UserInputError(f"texts[{position}]: {exc}") if numbered else exc) from None
    return rows
