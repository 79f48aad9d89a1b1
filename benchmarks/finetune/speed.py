"""MiniLM fine-tuning speed: nlpft against a competent stock-transformers script and the
pad-to-max example-script setup, at the same precision, with model FLOP utilisation.

Rows, each a child process run through `loop_clock.py` (which times the training loop of
any Hugging Face `Trainer` the same way), interleaved over --repeats (the order reversed
on every other repeat):

  nlpft       `nlpft finetune --model minilm --method standard --long-text truncate` (its per-epoch validation
              and best-weights save happen outside the timed loop; --method standard because
              `--method auto` picks the contrastive frozen-encoder method below 100 examples
              in the smallest class, which smaller --train-size runs reach)
  nlpft-all-positions   (not by default) nlpft with NLPFT_FIRST_TOKEN=0: its last layer
              computes every position, as the stock model does, instead of [CLS] alone
  competent   competent_trainer.py: tokenized once, `DataCollatorWithPadding`,
              `train_sampling_strategy="group_by_length"`, no evaluation during training
  pad-to-max  plain_trainer.py: every text padded to --max-length, random batches

All three: the same --train-size training articles of the BBC News split (a seeded
sample of its 1,781), --max-length 256, batch 16, --epochs, --lr, seed 13, one precision
(`--precision auto` resolved as nlpft resolves it: bf16 autocast on a CPU with native bf16
matrix work, else fp32; the competent script decides the same way itself and the run
checks they agree), test accuracy on the split's 222 test articles.

Throughput: training examples per second of the training loop (`loop_clock.py`: the time
inside `Trainer.train()` minus its logging, evaluation and checkpoint writes), counted on
this process tree's CPU time (user + system): the runs are meant for one pinned thread
(`OMP_NUM_THREADS=1 taskset -c 0`) on a core other work may share, where wall time
counts the waiting too. Wall-time figures are recorded beside them.

MFU (model FLOP utilisation) = model FLOPs of the run / loop CPU seconds / the matmul
peak. Model FLOPs count only real (non-pad) tokens, so padding shows as lower MFU:

    FLOPs = epochs * sum over training texts of
            6 * P_linear * n  +  12 * layers * hidden * n**2  +  6 * P_head

  n         the text's tokens after truncation, [CLS] and [SEP] included
  P_linear  the weights of the encoder's linear layers, layers * (4 hidden**2 + 2 hidden * ffn)
            (query, key, value, output; the two feed-forward matrices); embeddings are
            lookups, not matrix products, and biases and LayerNorms are not counted
  6         forward (2 FLOPs per multiply-add) + backward (twice the forward)
  12 * layers * hidden * n**2
            attention's two products (Q K^T and weights x V), 2 * 2 * n * hidden FLOPs per
            token and layer forward, times 3 for forward + backward
  P_head    the pooler and classifier weights, applied once per text

The peak is the best of torch.matmul microbenchmarks at the shapes MiniLM's linear
layers run at (16 x 256 tokens by hidden x ffn, ffn x hidden and hidden x hidden), in the
run's precision, in this process with the same threads, measured before and after the rows
(the better of the two counts), on CPU time like the rows.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/finetune/speed.py
    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/finetune/speed.py --repeats 3 --train-size 300

Writes speed.json and speed.md under --results.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # benchmarks/harness.py
import harness

_say = functools.partial(harness.say, "finetune-speed")
ROWS = ("nlpft", "competent", "pad-to-max", "nlpft-all-positions")
DEFAULT_ROWS = ("nlpft", "competent", "pad-to-max")
ROW_LABELS = {"nlpft": "nlpft finetune",
              "competent": "competent Trainer script (dynamic padding, length-grouped batches)",
              "pad-to-max": "example-script Trainer (every text padded to --max-length, random batches)",
              "nlpft-all-positions": "nlpft finetune, its last layer computing every position "
                                     "(NLPFT_FIRST_TOKEN=0)"}


# -- data -------------------------------------------------------------------------------
def labels_of(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as fh:
        return [row["label"] for row in csv.DictReader(fh)]


def training_sample(train_csv: Path, size: int, out: Path, seed: int = 13) -> Path:
    """A seeded random `size` rows of `train_csv` (header kept) as `out`."""
    with open(train_csv, encoding="utf-8", newline="") as fh:
        header, *rows = list(csv.reader(fh))
    random.Random(seed).shuffle(rows)
    with open(out, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([header, *rows[:size]])
    return out


# -- FLOPs and the matmul peak ----------------------------------------------------------------
def model_shape(model_dir: Path) -> dict:
    config = json.loads((model_dir / "config.json").read_text())
    return {"layers": config["num_hidden_layers"], "hidden": config["hidden_size"],
            "ffn": config["intermediate_size"]}


def token_counts(model_dir: Path, train_csv: Path, max_length: int) -> list[int]:
    """Each training text's tokens after truncation, special tokens included."""
    from transformers import AutoTokenizer

    with open(train_csv, encoding="utf-8", newline="") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    ids = AutoTokenizer.from_pretrained(str(model_dir))(texts, truncation=True, max_length=max_length)["input_ids"]
    return [len(x) for x in ids]


