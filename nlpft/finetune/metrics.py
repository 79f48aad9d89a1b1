"""Metrics (scikit-learn), the Markdown report and the plots of a fine-tuning run; each
task picks its metrics and headline from here (see `nlpft.finetune.tasks`).

Classification: accuracy, macro and micro F1, MCC, per-class precision/recall/F1/support
and the confusion matrix. Multi-label: subset accuracy, macro/micro F1 and per-label
scores. Regression: MSE, MAE, Spearman and Pearson correlation. Test sets under 200 rows
also get percentile-bootstrap intervals of the headline scores (`bootstrap_intervals`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np


def classification_metrics(gold: np.ndarray, predicted: np.ndarray, labels: list[str]) -> dict:
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        matthews_corrcoef,
        precision_recall_fscore_support,
    )

    ids = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(gold, predicted, labels=ids, zero_division=0)
    return {
        "examples": len(gold),
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, labels=ids, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(gold, predicted, labels=ids, average="micro", zero_division=0)),
        "mcc": float(matthews_corrcoef(gold, predicted)) if len(gold) > 1 else 0.0,
        "per_class": {labels[i]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                  "support": int(s[i])} for i in ids},
        "confusion_matrix": confusion_matrix(gold, predicted, labels=ids).tolist(),
        "labels": labels,
    }


def multilabel_metrics(gold: np.ndarray, predicted: np.ndarray, labels: list[str]) -> dict:
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        precision_recall_fscore_support,
    )

    p, r, f, s = precision_recall_fscore_support(gold, predicted, zero_division=0)
    return {
        "examples": len(gold),
        "subset_accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(gold, predicted, average="micro", zero_division=0)),
        "per_label": {labels[i]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                  "support": int(s[i])} for i in range(len(labels))},
        "labels": labels,
    }


def regression_metrics(gold: np.ndarray, predicted: np.ndarray) -> dict:
    from scipy.stats import pearsonr, spearmanr

    gold, predicted = np.asarray(gold, dtype=float), np.asarray(predicted, dtype=float)
    constant = len(gold) < 2 or np.all(gold == gold[0]) or np.all(predicted == predicted[0])
    return {
        "examples": len(gold),
        "mse": float(np.mean((gold - predicted) ** 2)),
        "mae": float(np.mean(np.abs(gold - predicted))),
        "spearman": None if constant else float(spearmanr(gold, predicted).statistic),
        "pearson": None if constant else float(pearsonr(gold, predicted).statistic),
    }


# -- confidence intervals on small test sets -----------------------------------------------
BOOTSTRAP_BELOW = 200  # test sets with fewer rows get intervals: below this a point score is mostly noise
BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95


def bootstrap_intervals(gold: np.ndarray, decided: np.ndarray, statistics: dict, seed: int,
                        resamples: int = BOOTSTRAP_RESAMPLES, level: float = CONFIDENCE) -> dict:
    """Percentile-bootstrap intervals: the rows are drawn with replacement `resamples` times
    (seeded), each statistic computed on every draw, and the middle `level` of its values
    kept. A statistic takes (gold, decided) stacked as (resamples, rows, ...) and returns one
    value per draw. {"level", "method", "resamples", "seed", "rows", name: [low, high], ...}."""
    gold, decided = np.asarray(gold), np.asarray(decided)
    rows = len(gold)
    draws = np.random.default_rng(seed).integers(0, rows, size=(resamples, rows))
    tail = (1 - level) / 2 * 100
    intervals = {"level": level, "method": "percentile bootstrap", "resamples": resamples, "seed": seed, "rows": rows}
    for name, statistic in statistics.items():
        low, high = np.percentile(statistic(gold[draws], decided[draws]), [tail, 100 - tail])
        intervals[name] = [float(low), float(high)]
    return intervals


def accuracy_per_draw(gold: np.ndarray, decided: np.ndarray) -> np.ndarray:
    """Accuracy of single labels, or subset accuracy of label sets (rows x labels)."""
    same = gold == decided
    return (same.all(axis=-1) if same.ndim == 3 else same).mean(axis=1)


def macro_f1_per_draw(num_labels: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Macro F1 of class ids or 0/1 label sets over the labels a draw holds (in its gold rows
    or its predictions): what the reported macro F1 is whenever every label appears in the
    test rows or their predictions. A rare label that a draw happens to leave out is not
    scored 0 there, so a perfect classifier's interval is [1, 1]."""
    def statistic(gold: np.ndarray, decided: np.ndarray) -> np.ndarray:
        if gold.ndim == 3:  # label sets: (draws, rows, labels)
            gold, decided = gold.astype(bool), decided.astype(bool)
        else:  # class ids -> one-hot (draws, rows, labels)
            ids = np.arange(num_labels)
            gold, decided = gold[..., None] == ids, decided[..., None] == ids
        true_pos = (gold & decided).sum(axis=1)
        wrong = (gold ^ decided).sum(axis=1)  # false positives + false negatives
        denominator = 2 * true_pos + wrong
        held = denominator > 0
        f1 = np.divide(2 * true_pos, denominator, out=np.zeros(denominator.shape), where=held)
        return f1.sum(axis=1) / np.maximum(held.sum(axis=1), 1)
    return statistic


