"""What a training call of the Python API returns: read back from the published output
directory, so a result says exactly what the files say."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunResult:
    """path: the output directory; metrics: its metrics.json; files: {name: path} of the
    files in it."""

    path: Path
    metrics: dict

    @classmethod
    def read(cls, path: Path) -> RunResult:
        return cls(path=path, metrics=_read_json(path / "metrics.json"))

    @property
    def files(self) -> dict[str, Path]:
        return {item.name: item for item in sorted(self.path.iterdir()) if item.is_file()
                and not item.name.startswith(".")}


@dataclass(frozen=True)
class EmbeddingResult(RunResult):
    """`nlpft.embed.train`: also the vectors, as gensim KeyedVectors (`vectors["word"]`,
    `vectors.most_similar("word")`)."""

    vectors: Any = None

    @classmethod
    def read(cls, path: Path) -> EmbeddingResult:
        from nlpft.embeddings.vectors_io import load_vectors

        return cls(path=path, metrics=_read_json(path / "metrics.json"), vectors=load_vectors(path))


@dataclass(frozen=True)
class FinetuneResult(RunResult):
    """`nlpft.finetune`: metrics are the test split's (accuracy, macro_f1, ... as the task
    reports them); summary is the whole metrics.json (split sizes, timing, histories);
    method the training method used and why (--method auto decides); options the
    resolved options the run used, as saved with the model."""

    summary: dict = dataclasses.field(default_factory=dict)
    method: str = ""
    method_reason: str = ""
    options: Any = None

    @classmethod
    def read(cls, path: Path) -> FinetuneResult:
        from nlpft.finetune.inference import load_meta
        from nlpft.finetune.options import FinetuneOptions

        summary = _read_json(path / "metrics.json")
        meta = load_meta(path)
        saved = meta.get("options") or {}
        options = FinetuneOptions(**{f.name: saved[f.name] for f in dataclasses.fields(FinetuneOptions)
                                     if f.name in saved})
        return cls(path=path, metrics=summary.get("test") or {}, summary=summary, method=meta.get("method", ""),
                   method_reason=meta.get("method_reason", ""), options=options)


@dataclass(frozen=True)
class CompareResult:
    """`nlpft.compare`: path the report directory (report.html, report.md, report.json, the
    plots); primary the metric models are ranked by; best the best model's name; models the
    table, one dict per model (name, runs, and {"mean", "std"} of each metric: primary,
    accuracy, train_time_s, ...); paired the best model against each other one; report
    the whole report.json."""

    path: Path
    primary: str
    best: str
    models: list
    paired: dict
    report: dict

    @classmethod
    def read(cls, path: Path) -> CompareResult:
        report = _read_json(path / "report.json")
        return cls(path=path, primary=report["primary"], best=report["best"], models=report["models"],
                   paired=report["paired"], report=report)

    @property
    def html(self) -> Path:
        return self.path / "report.html"

    @property
    def markdown(self) -> Path:
        return self.path / "report.md"

    def model(self, name: str) -> dict:
        """The table row of model `name`."""
        return next(m for m in self.models if m["name"] == name)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
