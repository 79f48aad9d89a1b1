"""report.md (tables, the plots linked) and report.html (the same, one self-contained file:
inline CSS, plots as data: URIs, nothing fetched, so it opens from disk anywhere)."""

from __future__ import annotations

import base64
import dataclasses
import html
import json
from pathlib import Path

from nlpft.report.build import Comparison, PairedComparison, metric_name
from nlpft.report.stats import CONFIDENCE

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:1em 0}
.note{color:#555;font-size:90%}"""


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _mean_std(stat: tuple, digits: int = 4) -> str:
    mean, std = stat
    return "–" if mean is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def model_table(c: Comparison) -> tuple[list[str], list[list[str]]]:
    header = ["model", "seeds"] + [metric_name(m, c.task) + (" (primary)" if m == c.primary else "")
                                   for m in c.columns]
    header += ["training time (s)", "examples/s", "parameters", "peak RSS (MiB)"]
    rows = []
    for model in c.models:
        seeds = ", ".join(str(run.ref.seed) for run in model.runs if run.ref.seed is not None) or str(len(model.runs))
        row = [model.name + (" (best)" if model is c.best else ""), seeds]
        row += [_mean_std(model.stats[m]) for m in c.columns]
        row += [_mean_std(model.stats["train_time_s"], 2), _number(model.mean("train_examples_per_s"), 1),
                "–" if model.mean("parameters") is None else f"{model.mean('parameters'):,.0f}",
                _number(model.mean("peak_rss_mib"), 0)]
        rows.append(row)
    return header, rows


def paired_table(c: Comparison) -> tuple[list[str], list[list[str]]]:
    metric = metric_name(c.paired_metric or c.primary, c.task)
    header = ["model", f"{c.best.name} minus model ({metric})", f"{CONFIDENCE:.0%} bootstrap CI",
              "rows only best right", "rows only model right", "McNemar exact p"]
    rows = []
    for name, result in c.paired.items():
        if isinstance(result, PairedComparison):
            rows.append([name, f"{result.difference:+.4f}", f"[{result.low:+.4f}, {result.high:+.4f}]",
                         "–" if result.discordant_best is None else str(result.discordant_best),
                         "–" if result.discordant_other is None else str(result.discordant_other),
                         "–" if result.mcnemar_p is None else f"{result.mcnemar_p:.4g}"])
        else:
            rows.append([name, result, "", "", "", ""])
    return header, rows


def paired_note(c: Comparison) -> str:
    first = next((r for r in c.paired.values() if isinstance(r, PairedComparison)), None)
    if first is None:
        return ""
    unit = "sentences" if c.task == "tag" else "rows"
    if first.seeds is None:
        note = (f"Paired on the same {first.rows} test {unit}: {first.resamples:,} bootstrap draws of the {unit} "
                f"(seed 0), each model's {metric_name(first.metric, c.task)} recomputed on every draw and averaged "
                "over its seeds.")
    else:
        note = (f"Each seed held out its own test {unit}, so the models are paired seed by seed (seeds both "
                f"models have), on that seed's {unit}: {first.resamples:,} bootstrap draws of them per seed, the "
                f"difference in {metric_name(first.metric, c.task)} averaged over the seeds; McNemar's counts "
                "are summed over the seeds' test sets.")
    if first.metric != c.primary:
        note += f" ({metric_name(c.primary, c.task)} does not decompose over rows, so {first.metric} is used.)"
    if first.mcnemar_p is not None and first.seeds is None:
        note += (" McNemar's exact test (a binomial test on the rows one model gets right and the other wrong; "
                 "a row counts as right for a model when right in more than half of its seeds).")
    return note


def upstream_rows(c: Comparison) -> list[list[str]]:
    rows = []
    for ref, metrics in c.upstream:
        if not metrics:
            rows.append([ref.name, ref.kind, "(no metrics.json)", ""])
        for key, value in metrics.items():
            rows.append([ref.name, ref.kind, key, f"{value:.4g}" if isinstance(value, float) else str(value)])
    return rows


def _title(c: Comparison) -> str:
    return f"Comparison of {len(c.models)} models ({c.task}; primary metric {metric_name(c.primary, c.task)})"


# -- markdown ---------------------------------------------------------------------------------
def _md_cell(cell) -> str:
    return str(cell).replace("|", "\\|")  # a | inside a cell would end it


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(map(_md_cell, header)) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows] + [""])


def write_markdown(c: Comparison, path: Path) -> Path:
    lines = [f"# {_title(c)}", "", "Mean ± standard deviation over seeds.", ""]
    lines += _md_table(*model_table(c))
    lines += ["## Paired comparison with the best model", ""]
    if c.paired:
        lines += _md_table(*paired_table(c)) + [paired_note(c), ""]
    else:
        lines += ["Only one model: nothing to compare with.", ""]
    lines += ["## Plots", ""]
    for title, figure in c.plots.items():
        lines += [f"### {title}", "", f"![{title}]({figure.name})", ""]
    for title, why in c.missing_plots.items():
        lines += [f"### {title}", "", why, ""]
    if c.upstream:
        lines += ["## Upstream steps", ""] + _md_table(["step", "kind", "metric", "value"], upstream_rows(c))
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# -- html -------------------------------------------------------------------------------------
def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _embedded(figure: Path, title: str) -> str:
    data = base64.b64encode(figure.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'


def write_html(c: Comparison, path: Path) -> Path:
    parts = [(f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(_title(c))}"
              f"</title><style>{CSS}</style></head><body>"),
             f"<h1>{html.escape(_title(c))}</h1><p class=\"note\">Mean ± standard deviation over seeds.</p>",
             _html_table(*model_table(c)), "<h2>Paired comparison with the best model</h2>"]
    if c.paired:
        parts += [_html_table(*paired_table(c)), f"<p class=\"note\">{html.escape(paired_note(c))}</p>"]
    else:
        parts.append("<p>Only one model: nothing to compare with.</p>")
    parts.append("<h2>Plots</h2>")
    for title, figure in c.plots.items():
        parts += [f"<h3>{html.escape(title)}</h3>", _embedded(figure, title)]
    for title, why in c.missing_plots.items():
        parts += [f"<h3>{html.escape(title)}</h3>", f"<p class=\"note\">{html.escape(why)}</p>"]
    if c.upstream:
        parts += ["<h2>Upstream steps</h2>", _html_table(["step", "kind", "metric", "value"], upstream_rows(c))]
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


# -- json -------------------------------------------------------------------------------------
def write_json(c: Comparison, path: Path) -> Path:
    """report.json: the numbers of the tables, for scripts (benchmarks, experiments)."""
    data = {
        "task": c.task, "primary": c.primary, "greater_is_better": c.greater_is_better, "best": c.best.name,
        "models": [{"name": m.name, "runs": [{"path": str(run.ref.path), "seed": run.ref.seed} for run in m.runs],
                    **{key: {"mean": mean, "std": std} for key, (mean, std) in m.stats.items()}}
                   for m in c.models],
        "paired": {name: dataclasses.asdict(result) if isinstance(result, PairedComparison) else {"note": result}
                   for name, result in c.paired.items()},
        "plots": {title: figure.name for title, figure in c.plots.items()},
        "upstream": [{"name": ref.name, "kind": ref.kind, "path": str(ref.path), "metrics": metrics}
                     for ref, metrics in c.upstream],
    }
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path
