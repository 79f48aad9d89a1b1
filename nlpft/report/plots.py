"""The comparison's plots, PNG files written with matplotlib's Agg backend (no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nlpft.finetune.metrics import _pyplot, plot_confusion_matrix

DPI = 110


def _save(fig, plt, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def pareto_frontier(points: list[tuple[float, float]], greater_is_better: bool = True) -> list[int]:
    """Indices of the points no other point beats on both cost (x, lower is better) and
    quality (y): the cheapest point, then each one better than every cheaper point."""
    sign = 1 if greater_is_better else -1
    frontier, best = [], -np.inf
    for i in sorted(range(len(points)), key=lambda i: (points[i][0], -sign * points[i][1])):
        if sign * points[i][1] > best:
            frontier.append(i)
            best = sign * points[i][1]
    return frontier


def plot_frontier(models: list[dict], metric: str, greater_is_better: bool, path: Path) -> Path | None:
    """Mean primary metric (± std over seeds) against mean training time, frontier marked."""
    shown = [m for m in models if m["time"] is not None and m["primary"] is not None]
    if not shown:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    times = [max(m["time"], 1e-3) for m in shown]
    scores = [m["primary"] for m in shown]
    ax.errorbar(times, scores, yerr=[m["primary_std"] or 0 for m in shown], fmt="o", color="tab:blue",
                ecolor="lightgray", capsize=3, label="model (mean ± std over seeds)")
    frontier = pareto_frontier(list(zip(times, scores, strict=True)), greater_is_better)
    ax.step([times[i] for i in frontier], [scores[i] for i in frontier], where="post", color="tab:red",
            alpha=0.6)
    ax.scatter([times[i] for i in frontier], [scores[i] for i in frontier], s=120, facecolors="none",
               edgecolors="tab:red", label="frontier (nothing cheaper is better)")
    if max(times) / min(times) > 20:
        ax.set_xscale("log")
    annotate_apart(fig, ax, list(zip(times, scores, strict=True)), [m["name"] for m in shown])
    ax.set_xlabel("training time (s)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against training time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


# where a point's name may go, in points from the point, nearest first
LABEL_OFFSETS = [(5, 5), (5, -12), (-5, 5), (-5, -12), (5, 16), (5, -23), (-5, 16), (-5, -23), (5, 27), (5, -34)]


def annotate_apart(fig, ax, points: list[tuple[float, float]], names: list[str]) -> list:
    """Each point's name beside it, at the nearest of `LABEL_OFFSETS` where it overlaps no
    name placed before: models of similar cost and score (the seeds of a grid, two poolings
    of one encoder) otherwise print their names over each other. Points are labelled top
    down; a name with no free place takes the first offset and a thin leader line. Returns
    the text artists."""
    fig.canvas.draw()  # the axes' limits and scale settle before names are measured
    renderer = fig.canvas.get_renderer()
    placed, texts = [], []
    for index in sorted(range(len(points)), key=lambda i: -points[i][1]):
        for dx, dy in LABEL_OFFSETS:
            text = ax.annotate(names[index], points[index], textcoords="offset points", xytext=(dx, dy),
                               fontsize=8, ha="left" if dx > 0 else "right")
            box = text.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            text.remove()
        else:
            dx, dy = LABEL_OFFSETS[-1]
            text = ax.annotate(names[index], points[index], textcoords="offset points", xytext=(dx, dy),
                               fontsize=8, arrowprops={"arrowstyle": "-", "color": "gray", "lw": 0.5})
            box = text.get_window_extent(renderer)
        placed.append(box)
        texts.append(text)
    return texts


def plot_f1_heatmap(names: list[str], classes: list[str], f1: np.ndarray, title: str, path: Path) -> Path | None:
    """F1 per class (columns) of each model (rows), its value written in each cell."""
    if not names or not classes:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(classes) + 3), max(2.5, 0.45 * len(names) + 1.5)))
    image = ax.imshow(f1, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(classes)), labels=classes, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), labels=names)
    for i in range(f1.shape[0]):
        for j in range(f1.shape[1]):
            ax.text(j, i, f"{f1[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if f1[i, j] > 0.6 else "white")
    fig.colorbar(image, ax=ax, label="F1")
    ax.set_title(title)
    return _save(fig, plt, path)


def plot_learning_curves(curves: dict[str, list[list[tuple[int, float]]]], metric: str, path: Path) -> Path | None:
    """Per model: each seed's validation `metric` by step (faint) and their mean (steps the
    seeds share)."""
    curves = {name: [c for c in seeds if c] for name, seeds in curves.items()}
    curves = {name: seeds for name, seeds in curves.items() if seeds}
    if not curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, (name, seeds) in enumerate(curves.items()):
        color = f"C{k % 10}"
        for curve in seeds:
            ax.plot(*zip(*curve, strict=True), color=color, alpha=0.25, linewidth=1)
        shared = sorted(set.intersection(*(set(dict(c)) for c in seeds)))
        if shared:
            ax.plot(shared, [np.mean([dict(c)[s] for c in seeds]) for s in shared], color=color, marker="o",
                    markersize=3, label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title("learning curves (mean over seeds; each seed faint)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


def plot_best_confusion(matrix: list[list[int]], labels: list[str], model: str, path: Path) -> Path:
    return plot_confusion_matrix({"confusion_matrix": matrix, "labels": labels}, path,
                                 title=f"{model}: test confusion matrix (all seeds)")
