"""Compare every fine-tuning backbone on BBC News: `nlpft experiment run bbc.yaml`, then a table.

bbc.yaml (beside this file) is the comparison, run through the same verb a user runs:

  data       one seeded, stratified 80/10/10 split of bbc-news (split_seed 13), the same
             rows for every seed (13, 14, 15) and every backbone
  tfidf            TF-IDF 1-2 grams + logistic regression
  w2v-austen-kjv   static vectors (word2vec, 100-d) trained on austen + kjv, tuned, + MLP
  w2v-bbc          the same, trained on the split's training text (data:train)
  rnn-random       the RNN LM architecture (2x200 LSTM) from random weights
  rnn-lm           ULMFiT: the RNN LM pretrained on the split's training text, fine-tuned
  minilm           all-MiniLM-L6-v2 ([CLS] pooler), minilm-mean: with mean pooling
  gpt2-nlpft       a tiny GPT-2 pretrained by `nlpft pretrain` on austen + kjv

The experiment resumes and reuses what finished under --work, and writes its own report
(report.html: frontier, per-class F1, learning curves, paired tests). This script turns its
report.json into results.md / results.json: test accuracy and macro F1 (mean ± std over the
seeds), training time, training examples/s, precision, parameters, peak RSS. In the same
run it times MiniLM against plain_trainer.py (stock transformers, every text padded to
--max-length, fp32) on the experiment's split, with the epochs of the minilm run: a
pad-to-max fp32 baseline, not the one to quote; speed.py is the speed comparison (nlpft
against a competent Trainer script at the same precision, with MFU).

    python benchmarks/finetune/run.py                     # about an hour on 2 cores
    python benchmarks/finetune/run.py --work runs/bbc     # keep the experiment: a rerun reuses it

Writes results.json and results.md under --results. Every number is measured in the run
(or by the experiment's steps that finished earlier under the same --work).
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # benchmarks/harness.py
import harness  # noqa: E402
from harness import run as _run  # noqa: E402

_say = functools.partial(harness.say, "finetune")


def run_experiment(config: Path, out: Path) -> float:
    """`nlpft experiment run CONFIG --out OUT --keep-going`, its progress on stderr; its wall time."""
    _say(f"nlpft experiment run {config} --out {out} ...")
    started = time.perf_counter()
    code = subprocess.run([sys.executable, "-m", "nlpft", "experiment", "run", str(config), "--out", str(out),
                           "--keep-going"], check=False).returncode
    if code != 0:
        sys.exit(f"the experiment failed (exit code {code}); `nlpft experiment status {out}` names the step")
    return time.perf_counter() - started


def rows_of(config: Path, out: Path) -> list[dict]:
    """One row per backbone of the config, from the experiment's report.json and its runs."""
    from nlpft.experiments.config import load_experiment

    report = json.loads((out / "report" / "report.json").read_text())
    models = {m["name"]: m for m in report["models"]}
    spec = load_experiment(config).finetune
    rows = []
    for label, own in zip(spec.backbone_labels, spec.backbone_options, strict=True):
        model = models[label]
        # the run's directory under OUT (report.json names it as the experiment was given OUT)
        directories = [out / "steps" / Path(run["path"]).name for run in model["runs"]]
        metrics = [json.loads((directory / "metrics.json").read_text()) for directory in directories]
        rows.append({"backbone": label, "settings": own, "seeds": [run["seed"] for run in model["runs"]],
                     **{key: model[key] for key in ("accuracy", "macro_f1", "train_time_s", "train_examples_per_s",
                                                    "parameters", "peak_rss_mib")},
                     "peak_rss_mib_max": max(m["peak_rss_mib"] for m in metrics),
                     "precision": metrics[0].get("precision"),
                     "runs": [{"seed": run["seed"], "accuracy": m["test"]["accuracy"], "macro_f1": m["test"]["macro_f1"],
                               "train_s": m["train_time_s"], "examples_per_s": m.get("train_examples_per_s"),
                               "epochs": m.get("epochs"), "precision": m.get("precision"),
                               "path": f"steps/{directory.name}"}  # under the experiment's OUT
                              for run, m, directory in zip(model["runs"], metrics, directories, strict=True)]})
    return rows


def split_of(out: Path) -> tuple[Path, dict]:
    """The experiment's data-split step: its directory and row counts."""
    directory = next(d for d in (out / "steps").glob("data-split-*") if (d / "split.json").is_file())
    return directory, json.loads((directory / "split.json").read_text())


def step_seconds(out: Path) -> tuple[int, float]:
    """(steps, their own run time) of the plan, as the experiment recorded them (reused steps
    included: the time of the run that made them)."""
    names = [step["name"] for step in json.loads((out / "plan.json").read_text())["steps"]]
    state = json.loads((out / "state.json").read_text())
    return len(names), sum(state.get(name, {}).get("seconds") or 0 for name in names)


