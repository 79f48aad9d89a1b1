"""`build_report`: the comparison of fine-tuned models (each the mean over its seeds), its
plots, the paired statistics of the best model against each other one, and the metrics of
the upstream steps, written as report.md and one self-contained report.html."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nlpft.errors import UserInputError
from nlpft.report import plots
from nlpft.report.runs import (
    Run,
    RunRef,
    UpstreamRef,
    load_runs,
    read_json,
    same_test_rows,
)
from nlpft.report.stats import (
    PAIRED_RESAMPLES,
    PairedComparison,
    entity_counts,
    majority_correct,
    mcnemar_counts,
    mcnemar_exact,
    mean_and_std,
    paired_bootstrap,
    row_statistic,
)

#: per task: the default primary metric and the metric columns of the table
TASK_METRICS = {
    "single": ("macro_f1", ["accuracy", "macro_f1"]),
    "multi": ("macro_f1", ["subset_accuracy", "macro_f1", "micro_f1"]),
    "regression": ("spearman", ["spearman", "pearson", "mse"]),
    "tag": ("micro_f1", ["micro_f1", "micro_precision", "micro_recall"]),
}
METRIC_NAMES = {"macro_f1": "macro F1", "micro_f1": "micro F1", "accuracy": "accuracy",
                "subset_accuracy": "subset accuracy", "spearman": "Spearman", "pearson": "Pearson", "mse": "MSE",
                "mae": "MAE", "mcc": "MCC", "micro_precision": "precision", "micro_recall": "recall"}
LOWER_IS_BETTER = {"mse", "mae", "loss"}
#: per task: where metrics.json keeps the F1 of each class, and what a class is called there
PER_CLASS = {"single": ("per_class", "class"), "multi": ("per_label", "label"), "tag": ("per_type", "entity type")}


def metric_name(metric: str, task: str) -> str:
    if task == "tag" and metric == "micro_f1":
        return "entity F1"
    return METRIC_NAMES.get(metric, metric)


@dataclass
class Model:
    """One model: its runs (a run per seed)."""
    name: str
    runs: list[Run]
    stats: dict = field(default_factory=dict)  # metric -> (mean, std)

    def mean(self, metric: str) -> float | None:
        return self.stats.get(metric, (None, None))[0]


@dataclass
class Comparison:
    task: str
    primary: str
    greater_is_better: bool
    models: list[Model]
    columns: list[str]
    best: Model
    paired: dict[str, PairedComparison | str]  # other model -> comparison, or why there is none
    paired_metric: str | None
    plots: dict[str, Path]  # title -> PNG
    missing_plots: dict[str, str]  # title -> why it is missing
    upstream: list[tuple[UpstreamRef, dict]]


def build_report(runs: list[RunRef], out: Path, primary: str | None = None,
                 upstream: list[UpstreamRef] = ()) -> Path:
    """Write report.md, report.html, report.json (the tables' numbers) and the plots into
    `out` (made if missing) for the fine-tuning runs `runs` (grouped into models by
    `RunRef.model`) and the upstream steps; returns the path of report.html. Raises
    UserInputError for runs that cannot be compared."""
    from nlpft.report.render import write_html, write_json, write_markdown

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    comparison = compare(load_runs(list(runs)), primary, list(upstream), out)
    write_markdown(comparison, out / "report.md")
    write_json(comparison, out / "report.json")
    return write_html(comparison, out / "report.html")


def compare(loaded: list[Run], primary: str | None, upstream: list[UpstreamRef], out: Path) -> Comparison:
    task = loaded[0].task
    default_primary, columns = TASK_METRICS.get(task, (None, []))
    primary = primary or default_primary or _first_number(loaded[0].test)
    _check_metric(loaded[0], primary)
    columns = [primary] + [c for c in columns if c != primary]
    models: dict[str, Model] = {}
    for run in loaded:
        models.setdefault(run.ref.model, Model(run.ref.model, [])).runs.append(run)
    for model in models.values():
        for metric in columns:
            model.stats[metric] = mean_and_std([_number(run.test.get(metric)) for run in model.runs])
        for key in ("train_time_s", "train_examples_per_s", "parameters", "peak_rss_mib"):
            model.stats[key] = mean_and_std([_number(run.metrics.get(key)) for run in model.runs])
    greater = primary not in LOWER_IS_BETTER
    ranked = sorted(models.values(), key=lambda m: _rank_key(m.mean(primary), greater))
    best = ranked[0]
    paired, paired_metric = _paired(task, primary, best, ranked[1:])
    figures, missing = _plots(task, primary, greater, ranked, best, out)
    return Comparison(task, primary, greater, ranked, columns, best, paired, paired_metric, figures, missing,
                      [(ref, _upstream_metrics(ref)) for ref in upstream])


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _first_number(metrics: dict) -> str | None:
    return next((k for k, v in metrics.items() if _number(v) is not None and k != "examples"), None)


def _check_metric(run: Run, metric: str | None) -> None:
    numbers = sorted(k for k, v in run.test.items() if _number(v) is not None or v is None)
    if metric not in numbers:
        raise UserInputError(f"{run.ref.path}: its test metrics have no {metric!r}; pass --primary one of "
                             f"{', '.join(numbers)}")


def _rank_key(value: float | None, greater_is_better: bool) -> float:
    if value is None:
        return np.inf
    return -value if greater_is_better else value


# -- paired statistics -----------------------------------------------------------------------
def _paired(task: str, primary: str, best: Model, others: list[Model]) -> tuple[dict, str | None]:
    """The best model against each other one on the same test rows."""
    first = best.runs[0]
    if not first.test_rows:
        return {m.name: "not available: the runs' predictions give no per-row decisions with gold labels"
                for m in others}, None
    labels = list(first.test.get("labels") or [])
    metric = primary if row_statistic(task, primary, len(labels)) else _fallback_metric(task, len(labels))
    if metric is None:
        return {m.name: f"not available: {primary} does not decompose over test rows; pass --primary one that does"
                for m in others}, None
    statistic = row_statistic(task, metric, len(labels))
    per_seed = not same_test_rows([run for m in [best, *others] for run in m.runs])
    results: dict[str, PairedComparison | str] = {}
    for other in others:
        pairings = _pairings(task, labels, best, other, per_seed)
        if not pairings:
            results[other.name] = ("not available: no seed in common with the best model (each seed holds out "
                                   "its own test rows)")
            continue
        difference, low, high = paired_bootstrap(statistic, pairings)
        result = PairedComparison(metric, difference, low, high, PAIRED_RESAMPLES,
                                  sum(len(gold) for gold, _, _ in pairings),
                                  seeds=[run.ref.seed for run in other.runs if run.ref.seed in
                                         {r.ref.seed for r in best.runs}] if per_seed else None)
        if task in ("single", "multi"):
            counts = [mcnemar_counts(majority_correct(gold, a), majority_correct(gold, b)) for gold, a, b in pairings]
            result.discordant_best, result.discordant_other, result.mcnemar_p = mcnemar_exact(
                sum(c[0] for c in counts), sum(c[1] for c in counts))
        results[other.name] = result
    return results, metric


def _pairings(task: str, labels: list[str], best: Model, other: Model, per_seed: bool) -> list[tuple]:
    """(gold, best's decisions per seed, other's decisions per seed) for each set of test rows:
    one set shared by all runs, or one per seed the two models share."""
    def arrays(runs: list[Run]) -> tuple:
        gold_column = [row[-1] for row in runs[0].test_rows]
        return (_decisions(task, gold_column, gold_column, labels),
                [_decisions(task, run.predicted, gold_column, labels) for run in runs])

    if not per_seed:
        gold, best_decisions = arrays(best.runs)
        return [(gold, best_decisions, arrays(other.runs)[1])]
    pairings = []
    for run in other.runs:
        mate = next((b for b in best.runs if b.ref.seed == run.ref.seed), None)
        if mate is not None:
            gold, best_decisions = arrays([mate])
            pairings.append((gold, best_decisions, arrays([run])[1]))
    return pairings


def _fallback_metric(task: str, num_labels: int) -> str | None:
    """A metric the rows decompose into when the primary one is not (accuracy and the like)."""
    for metric in TASK_METRICS.get(task, (None, []))[1]:
        if row_statistic(task, metric, num_labels):
            return metric
    return None


def _decisions(task: str, values: list, gold: list, labels: list[str]) -> np.ndarray:
    """The predictions file's gold or predicted column as arrays: class ids, 0/1 label sets,
    numbers; for a tagger, each sentence's entity counts against the gold tags."""
    if task == "tag":
        return entity_counts(gold, values)
    if task == "regression":
        return np.asarray([float(v) for v in values])
    index = {label: i for i, label in enumerate(labels)}
    if task == "multi":
        onehot = np.zeros((len(values), len(labels)), dtype=np.int64)
        for i, value in enumerate(values):
            for label in filter(None, value.split(";")):
                onehot[i, index[label]] = 1
        return onehot
    return np.asarray([index.get(v, -1) for v in values])


# -- plots -----------------------------------------------------------------------------------
def _plots(task: str, primary: str, greater: bool, models: list[Model], best: Model,
           out: Path) -> tuple[dict[str, Path], dict[str, str]]:
    figures: dict[str, Path] = {}
    missing: dict[str, str] = {}
    name = metric_name(primary, task)

    def keep(title: str, path: Path | None, why: str) -> None:
        if path is None:
            missing[title] = why
        else:
            figures[title] = path

    summary = [{"name": m.name, "time": m.mean("train_time_s"), "primary": m.mean(primary),
                "primary_std": m.stats[primary][1]} for m in models]
    keep("Cost and quality", plots.plot_frontier(summary, name, greater, out / "frontier.png"),
         "not available: no run records its training time and primary metric")
    keep(*_heatmap(task, models, out))
    keep(*_learning_curves(primary, models, out))
    if task == "single" and all("confusion_matrix" in run.test for run in best.runs):
        matrix = np.sum([np.asarray(run.test["confusion_matrix"]) for run in best.runs], axis=0)
        figures[f"Confusion matrix of the best model ({best.name})"] = plots.plot_best_confusion(
            matrix.tolist(), best.runs[0].test["labels"], best.name, out / "confusion_best.png")
    return figures, missing


def _heatmap(task: str, models: list[Model], out: Path) -> tuple[str, Path | None, str]:
    key, unit = PER_CLASS.get(task, (None, "class"))
    title = f"F1 per {unit}"
    if key is None:
        return title, None, f"not available: {task} runs have no classes"
    classes = sorted({c for m in models for run in m.runs for c in (run.test.get(key) or {})})
    if not classes:
        return title, None, f"not available: the runs' metrics hold no F1 per {unit}"
    f1 = np.asarray([[np.mean([(run.test.get(key) or {}).get(c, {}).get("f1", 0.0) for run in m.runs])
                      for c in classes] for m in models])
    path = plots.plot_f1_heatmap([m.name for m in models], classes, f1,
                                 f"test F1 per {unit} (mean over seeds)", out / "per_class_f1.png")
    return title, path, ""


def _learning_curves(primary: str, models: list[Model], out: Path) -> tuple[str, Path | None, str]:
    title = "Learning curves"
    histories = [h for m in models for run in m.runs for h in run.metrics.get("valid_history") or []]
    key = f"eval_{primary}" if any(f"eval_{primary}" in h for h in histories) else "eval_loss"
    curves = {m.name: [[(h["step"], h[key]) for h in run.metrics.get("valid_history") or []
                        if key in h and "step" in h] for run in m.runs] for m in models}
    path = plots.plot_learning_curves(curves, key.removeprefix("eval_"), out / "learning_curves.png")
    return title, path, ("not available: no run has a validation history (TF-IDF and other one-shot "
                         "backbones train without evaluation steps)")


# -- upstream steps ----------------------------------------------------------------------------
def _upstream_metrics(ref: UpstreamRef) -> dict:
    """{dotted key: number or text} of what the step recorded ({} when it recorded nothing):
    its metrics.json, read as its kind's reader in UPSTREAM_READERS says."""
    return UPSTREAM_READERS.get(ref.kind, _step_metrics)(ref)


def _step_metrics(ref: UpstreamRef) -> dict:
    path = Path(ref.path) / "metrics.json"
    return dict(_flatten(read_json(path, f"{ref.kind} step"))) if path.is_file() else {}


def _split_summary(ref: UpstreamRef) -> dict:
    """`nlpft split` (an experiment's data:train) writes no metrics: its seed and rows per part."""
    path = Path(ref.path) / "split.json"
    found = read_json(path, "split step") if path.is_file() else {}
    return dict(_flatten({key: found[key] for key in ("seed", "rows") if key in found}))


def _embedding_metrics(ref: UpstreamRef) -> dict:
    """Word vectors: their metrics.json plus their scores on the built-in analogy and
    similarity sets, which `embed train` does not compute itself (about 2 s for a
    10,000-word vocabulary)."""
    return {**_step_metrics(ref), **_vector_scores(Path(ref.path))}


def _vector_scores(directory: Path) -> dict:
    """{"evaluation.<set>.<metric>": score, "evaluation.<set>.covered": n} of the vectors in
    `directory` (what `nlpft embed eval` reports); {} when they cannot be read."""
    from nlpft.embeddings.evaluation import evaluate
    from nlpft.embeddings.vectors_io import load_vectors
    from nlpft.errors import UserInputError

    try:
        result = evaluate(load_vectors(directory))
    except UserInputError:
        return {}
    scores = {}
    for found in result["sets"]:
        if found.get("score") is not None:
            scores[f"evaluation.{found['name']}.{found['metric']}"] = found["score"]
        scores[f"evaluation.{found['name']}.covered"] = found.get("covered")
    return {key: value for key, value in scores.items() if value is not None}


# What each upstream step kind is read for; a kind not named here is its metrics.json.
UPSTREAM_READERS = {"split": _split_summary, "embed": _embedding_metrics}


def _flatten(data: dict, prefix: str = ""):
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, name + ".")
        elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
            yield name, value