def mse_per_draw(gold: np.ndarray, decided: np.ndarray) -> np.ndarray:
    return ((gold.astype(float) - decided.astype(float)) ** 2).mean(axis=1)


def with_interval(metrics: dict, key: str) -> str:
    """`metrics[key]` to 4 places, with its interval when the metrics carry one:
    "0.7000 (95% CI 0.50–0.90, 20 rows)"."""
    value = f"{metrics[key]:.4f}"
    intervals = metrics.get("confidence_intervals") or {}
    if key not in intervals:
        return value
    low, high = intervals[key]
    return f"{value} ({intervals['level']:.0%} CI {low:.2f}–{high:.2f}, {intervals['rows']} rows)"


# -- plots ---------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(metrics: dict, path: Path, title: str = "test confusion matrix") -> Path:
    plt = _pyplot()
    matrix = np.asarray(metrics["confusion_matrix"])
    labels = metrics["labels"]
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels=labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels=labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > threshold else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_loss_curve(history: list[dict], path: Path) -> Path | None:
    """Training loss per logging step and validation loss per evaluation."""
    train = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    valid = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h and "step" in h]
    if not train and not valid:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="training loss")
    if valid:
        ax.plot(*zip(*valid, strict=True), marker="o", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- report --------------------------------------------------------------------------------
def write_report(path: Path, summary: dict, metrics: dict, headline: str, plots: dict[str, str],
                 section: str | None = None) -> Path:
    """report.md: the run's summary, then the task's own `section` or its headline,
    per-label table and plots."""
    lines = [f"# Fine-tuning report: {summary.get('model', '?')}", ""]
    for key in ("task", "backbone", "method", "train_examples", "valid_examples", "test_examples", "epochs", "steps",
                "train_time_s", "train_examples_per_s", "precision", "parameters", "peak_rss_mib", "long_texts"):
        if summary.get(key) is not None:
            value = summary[key]
            value = f"{value:,.1f}" if isinstance(value, float) else (f"{value:,}" if isinstance(value, int) else value)
            if key == "method" and summary.get("method_reason"):
                value = f"{value} ({summary['method_reason']})"
            lines.append(f"- {key.replace('_', ' ')}: {value}")
    if section is not None:
        path.write_text("\n".join(lines + ["", section]) + "\n", encoding="utf-8")
        return path
    lines += ["", f"## Test: {headline}", ""]
    per = metrics.get("per_class") or metrics.get("per_label")
    if per:
        lines += ["| label | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {name} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
                  for name, v in per.items()]
        lines.append("")
    for title, file in plots.items():
        lines += [f"![{title}]({file})", ""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def finite_or_none(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None
