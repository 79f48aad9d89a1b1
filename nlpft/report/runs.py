"""Finished run directories, read for a comparison: which runs are seeds of one model, and
the checks that make a comparison meaningful (every run a finished `nlpft finetune`
output, one task, the same test rows)."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from nlpft.errors import UserInputError

METRICS_FILE = "metrics.json"
META_FILE = "finetune.json"

#: finetune options that change where or how a run is watched, not what it learns
_NOT_SHAPING = {"seed", "out", "overwrite", "resume", "quiet", "threads", "offline", "report_to",
                "max_memory_gb", "checkpoint_every"}


@dataclass(frozen=True)
class RunRef:
    """One fine-tuning run directory; runs with the same `model` are seeds of one model."""
    path: Path
    model: str
    seed: int | None = None


@dataclass(frozen=True)
class UpstreamRef:
    """A step a fine-tuned model builds on: kind "embed", "lm" or "pretrain"."""
    path: Path
    name: str
    kind: str


@dataclass
class Run:
    """A finetune output as the report reads it."""
    ref: RunRef
    metrics: dict  # metrics.json
    meta: dict  # finetune.json
    test_rows: list  # (text, gold) per test row, from the predictions file
    predicted: list  # the decision per test row, as the predictions file writes it

    @property
    def task(self) -> str:
        return self.metrics.get("task") or self.meta.get("task", {}).get("task", "single")

    @property
    def test(self) -> dict:
        return self.metrics["test"]


def read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserInputError(f"{path.parent}: has no {path.name}, so it is not a finished {what}; pass the "
                             f"--out directory of a finished {what}") from None
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{path}: cannot be read as JSON ({exc}); pass a finished {what}'s directory") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: is not a JSON object; pass a finished {what}'s directory")
    return data


def load_run(ref: RunRef) -> Run:
    directory = Path(ref.path)
    if not directory.is_dir():
        raise UserInputError(f"{directory}: is not a directory; pass the --out directory of a finished "
                             "`nlpft finetune` run")
    what = "`nlpft finetune` run"
    meta = read_json(directory / META_FILE, what)
    metrics = read_json(directory / METRICS_FILE, what)
    if not isinstance(metrics.get("test"), dict):
        raise UserInputError(f"{directory}: metrics.json has no test metrics; fine-tune with a test split "
                             "(--test FILE or --test-fraction) so runs can be compared")
    run = Run(ref, metrics, meta, [], [])
    run.test_rows, run.predicted = _read_predictions(directory, run.task)
    return run


def _read_predictions(directory: Path, task: str) -> tuple[list, list]:
    """((text, gold) per test row, decision per row) from predictions.csv, or from
    predictions.conll for a tagger (a sentence's tokens and gold tags, its predicted tags)."""
    if task == "tag":
        return _read_conll(directory / "predictions.conll")
    path = directory / "predictions.csv"
    if not path.is_file():
        raise UserInputError(f"{directory}: has no predictions.csv; pass a finished `nlpft finetune` run "
                             "(it writes the test predictions there)")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not {"text", "gold", "predicted"} <= set(reader.fieldnames or ()):
            raise UserInputError(f"{path}: lacks the text, gold and predicted columns of a finetune run's "
                                 "test predictions; pass a finished `nlpft finetune` run")
        rows = list(reader)
    return ([(r["text"], r.get("text_pair"), r["gold"]) for r in rows], [r["predicted"] for r in rows])


def _read_conll(path: Path) -> tuple[list, list]:
    if not path.is_file():
        return [], []  # no sentence-level predictions: paired statistics are then not available
    sentences, predicted, tokens, gold, tags = [], [], [], [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if tokens:
                sentences.append((tuple(tokens), tuple(gold)))
                predicted.append(tuple(tags))
            tokens, gold, tags = [], [], []
            continue
        columns = line.split("\t")
        if len(columns) < 3:
            return [], []  # written without gold: nothing to pair
        tokens.append(columns[0])
        gold.append(columns[1])
        tags.append(columns[-1])
    return sentences, predicted


def load_runs(refs: list[RunRef]) -> list[Run]:
    """Every run read and checked: one task, and test rows that pair: all runs tested on the
    same rows, or (each seed holding out its own split) the runs of one seed on the same rows."""
    if not refs:
        raise UserInputError("no runs to compare; pass one or more finished `nlpft finetune` directories")
    runs = [load_run(ref) for ref in refs]
    first = runs[0]
    for run in runs[1:]:
        if run.task != first.task:
            raise UserInputError(f"{run.ref.path}: is a {run.task} run, but {first.ref.path} is a {first.task} "
                                 "run; compare runs of one task")
    if not same_test_rows(runs):
        by_seed: dict = {}
        for run in runs:
            other = by_seed.setdefault(run.ref.seed, run)
            if run.ref.seed is None or run.test_rows != other.test_rows:
                other = other if other is not run else first
                raise UserInputError(
                    f"{run.ref.path}: was tested on other rows than {other.ref.path} (the texts or gold labels of "
                    "their predictions differ); compare runs evaluated on the same test set: fine-tune each with "
                    "the same --test FILE, or compare seeds whose runs share the split --seed makes")
    return runs


def same_test_rows(runs: list[Run]) -> bool:
    return all(run.test_rows == runs[0].test_rows for run in runs[1:])


# -- grouping directories given on the command line ----------------------------------------
def refs_from_directories(directories: list[Path]) -> list[RunRef]:
    """RunRefs for `nlpft compare`: runs whose finetune.json options are the same except the
    seed (and options that do not shape the model, such as --out) are seeds of one model.
    A model is named after its run directory; a seed group after what its directories'
    names share, or its model spec and the options that set it apart."""
    groups: dict[str, list[tuple[Path, dict]]] = {}
    for directory in directories:
        options = read_json(Path(directory) / META_FILE, "`nlpft finetune` run").get("options") or {}
        shaping = {k: v for k, v in options.items() if k not in _NOT_SHAPING}
        groups.setdefault(json.dumps(shaping, sort_keys=True, default=str), []).append((Path(directory), options))
    names = _group_names(list(groups.values()))
    return [RunRef(path, name, _seed(options))
            for name, members in zip(names, groups.values(), strict=True) for path, options in members]


def _seed(options: dict) -> int | None:
    seed = options.get("seed")
    return seed if isinstance(seed, int) else None


def _group_names(groups: list[list[tuple[Path, dict]]]) -> list[str]:
    names = [_shared_name([path.name for path, _ in members]) for members in groups]
    if all(names) and len(set(names)) == len(names):
        return names
    differing = _differing_options([members[0][1] for members in groups])
    described = [" ".join([str(members[0][1].get("model", "model"))]
                          + [f"{k}={members[0][1].get(k)}" for k in differing if k != "model"])
                 for members in groups]
    if len(set(described)) == len(described):
        return described
    return ["+".join(path.name for path, _ in members) for members in groups]


def _shared_name(names: list[str]) -> str:
    """The name itself for one run; for seeds, the prefix their names share without a
    trailing seed marker ("clf-seed1", "clf-seed2" -> "clf")."""
    if len(names) == 1:
        return names[0]
    prefix = names[0]
    for name in names[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    return re.sub(r"([-_.]+(seed|s))?[-_.]*$", "", prefix, flags=re.IGNORECASE)


def _differing_options(options: list[dict]) -> list[str]:
    keys = sorted({k for o in options for k in o} - _NOT_SHAPING)
    return [k for k in keys if len({json.dumps(o.get(k), sort_keys=True, default=str) for o in options}) > 1]