def plain_baseline(split_dir: Path, minilm: dict) -> dict:
    """plain_trainer.py on the experiment's split, seed and epochs of the first minilm run."""
    from nlpft.pretrained.loading import resolve_model

    run = minilm["runs"][0]
    _say(f"plain transformers MiniLM, padded to max length, {run['epochs']:g} epoch(s), seed {run['seed']} ...")
    test = split_dir / "test.csv"
    with open(test, newline="", encoding="utf-8") as fh:
        assert {"text", "label"} <= set(next(csv.reader(fh)))  # the columns plain_trainer.py reads
    line = _run([sys.executable, str(HERE / "plain_trainer.py"), "--model", str(resolve_model("minilm").path),
                 "--train", str(split_dir / "train.csv"), "--test", str(test), "--epochs", f"{run['epochs']:g}",
                 "--seed", str(run["seed"])])
    return {**json.loads(line.strip().splitlines()[-1]), "compared_with": run}


def _md(results: dict) -> str:
    split = results["split"]
    out = ["# Fine-tuning benchmark: BBC News (5 classes)", "", results["machine"], "",
           f"`nlpft experiment run {results['config']}`: split {split['rows']['train']} train / "
           f"{split['rows']['valid']} valid / {split['rows']['test']} test (stratified, seed {split['seed']}), the "
           f"same rows for seeds {results['seeds']}", "",
           "| backbone | accuracy | macro F1 | train time | train examples/s | precision | parameters | peak RSS |",
           "|---|---:|---:|---:|---:|---|---:|---:|"]
    for row in results["rows"]:
        rate = row["train_examples_per_s"]["mean"]
        out.append(f"| {row['backbone']} | {row['accuracy']['mean']:.4f} ± {row['accuracy']['std']:.4f} "
                   f"| {row['macro_f1']['mean']:.4f} ± {row['macro_f1']['std']:.4f} "
                   f"| {row['train_time_s']['mean']:.0f} s | {f'{rate:,.1f}' if rate else 'n/a'} "
                   f"| {row['precision'] or 'n/a'} | {row['parameters']['mean']:,.0f} | {row['peak_rss_mib_max']:.0f} MiB |")
    out += ["", "± is the standard deviation over the seeds (the sample std, as the experiment's report gives it)."]
    if results.get("plain"):
        plain, mine = results["plain"], results["plain"]["compared_with"]
        out += ["", f"MiniLM speed against the example-script way (stock transformers, every text padded to "
                    f"--max-length, fp32), both seed {mine['seed']}, same split, {mine['epochs']:g} epoch(s):",
                "", f"- nlpft: {mine['examples_per_s']:.2f} examples/s ({mine['precision']}, dynamic padding, "
                    f"length-grouped batches), test accuracy {mine['accuracy']:.4f}; its training time includes "
                    "the per-epoch validation and checkpoint writes",
                f"- plain: {plain['examples_per_s']:.2f} examples/s, test accuracy {plain['accuracy']:.4f}",
                f"- nlpft / plain examples/s: **{results['speed_ratio']:.2f}**"]
    runs = sum(len(r["runs"]) for r in results["rows"])
    out += ["", f"The experiment's {results['steps']} steps ({results['steps'] - runs} before the {runs} fine-tuning "
                f"runs) took {results['step_s'] / 60:.1f} min of their own run time; this invocation "
                f"{results['wall_s'] / 60:.1f} min (`{results['command']}`)."]
    out += ["", f"Settings per backbone ({Path(results['config']).name}): " + "; ".join(
        f"{r['backbone']}: {', '.join(f'{k} {v}' for k, v in r['settings'].items() if k != 'model') or 'defaults'}"
        for r in results["rows"])]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=HERE / "bbc.yaml", help="the experiment (default: bbc.yaml)")
    ap.add_argument("--no-plain", action="store_true", help="skip the plain transformers baseline")
    ap.add_argument("--results", type=Path, default=HERE / "results")
    ap.add_argument("--work", type=Path, default=None, help="the experiment goes to WORK/experiment (default: a "
                                                            "temporary directory)")
    args = ap.parse_args()

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = (args.work or Path(tmp)) / "experiment"
        run_experiment(args.config, out)
        rows = rows_of(args.config, out)
        split_dir, split = split_of(out)
        config = args.config.resolve()  # recorded from the repository, or by its name: no path of this machine
        results = {"machine": harness.machine(),
                   "config": str(config.relative_to(HERE.parents[1])) if config.is_relative_to(HERE.parents[1])
                   else config.name,
                   "split": {key: split[key] for key in ("task", "seed", "fractions", "rows")},
                   "seeds": rows[0]["seeds"], "rows": rows,
                   "command": harness.recorded_command("benchmarks/finetune/run.py", sys.argv[1:])}
        results["steps"], results["step_s"] = step_seconds(out)
        minilm = next((r for r in rows if r["backbone"] == "minilm"), None)
        if minilm is not None and not args.no_plain:
            results["plain"] = plain_baseline(split_dir, minilm)
            results["speed_ratio"] = results["plain"]["compared_with"]["examples_per_s"] / \
                results["plain"]["examples_per_s"]
        results["wall_s"] = time.perf_counter() - started
    report = _md(results)
    harness.write_results(args.results, results, report)
    print(report)


if __name__ == "__main__":
    main()
