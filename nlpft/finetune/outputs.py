"""The files of a fine-tuning run and of `evaluate --out`: report.md, the task's plots and
predictions and the loss curve are written here; metrics.json and finetune.json (what
predict/evaluate load) are returned as documents for the runner to write with its other
outputs (this layer sits below the runners and their output helpers)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from nlpft.finetune.inference import META_FILE


def write_outputs(opts, task, backbone, splits, work: Path, result: dict, peak_rss_mib: float) -> tuple[str, dict]:
    """The report, plots and predictions in `work`; returns the task's one-line test headline
    and {file name: JSON document} for metrics.json and finetune.json."""
    from nlpft.finetune import metrics as m

    test_scores, history = result["test_scores"], result["history"]
    test_metrics = task.metrics(splits.test, test_scores)
    intervals = task.confidence_intervals(splits.test, test_scores, seed=opts.seed)
    if intervals is not None:
        test_metrics["confidence_intervals"] = intervals
    task.write_predictions(work / task.predictions_file, splits.test, test_scores, gold=True)
    plots = task.plots(test_metrics, work)
    curve = m.plot_loss_curve(history, work / "loss_curve.png")
    if curve is not None:
        plots["loss curve"] = curve.name
    summary = {"model": opts.model, "task": task.name, "backbone": backbone.name, "method": result.get("method"),
               "method_reason": result.get("method_reason"), "train_examples": len(splits.train),
               "valid_examples": len(splits.valid), "test_examples": len(splits.test), "epochs": result["epochs"],
               "steps": result["steps"], "train_time_s": result["train_s"],
               "train_examples_per_s": result.get("train_examples_per_s"),
               "precision": opts.precision if backbone.uses_precision else None, "parameters": result["parameters"],
               "peak_rss_mib": peak_rss_mib}
    headline = task.headline(test_metrics)
    m.write_report(work / "report.md", {**summary, "long_texts": _describe_long_texts(task, result.get("windows"))},
                   test_metrics, headline, plots, task.report_section(test_metrics, plots))
    unknown = result.get("unknown_token_rate")
    windows = result.get("windows")
    documents = {
        "metrics.json": {"test": test_metrics, **summary, "skipped_rows": splits.skipped,
                         "truncated": result.get("truncated"), **({"unknown_token_rate": unknown} if unknown else {}),
                         **({"long_text": {**task.long_text, "splits": windows}} if windows else {}),
                         "valid_history": [h for h in history if "eval_loss" in h],
                         "train_history": [h for h in history if "loss" in h]},
        META_FILE: {"backbone": backbone.name, "method": result.get("method"),
                    "method_reason": result.get("method_reason"), **task.to_meta(), "max_length": opts.max_length,
                    "text_framing": result.get("text_framing"), "options": asdict(opts)},
    }
    return headline, documents


def _describe_long_texts(task, windows: dict | None) -> str | None:
    """report.md's line on a windowed run: the settings, then each split's counts."""
    if not windows:
        return None
    from nlpft.finetune.data import describe_windows

    settings = task.long_text
    return (f"windows of --max-length tokens sharing {settings['stride']}, {settings['pooling']}-pooled, at most "
            f"{settings['max_windows']} per text in training; " + "; ".join(
                describe_windows(name, counts) for name, counts in windows.items()))


def write_evaluation(folder: Path, model_dir: str, task, rows: list, scores, result: dict) -> None:
    """Predictions, plots and report.md of `evaluate --out` into `folder` (the runner writes
    metrics.json)."""
    from nlpft.finetune import metrics as m

    task.write_predictions(folder / task.predictions_file, rows, scores, gold=True)
    plots = task.plots(result, folder)
    m.write_report(folder / "report.md", {"model": model_dir, "task": task.name, "test_examples": len(rows)},
                   result, task.headline(result), plots, task.report_section(result, plots))