def training_flops(shape: dict, lengths: list[int], labels: int, epochs: float) -> float:
    """Model FLOPs of `epochs` over texts of `lengths` real tokens (the formula in the docstring)."""
    layers, hidden, ffn = shape["layers"], shape["hidden"], shape["ffn"]
    linear = layers * (4 * hidden * hidden + 2 * hidden * ffn)
    head = hidden * hidden + hidden * labels
    per_epoch = sum(6 * linear * n + 12 * layers * hidden * n * n + 6 * head for n in lengths)
    return epochs * per_epoch


def matmul_peak(shape: dict, precision: str, tokens: int = 16 * 256, repeats: int = 5) -> dict:
    """FLOP/s of torch.matmul at MiniLM's linear-layer shapes in `precision`, on this
    process's CPU time (and wall time); the best shape's rate is the peak."""
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    hidden, ffn = shape["hidden"], shape["ffn"]
    rates = {}
    for k, n in ((hidden, ffn), (ffn, hidden), (hidden, hidden)):
        a, b = torch.randn(tokens, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        torch.matmul(a, b)  # warm-up: oneDNN picks and caches its kernel
        flops = 2 * tokens * k * n
        best_cpu = best_wall = float("inf")
        for _ in range(repeats):
            reps = max(1, int(2e10 // flops))  # about 20 GFLOP per timing
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(reps):
                torch.matmul(a, b)
            best_cpu = min(best_cpu, (time.process_time() - cpu) / reps)
            best_wall = min(best_wall, (time.perf_counter() - wall) / reps)
        rates[f"{tokens}x{k} @ {k}x{n}"] = {"cpu_flops": flops / best_cpu, "wall_flops": flops / best_wall}
    return {"precision": precision, "shapes": rates,
            "peak_cpu_flops": max(r["cpu_flops"] for r in rates.values()),
            "peak_wall_flops": max(r["wall_flops"] for r in rates.values())}


# -- the rows ---------------------------------------------------------------------------
def _clocked(clock: Path, *command: str) -> tuple[str, dict]:
    """`command` run through loop_clock.py: (its stdout, the training loop's times)."""
    stdout = harness.run([sys.executable, str(HERE / "loop_clock.py"), str(clock), *command])
    return stdout, json.loads(clock.read_text())


def run_row(row: str, files: dict, args, precision: str, work: Path, repeat: int) -> dict:
    """One timed training run of `row`: accuracy, precision and the training loop's rates."""
    clock = work / f"clock-{row}-{repeat}.json"
    common = ["--train", str(files["train"]), "--test", str(files["test"]), "--epochs", str(args.epochs),
              "--lr", str(args.lr), "--seed", str(args.seed), "--max-length", str(args.max_length),
              "--batch-size", str(args.batch_size)]
    if row.startswith("nlpft"):
        out = work / f"{row}-{repeat}"
        os.environ["NLPFT_FIRST_TOKEN"] = "0" if row == "nlpft-all-positions" else "1"  # the child inherits it
        _, loop = _clocked(clock, "-m", "nlpft", "finetune", *common, "--valid", str(files["valid"]),
                           "--model", "minilm", "--out", str(out), "--overwrite", "--quiet",
                           "--long-text", "truncate", "--method", "standard", "--precision", args.precision)
        metrics = json.loads((out / "metrics.json").read_text())
        result = {"accuracy": metrics["test"]["accuracy"], "macro_f1": metrics["test"]["macro_f1"],
                  "precision": metrics["precision"]}
    else:
        script = "competent_trainer.py" if row == "competent" else "plain_trainer.py"
        # the competent script resolves auto itself (checked below); plain_trainer is told
        stdout, loop = _clocked(clock, str(HERE / script), "--model", str(files["model"]), *common,
                                "--precision", args.precision if row == "competent" else precision)
        result = json.loads(stdout.strip().splitlines()[-1])
    if result["precision"] != precision:
        sys.exit(f"{row} trained in {result['precision']}; nlpft resolved --precision {args.precision} to {precision}")
    examples = files["train_rows"] * args.epochs
    return {"row": row, "repeat": repeat, "accuracy": result["accuracy"], "macro_f1": result["macro_f1"],
            "precision": result["precision"], "loop": loop,
            "examples_per_cpu_s": examples / loop["cpu_s"], "examples_per_wall_s": examples / loop["wall_s"]}


def summarise(runs: list[dict], flops: float, peak: dict) -> list[dict]:
    """Per row: mean rates over the repeats, MFU on CPU time, accuracy."""
    rows = []
    for row in ROWS:
        mine = [r for r in runs if r["row"] == row]
        if not mine:
            continue
        cpu_s = statistics.mean(r["loop"]["cpu_s"] for r in mine)
        rows.append({"row": row, "label": ROW_LABELS[row], "repeats": len(mine),
                     "examples_per_cpu_s": [r["examples_per_cpu_s"] for r in mine],
                     "examples_per_cpu_s_mean": statistics.mean(r["examples_per_cpu_s"] for r in mine),
                     "examples_per_wall_s_mean": statistics.mean(r["examples_per_wall_s"] for r in mine),
                     "loop_cpu_s_mean": cpu_s,
                     "achieved_flops": flops / cpu_s, "mfu": flops / cpu_s / peak["peak_cpu_flops"],
                     "accuracy": [r["accuracy"] for r in mine],
                     "macro_f1": [r["macro_f1"] for r in mine]})
    return rows


def _md(results: dict) -> str:
    rows = {r["row"]: r for r in results["rows"]}
    peak = results["matmul_peak"]
    out = ["# Fine-tuning speed: nlpft against stock transformers scripts (MiniLM, BBC News)", "",
           f"Machine: {results['machine']}", "",
           f"Precision: {results['precision']} in every row (`--precision {results['precision_requested']}` as nlpft "
           f"resolves it); {results['train_rows']} training articles, max length {results['max_length']}, batch "
           f"{results['batch_size']}, {results['epochs']:g} epoch(s), lr {results['lr']:g}, seed {results['seed']}; "
           f"test accuracy on {results['test_rows']} articles; {results['repeats']} interleaved repeats.", "",
           "| row | examples/s (loop, CPU time) | per repeat | examples/s (wall) | achieved GFLOP/s | MFU "
           "| test accuracy |",
           "|---|---:|---|---:|---:|---:|---|"]
    for r in results["rows"]:
        out.append(f"| {r['row']}: {r['label']} | {r['examples_per_cpu_s_mean']:.2f} "
                   f"| {', '.join(f'{x:.2f}' for x in r['examples_per_cpu_s'])} | {r['examples_per_wall_s_mean']:.2f} "
                   f"| {r['achieved_flops'] / 1e9:.0f} | {r['mfu']:.1%} "
                   f"| {', '.join(f'{a:.4f}' for a in r['accuracy'])} |")
    out += [""]
    if "nlpft" in rows:
        for other in ("competent", "pad-to-max", "nlpft-all-positions"):
            if other in rows:
                out.append(f"- nlpft / {other}: **{rows['nlpft']['examples_per_cpu_s_mean'] / rows[other]['examples_per_cpu_s_mean']:.2f}x**"
                           f" examples/s (CPU time), {rows['nlpft']['examples_per_wall_s_mean'] / rows[other]['examples_per_wall_s_mean']:.2f}x (wall)")
    shapes = "; ".join(f"{name}: {v['cpu_flops'] / 1e9:.0f}" for name, v in peak["shapes"].items())
    out += ["", f"Matmul peak ({peak['precision']}, torch.matmul, same process and threads, before and after the rows): "
                f"**{peak['peak_cpu_flops'] / 1e9:.0f} GFLOP/s** of CPU time (GFLOP/s per shape: {shapes}).",
            f"Model FLOPs of the training run: {results['model_flops'] / 1e12:.2f} TFLOP over "
            f"{results['real_tokens']:,} real tokens (the formula in speed.py's docstring: only real tokens count, so "
            "padding shows as lower MFU). The nlpft row's last layer computes the [CLS] position alone "
            "(`nlpft.finetune.first_token`), about 14% fewer linear FLOPs than the stock model's that every row's "
            "MFU counts: its MFU is useful work per second, not the FLOPs it executed.", "",
            "Timing: the training loop only (`loop_clock.py`: time inside `Trainer.train()` minus its logging, "
            "evaluation and checkpoint writes; nlpft validates once per epoch and saves its best weights there, the "
            "stock scripts do neither), on the process's CPU time (user + system), which other work sharing the core "
            "does not inflate; the rows were interleaved so that drift touches them alike.", "",
            f"`{results['command']}`, {results['total_wall_s'] / 60:.1f} min"]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", nargs="+", choices=ROWS, default=list(DEFAULT_ROWS),
                    help="nlpft-all-positions: nlpft with its last layer computing every position, the stock way")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--train-size", type=int, default=600)
    ap.add_argument("--epochs", type=float, default=1)
    ap.add_argument("--lr", type=float, default=1e-4,
                    help="the same in every row (default: %(default)s; at 2e-5 MiniLM's loss barely moves in 38 steps)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    ap.add_argument("--results", type=Path, default=HERE / "results")
    args = ap.parse_args()

    import torch

    from nlpft.pretrained.loading import resolve_model
    from nlpft.training.precision import resolve_precision

    precision = resolve_precision(args.precision)
    model_dir = Path(resolve_model("minilm").path)
    shape = model_shape(model_dir)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        split = harness.write_split(harness.shared_file("bbc_news.csv"), work / "split")
        files = {"train": training_sample(split["train"], args.train_size, work / "train-sample.csv", args.seed),
                 "valid": split["valid"], "test": split["test"], "model": model_dir}
        lengths = token_counts(model_dir, files["train"], args.max_length)
        files["train_rows"] = len(lengths)
        flops = training_flops(shape, lengths, len(set(labels_of(split["train"]))), args.epochs)
        _say(f"matmul peak ({precision}) ...")
        peaks = [matmul_peak(shape, precision)]
        runs = []
        for repeat in range(args.repeats):
            order = args.rows if repeat % 2 == 0 else list(reversed(args.rows))
            for row in order:
                _say(f"repeat {repeat + 1}/{args.repeats}: {row} ...")
                runs.append(run_row(row, files, args, precision, work, repeat))
                _say(f"  {runs[-1]['examples_per_cpu_s']:.2f} examples/s (CPU), accuracy {runs[-1]['accuracy']:.4f}")
        peaks.append(matmul_peak(shape, precision))
        peak = max(peaks, key=lambda p: p["peak_cpu_flops"])
        test_rows = len(labels_of(split["test"]))
    results = {"machine": harness.machine(), "cpu_model": harness.cpu_model(), "cpu_features": harness.cpu_features(),
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
               "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
               "precision": precision, "precision_requested": args.precision,
               "train_rows": files["train_rows"], "test_rows": test_rows, "max_length": args.max_length,
               "batch_size": args.batch_size, "epochs": args.epochs, "lr": args.lr, "seed": args.seed,
               "repeats": args.repeats, "real_tokens": sum(lengths), "model_shape": shape, "model_flops": flops,
               "matmul_peak": peak, "matmul_peaks": peaks, "runs": runs, "rows": summarise(runs, flops, peak),
               "total_wall_s": time.perf_counter() - started,
               "command": harness.recorded_command("benchmarks/finetune/speed.py", sys.argv[1:])}
    report = _md(results)
    harness.write_results(args.results, results, report, stem="speed")
    print(report)


if __name__ == "__main__":
    main()
