"""Learning curves with few labeled rows: `nlpft finetune` trained on k examples per class.

Data sets (../shared/corpora):

  polarity   pang_lee_polarity_200.csv: movie-review sentences, 2 classes, 100 each
  bbc-news   bbc_news.csv: news articles, 5 classes (about 400-510 each)

Methods, each `nlpft finetune` in its own child process with its defaults otherwise:

  standard     --model minilm --method standard    the whole MiniLM fine-tuned
  contrastive  --model minilm --method contrastive SetFit: MiniLM tuned on pairs, then LR head
  frozen       --model minilm --method frozen      frozen MiniLM embeddings + LR head
  tfidf        --model tfidf                       TF-IDF 1-2 grams + LR

Splits, per data set and seed: each class's rows are shuffled once (numpy, seeded by the
seed), so the samples are nested (the 8 rows of a class are the first 8 of its 16).

  k = 8, 16, 32, 64   training: the first k rows of each class; test: every other row,
                      except on bbc-news, where the test set is a seeded sample of
                      BBC_TEST_ROWS of them (MiniLM inference on ~2,000 articles per point
                      would cost more than the training)
  k = full            test: the last FULL_TEST_FRACTION of each class's shuffled rows;
                      training: all the others (polarity: 80 per class)

No validation rows are held out of the k: every method trains on the same rows and gets
the training file as --valid, so standard fine-tuning's keep-best and early stopping see
training rows only (they choose nothing a held-out set would); frozen, contrastive and
tfidf ignore it. Per point: test accuracy and macro F1 (metrics.json), training time
(`train_time_s`) and the wall time of the whole command (model load and test inference
included). Reported: mean ± sample std over the seeds.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/small-data/run.py             # everything: hours
    python benchmarks/small-data/run.py --quick        # seeds 1 2, k 8 16 64, both data sets
    python benchmarks/small-data/run.py --datasets polarity --seeds 1 2 3 --ks 8 16
    python benchmarks/small-data/run.py --smoke --results /tmp/sd-smoke   # every method once: ~3 min

Writes results.json, results.md and learning_curves.png under --results (--smoke writes
nothing there unless --results is given). --work DIR keeps the splits and runs; a point
whose run finished there is read back, not rerun, so an interrupted benchmark resumes.
Every number is measured in the run (or in an earlier one under the same --work).
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # benchmarks/harness.py
import harness
from harness import nlpft as _nlpft
from harness import shared_file as _find

_say = functools.partial(harness.say, "small-data")

DATASETS = {"polarity": "pang_lee_polarity_200.csv", "bbc-news": "bbc_news.csv"}
METHODS = {
    "standard": ["--model", "minilm", "--method", "standard"],
    "contrastive": ["--model", "minilm", "--method", "contrastive"],
    "frozen": ["--model", "minilm", "--method", "frozen"],
    "tfidf": ["--model", "tfidf"],
}
KS = ("8", "16", "32", "64", "full")
SEEDS = (1, 2, 3, 4, 5)
QUICK = {"seeds": [1, 2], "ks": ["8", "16", "64"]}
SMOKE_STEPS = 2  # standard fine-tuning only: frozen, contrastive and tfidf have no step limit
BBC_TEST_ROWS = 500
FULL_TEST_FRACTION = 0.2
TARGET_KS = ("8", "16")
TARGET_GAIN = 0.05  # the target: contrastive above standard by 5 accuracy points


# -- splits ----------------------------------------------------------------------------------
def read_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [{"text": row["text"], "label": row["label"]} for row in csv.DictReader(fh)]


def split_rows(rows: list[dict], k: str, seed: int, test_cap: int | None) -> tuple[list[dict], list[dict]]:
    """(training rows, test rows) for k examples per class ("full": all but a held-out
    fraction of each class), as defined in the module docstring."""
    import numpy as np

    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in sorted({row["label"] for row in rows}):
        members = [row for row in rows if row["label"] == label]
        shuffled = [members[i] for i in rng.permutation(len(members))]
        cut = len(shuffled) - round(FULL_TEST_FRACTION * len(shuffled)) if k == "full" else int(k)
        if cut > len(shuffled):
            sys.exit(f"class {label!r} has {len(shuffled)} rows, fewer than k={k}")
        train += shuffled[:cut]
        test += shuffled[cut:]
    if k != "full" and test_cap is not None and len(test) > test_cap:
        test = [test[i] for i in sorted(rng.choice(len(test), size=test_cap, replace=False))]
    return train, test


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)


def write_split(dataset: str, rows: list[dict], k: str, seed: int, work: Path) -> dict:
    folder = work / "splits" / dataset / f"k{k}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    train, test = split_rows(rows, k, seed, BBC_TEST_ROWS if dataset == "bbc-news" else None)
    _write_csv(folder / "train.csv", train)
    _write_csv(folder / "test.csv", test)
    classes = len({row["label"] for row in rows})
    return {"train": folder / "train.csv", "test": folder / "test.csv", "train_rows": len(train),
            "test_rows": len(test), "per_class": len(train) / classes}


# -- runs ------------------------------------------------------------------------------------
def point_record(work: Path, dataset: str, method: str, k: str, seed: int, smoke: bool) -> Path:
    return work / "points" / f"{dataset}-{method}-k{k}-seed{seed}{'-smoke' if smoke else ''}.json"


def run_point(dataset: str, method: str, k: str, seed: int, split: dict, work: Path, smoke: bool,
              machine: str) -> dict:
    """One `nlpft finetune` run, or its record from an earlier invocation under the same --work.
    The record keeps the machine it ran on: a long benchmark resumed in a later session may be
    finished on another CPU, and its times compare only within one machine."""
    record_path = point_record(work, dataset, method, k, seed, smoke)
    name = record_path.stem
    if record_path.exists():
        _say(f"{name}: done earlier, read back")
        return {**json.loads(record_path.read_text()), "read_back": True}
    out = work / "runs" / name
    limit = ["--max-steps", str(SMOKE_STEPS)] if smoke and method == "standard" else []
    _say(f"{name} ({split['train_rows']} training rows, {split['test_rows']} test rows) ...")
    started = time.perf_counter()
    _nlpft("finetune", "--train", str(split["train"]), "--valid", str(split["train"]), "--test", str(split["test"]),
           "--text-col", "text", "--label-col", "label", *METHODS[method], "--out", str(out), "--overwrite",
           "--seed", str(seed), "--quiet", *limit)
    wall = time.perf_counter() - started
    m = json.loads((out / "metrics.json").read_text())
    record = {"dataset": dataset, "method": method, "k": k, "seed": seed, "train_rows": split["train_rows"],
              "per_class": split["per_class"], "test_rows": m["test_examples"], "accuracy": m["test"]["accuracy"],
              "macro_f1": m["test"]["macro_f1"], "train_s": m["train_time_s"], "wall_s": wall,
              "steps": m.get("steps"), "epochs": m.get("epochs"), "nlpft_method": m.get("method"),
              "peak_rss_mib": m.get("peak_rss_mib"), "precision": m.get("precision"),
              "flags": [*METHODS[method], *limit], "machine": machine}
    _say(f"  accuracy {record['accuracy']:.4f}, macro F1 {record['macro_f1']:.4f}, "
         f"train {record['train_s']:.0f} s, wall {wall:.0f} s")
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(points: list[dict]) -> list[dict]:
    """One row per data set, method and k: mean ± sample std over the seeds."""
    groups: dict[tuple, list[dict]] = {}
    for p in points:
        groups.setdefault((p["dataset"], p["method"], p["k"]), []).append(p)
    rows = []
    for (dataset, method, k), runs in groups.items():
        accuracy, f1 = [r["accuracy"] for r in runs], [r["macro_f1"] for r in runs]
        rows.append({"dataset": dataset, "method": method, "k": k, "seeds": [r["seed"] for r in runs],
                     "train_rows": statistics.mean(r["train_rows"] for r in runs),
                     "per_class": statistics.mean(r["per_class"] for r in runs),
                     "test_rows": statistics.mean(r["test_rows"] for r in runs),
                     "accuracy_mean": statistics.mean(accuracy), "accuracy_std": _spread(accuracy),
                     "macro_f1_mean": statistics.mean(f1), "macro_f1_std": _spread(f1),
                     "train_s_mean": statistics.mean(r["train_s"] for r in runs),
                     "wall_s_mean": statistics.mean(r["wall_s"] for r in runs),
                     "steps": sorted({r["steps"] for r in runs if r["steps"] is not None})})
    return rows


# -- report ----------------------------------------------------------------------------------
def _accuracy_cell(cell: dict | None, seeds: list[int]) -> str:
    """mean ± std; a point measured with fewer seeds than the run's says how many (one seed
    has no spread to show)."""
    if cell is None:
        return "–"
    measured = len(cell["seeds"])
    if measured == 1:
        return f"{cell['accuracy_mean']:.3f} (1 seed)"
    text = f"{cell['accuracy_mean']:.3f} ± {cell['accuracy_std']:.3f}"
    return text if measured >= len(seeds) else f"{text} ({measured} seeds)"


def _cell(rows: list[dict], dataset: str, method: str, k: str) -> dict | None:
    return next((r for r in rows if (r["dataset"], r["method"], r["k"]) == (dataset, method, k)), None)


def _paired_gains(points: list[dict], dataset: str, k: str) -> list[float]:
    """Contrastive minus standard accuracy, seed by seed (the same training and test rows)."""
    standard = {p["seed"]: p["accuracy"] for p in points if (p["dataset"], p["method"], p["k"]) == (dataset, "standard", k)}
    return [p["accuracy"] - standard[p["seed"]] for p in points
            if (p["dataset"], p["method"], p["k"]) == (dataset, "contrastive", k) and p["seed"] in standard]


def target_lines(rows: list[dict], points: list[dict], datasets: list[str]) -> list[str]:
    """The issue's target (reported, not asserted): contrastive beats standard fine-tuning by
    at least 5 accuracy points at 8 and 16 examples per class on both data sets."""
    lines = []
    for dataset in datasets:
        for k in TARGET_KS:
            ours, theirs = _cell(rows, dataset, "contrastive", k), _cell(rows, dataset, "standard", k)
            if ours is None or theirs is None:
                continue
            gain = ours["accuracy_mean"] - theirs["accuracy_mean"]
            verdict = "met" if gain >= TARGET_GAIN else "not met"
            paired = _paired_gains(points, dataset, k)
            lines.append(f"- {dataset}, k={k}: contrastive − standard = {100 * gain:+.1f} points "
                         f"(target ≥ +{100 * TARGET_GAIN:.0f}: {verdict}; per seed {100 * min(paired):+.1f} to "
                         f"{100 * max(paired):+.1f})")
    return lines


def _steps(cell: dict) -> str:
    return f" ({'/'.join(str(s) for s in cell['steps'])})" if cell["steps"] else ""


def _scope(results: dict) -> str:
    if results["smoke"]:
        return " (--smoke: not results)"
    full = (results["datasets"] == list(DATASETS) and results["methods"] == list(METHODS)
            and results["ks"] == list(KS) and results["seeds"] == list(SEEDS))
    return "" if full else (" — a subset of the full benchmark (both data sets, all four methods, k 8 16 32 64 "
                            "full, seeds 1-5)")


def _seed_ranges(seeds: list[int]) -> str:
    """[1, 2, 3, 5] -> "1-3, 5"."""
    spans: list[list[int]] = []
    for seed in sorted(set(seeds)):
        if spans and seed == spans[-1][-1] + 1:
            spans[-1].append(seed)
        else:
            spans.append([seed])
    return ", ".join(f"{s[0]}-{s[-1]}" if len(s) > 1 else str(s[0]) for s in spans)


def machine_lines(points: list[dict], report_machine: str) -> list[str]:
    """Where the runs were measured: one line per machine the runs recorded, naming which runs,
    and a count of the runs from before records kept their machine."""
    by_machine: dict[str, dict[tuple, list[int]]] = {}
    unrecorded = 0
    for p in points:
        if not p.get("machine"):
            unrecorded += 1
            continue
        by_machine.setdefault(p["machine"], {}).setdefault((p["dataset"], p["k"], p["method"]), []).append(p["seed"])
    if not by_machine:
        return [f"Report written on {report_machine}; the runs do not record their machine."]
    lines = [f"Report written on {report_machine}. Runs measured on (times compare only within one machine):", ""]
    for machine, groups in by_machine.items():
        # the same seeds of several methods make one entry: "bbc-news k=full seeds 3-5 (standard, tfidf)"
        entries: dict[tuple, list[str]] = {}
        for (dataset, k, method), seeds in groups.items():
            entries.setdefault((dataset, k, _seed_ranges(seeds)), []).append(method)
        runs = sum(len(seeds) for seeds in groups.values())
        which = "; ".join(f"{dataset} k={k} seeds {seeds} ({', '.join(methods)})"
                          for (dataset, k, seeds), methods in entries.items())
        lines.append(f"- {machine}: {runs} run{'s' if runs > 1 else ''}: {which}")
    if unrecorded:
        lines.append(f"- {unrecorded} run{'s' if unrecorded > 1 else ''} from before runs recorded their machine")
    return lines


def _md(results: dict) -> str:
    rows, methods, ks = results["rows"], results["methods"], results["ks"]
    out = ["# Small-data benchmark: learning curves of `nlpft finetune`", "",
           *machine_lines(results["points"], results["machine"]), "",
           f"Command: `{results['command']}`" + _scope(results), "",
           f"Seeds {results['seeds']}; k = examples per class {ks}; methods: "
           + "; ".join(f"{m}: `{' '.join(METHODS[m])}`" for m in methods) + ".", "",
           ("Splits: each class shuffled once per seed, training = its first k rows (nested across k), test = "
           f"every other row (bbc-news: a seeded sample of {BBC_TEST_ROWS} of them); k = full: the last "
           f"{FULL_TEST_FRACTION:.0%} of each class is the test set, the rest the training set. No validation "
           "rows are held out: the training file is passed as --valid too, so standard fine-tuning's keep-best and "
           "early stopping see only training rows. Accuracy: mean ± sample std over the seeds; train: "
           "`train_time_s` from metrics.json; wall: the whole `nlpft finetune` command (start, model load, "
           "training, test inference, writing), mean over the seeds."), ""]
    for dataset in results["datasets"]:
        header = [k if k == "full" else f"k={k}" for k in ks]
        out += [f"## {dataset}", "", "Test accuracy (macro F1 in results.json):", "",
                "| method | " + " | ".join(header) + " |", "|---|" + "---:|" * len(ks)]
        for method in methods:
            cells = [_cell(rows, dataset, method, k) for k in ks]
            out.append(f"| {method} | " + " | ".join(_accuracy_cell(c, results["seeds"]) for c in cells) + " |")
        out += ["", "Mean training time / wall time per run, seconds (optimizer steps, where the method takes any):", "",
                "| method | " + " | ".join(header) + " |", "|---|" + "---:|" * len(ks)]
        for method in methods:
            cells = [_cell(rows, dataset, method, k) for k in ks]
            out.append(f"| {method} | " + " | ".join(
                f"{c['train_s_mean']:.0f} / {c['wall_s_mean']:.0f}" + _steps(c) if c else "–" for c in cells) + " |")
        sizes = [_cell(rows, dataset, methods[0], k) for k in ks]
        out += ["", "Training / test rows: " + ", ".join(
            f"{k}: {c['train_rows']:.0f} ({c['per_class']:.0f}/class{' on average' if k == 'full' else ''}), "
            f"{c['test_rows']:.0f} test"
            for k, c in zip(ks, sizes) if c), ""]
    targets = target_lines(rows, results["points"], results["datasets"])
    if targets:
        out += ["## Target", "", ("Contrastive beats standard fine-tuning by ≥ 5 accuracy points at 8 and 16 "
                "examples per class on both data sets (mean accuracies above):"), "", *targets, ""]
    runs_wall = sum(p["wall_s"] for p in results["points"])
    out += [(f"The runs' wall times add up to {runs_wall / 60:.1f} min; this invocation took "
             f"{results['total_wall_s'] / 60:.1f} min ({results['points_run']} runs, {results['points_read_back']} "
             "read back from earlier invocations under the same --work)."), "", "![learning curves](learning_curves.png)"]
    return "\n".join(out)


def plot(results: dict, path: Path) -> None:
    """Accuracy against examples per class (log x), one line per method with a ±1 std band,
    one panel per data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = results["datasets"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for method in results["methods"]:
            cells = sorted((c for c in results["rows"] if c["dataset"] == dataset and c["method"] == method),
                           key=lambda c: c["per_class"])
            if not cells:
                continue
            x = [c["per_class"] for c in cells]
            mean = [c["accuracy_mean"] for c in cells]
            std = [c["accuracy_std"] for c in cells]
            ax.plot(x, mean, marker="o", label=method)
            ax.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2)
        ax.set_xscale("log", base=2)
        ticks = sorted({c["per_class"] for c in results["rows"] if c["dataset"] == dataset})
        ax.set_xticks(ticks, [f"{t:.0f}" for t in ticks])
        ax.set_xlabel("training examples per class")
        ax.set_ylabel("test accuracy")
        counts = sorted({len(c["seeds"]) for c in results["rows"] if c["dataset"] == dataset})
        seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        ax.set_title(f"{dataset} ({seeds} seed{'s' if counts[-1] > 1 else ''} per point)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 1-5 (--quick: 1 2)")
    ap.add_argument("--ks", nargs="+", choices=KS, default=None,
                    help="examples per class, or full (default: all; --quick: 8 16 64)")
    ap.add_argument("--quick", action="store_true", help="seeds 1 2 and k 8 16 64 unless --seeds/--ks say otherwise")
    ap.add_argument("--smoke", action="store_true",
                    help=f"every method once on polarity, seed 1, k=8, standard fine-tuning {SMOKE_STEPS} steps; "
                         "the numbers are not results")
    ap.add_argument("--results", type=Path, default=None, help="default: benchmarks/small-data/results (not with --smoke)")
    ap.add_argument("--work", type=Path, default=None, help="keep splits and runs here; finished points are not rerun")
    ap.add_argument("--finished-only", action="store_true",
                    help="with --work: report the points finished there, run nothing (an interrupted benchmark's "
                         "results so far)")
    args = ap.parse_args()
    if args.finished_only and args.work is None:
        ap.error("--finished-only reads the points of an earlier --work DIR; give it")
    if args.smoke:
        datasets, seeds, ks = ["polarity"], (args.seeds or [1])[:1], ["8"]
    else:
        datasets = args.datasets
        seeds = args.seeds or (QUICK["seeds"] if args.quick else list(SEEDS))
        ks = args.ks or (QUICK["ks"] if args.quick else list(KS))
    ks = [k for k in KS if k in ks]
    results_dir = args.results or (None if args.smoke else HERE / "results")

    results = {"machine": harness.machine(), "datasets": datasets, "methods": args.methods, "seeds": seeds, "ks": ks,
               "smoke": args.smoke, "bbc_test_rows": BBC_TEST_ROWS, "full_test_fraction": FULL_TEST_FRACTION,
               "command": harness.recorded_command("benchmarks/small-data/run.py", sys.argv[1:]),
               "points": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        started = time.perf_counter()
        for dataset in datasets:
            rows = read_rows(_find(DATASETS[dataset]))
            for k in ks:
                for seed in seeds:
                    split = write_split(dataset, rows, k, seed, work)
                    for method in args.methods:
                        if args.finished_only and not point_record(work, dataset, method, k, seed, args.smoke).exists():
                            continue
                        results["points"].append(run_point(dataset, method, k, seed, split, work, args.smoke,
                                                           results["machine"]))
        results["total_wall_s"] = time.perf_counter() - started
        _say(f"done in {results['total_wall_s'] / 60:.1f} min")
    results["points_read_back"] = sum(bool(p.get("read_back")) for p in results["points"])
    results["points_run"] = len(results["points"]) - results["points_read_back"]
    results["rows"] = summarize(results["points"])
    report = _md(results)
    if results_dir is not None:
        harness.write_results(results_dir, results, report)
        plot(results, results_dir / "learning_curves.png")
    print(report)


if __name__ == "__main__":
    main()
