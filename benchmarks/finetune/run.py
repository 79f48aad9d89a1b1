"""Compare every fine-tuning backbone on BBC News (../shared/corpora/bbc_news.csv, 5 classes).

One fixed, seeded, stratified 80/10/10 split (written to train/valid/test CSVs); every
backbone trains on the same files with `nlpft finetune`, for each of --seeds:

  tfidf            TF-IDF 1-2 grams + logistic regression
  w2v-austen-kjv   static vectors (word2vec, 100-d) trained on austen + kjv, tuned, + MLP
  w2v-bbc          the same, trained on the CSV's own training text
  rnn-random       the RNN LM architecture (2x200 LSTM) from random weights
  rnn-lm           ULMFiT: the RNN LM pretrained on the CSV's training text, then fine-tuned
  minilm           all-MiniLM-L6-v2 (default settings of `nlpft finetune`: [CLS] pooler)
  minilm-mean      the same with --pooling mean
  gpt2-nlpft       a tiny GPT-2 pretrained by `nlpft pretrain` (--gpt DIR, or pretrained here
                   on austen + kjv for --gpt-steps steps)

Reported per backbone: test accuracy and macro F1 (mean ± std over seeds), training time,
training examples/s, parameters, peak RSS. In the same run, for MiniLM, the examples/s of
plain_trainer.py (stock transformers, every text padded to --max-length, fp32) and the
ratio nlpft / plain: a pad-to-max fp32 baseline, not the one to quote. speed.py is the speed
comparison: nlpft against a competent Trainer script at the same precision, with MFU.

    python benchmarks/finetune/run.py --quick              # 1 MiniLM epoch, fewer for the rest: < 1 hour
    python benchmarks/finetune/run.py --backbones tfidf minilm --seeds 13

Writes results.json and results.md under --results. Every number is measured in the run.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # benchmarks/harness.py
import harness  # noqa: E402
from harness import nlpft as _nlpft  # noqa: E402
from harness import run as _run  # noqa: E402
from harness import shared_file as _find  # noqa: E402

_say = functools.partial(harness.say, "finetune")

BACKBONES = ("tfidf", "w2v-austen-kjv", "w2v-bbc", "rnn-random", "rnn-lm", "minilm", "minilm-mean", "gpt2-nlpft")


def prepare(backbone: str, work: Path, split: dict, quick: bool, gpt: str | None, gpt_steps: int) -> str:
    """The --model value for `backbone`, training what it needs first."""
    if backbone in ("tfidf", "minilm", "minilm-mean"):
        return backbone.removesuffix("-mean")
    if backbone == "w2v-austen-kjv":
        out = work / "w2v-austen-kjv"
        if not out.exists():
            _say("word2vec on austen + kjv ...")
            _nlpft("embed", "train", "--algo", "word2vec", "--corpus", str(_find("austen.txt")),
                   str(_find("kjv.txt")), "--out", str(out), "--dim", "100", "--quiet")
        return str(out)
    if backbone == "w2v-bbc":
        out = work / "w2v-bbc"
        if not out.exists():
            _say("word2vec on the BBC training text ...")
            _nlpft("embed", "train", "--algo", "word2vec", "--corpus", str(split["train"].with_suffix(".txt")),
                   "--out", str(out), "--dim", "100", "--min-count", "2", "--epochs", "10", "--quiet")
        return str(out)
    if backbone in ("rnn-random", "rnn-lm"):
        out = work / "rnn-lm-bbc"
        if not out.exists():
            _say("RNN LM on the BBC training text ...")
            _nlpft("lm", "train", "--corpus", str(split["train"].with_suffix(".txt")), "--out", str(out),
                   "--epochs", "4" if quick else "8", "--quiet", "--seed", "1")
        return str(out)
    if backbone == "gpt2-nlpft":
        if gpt:
            return gpt
        out = work / "gpt2-austen-kjv"
        if not out.exists():
            _say(f"tiny GPT-2 on austen + kjv, {gpt_steps} steps ...")
            _nlpft("pretrain", "--arch", "gpt2", "--corpus", str(_find("austen.txt")), str(_find("kjv.txt")),
                   "--out", str(out), "--max-steps", str(gpt_steps), "--quiet", "--seed", "1")
        return str(out)
    raise ValueError(backbone)


def settings(backbone: str, quick: bool) -> list[str]:
    if backbone == "tfidf":
        return []
    # transformers read the first --max-length tokens, as the plain script they are timed against
    # (--long-text auto would read most BBC articles in windows)
    if backbone in ("minilm", "minilm-mean"):
        return ["--epochs", "1" if quick else "3", "--long-text", "truncate"] + (
            ["--pooling", "mean"] if backbone == "minilm-mean" else [])
    if backbone == "gpt2-nlpft":  # 1.9M parameters: a few seconds per epoch
        return ["--epochs", "5" if quick else "8", "--lr", "5e-4", "--long-text", "truncate"]
    rnn = ["--epochs", "10" if quick else "15", "--batch-size", "32", "--patience", "4"]
    if backbone == "rnn-random":
        return [*rnn, "--random-init", "--no-gradual-unfreeze", "--layer-lr-factor", "1"]
    if backbone == "rnn-lm":
        return rnn
    return ["--batch-size", "32"]  # static vectors: up to 20 epochs (the default), seconds each


def run_backbone(backbone: str, model: str, split: dict, seeds: list[int], quick: bool, work: Path) -> dict:
    runs = []
    for seed in seeds:
        out = work / "runs" / f"{backbone}-{seed}"
        _say(f"{backbone}, seed {seed} ...")
        started = time.perf_counter()
        _nlpft("finetune", "--train", str(split["train"]), "--valid", str(split["valid"]), "--test",
               str(split["test"]), "--model", model, "--out", str(out), "--overwrite", "--seed", str(seed), "--quiet",
               *settings(backbone, quick))
        wall = time.perf_counter() - started
        m = json.loads((out / "metrics.json").read_text())
        runs.append({"seed": seed, "wall_s": wall, "accuracy": m["test"]["accuracy"], "macro_f1": m["test"]["macro_f1"],
                     "train_s": m["train_time_s"], "examples_per_s": m.get("train_examples_per_s"),
                     "parameters": m["parameters"], "peak_rss_mib": m["peak_rss_mib"], "epochs": m["epochs"],
                     "precision": m.get("precision")})
    acc = [r["accuracy"] for r in runs]
    f1 = [r["macro_f1"] for r in runs]
    rates = [r["examples_per_s"] for r in runs if r["examples_per_s"]]
    return {"backbone": backbone, "model": Path(model).name, "settings": settings(backbone, quick), "runs": runs,
            "accuracy_mean": statistics.mean(acc), "accuracy_std": statistics.pstdev(acc),
            "macro_f1_mean": statistics.mean(f1), "macro_f1_std": statistics.pstdev(f1),
            "train_s_mean": statistics.mean(r["train_s"] for r in runs),
            "examples_per_s_mean": statistics.mean(rates) if rates else None,
            "parameters": runs[0]["parameters"], "peak_rss_mib_max": max(r["peak_rss_mib"] for r in runs),
            "precision": runs[0]["precision"]}


def plain_baseline(split: dict, quick: bool, seed: int) -> dict:
    from nlpft.pretrained.loading import resolve_model

    _say("plain transformers MiniLM, padded to max length ...")
    line = _run([sys.executable, str(HERE / "plain_trainer.py"), "--model", str(resolve_model("minilm").path),
                 "--train", str(split["train"]), "--test", str(split["test"]), "--epochs", "1" if quick else "3",
                 "--seed", str(seed)])
    return json.loads(line.strip().splitlines()[-1])


def _md(results: dict) -> str:
    out = ["# Fine-tuning benchmark: BBC News (5 classes)", "", results["machine"], "",
           f"Split: {results['split']['train']} train / {results['split']['valid']} valid / "
           f"{results['split']['test']} test (stratified, seed 13); seeds {results['seeds']}"
           + ("; --quick settings" if results["quick"] else ""), "",
           "| backbone | accuracy | macro F1 | train time | train examples/s | precision | parameters | peak RSS |",
           "|---|---:|---:|---:|---:|---|---:|---:|"]
    for row in results["rows"]:
        rate = f"{row['examples_per_s_mean']:,.1f}" if row["examples_per_s_mean"] else "n/a"
        out.append(f"| {row['backbone']} | {row['accuracy_mean']:.4f} ± {row['accuracy_std']:.4f} "
                   f"| {row['macro_f1_mean']:.4f} ± {row['macro_f1_std']:.4f} | {row['train_s_mean']:.0f} s "
                   f"| {rate} | {row.get('precision') or 'n/a'} | {row['parameters']:,} | {row['peak_rss_mib_max']:.0f} MiB |")
    if results.get("plain"):
        p = results["plain"]
        mine = results["speed_compared"]
        out += ["", f"MiniLM speed against the example-script way (stock transformers, every text padded to "
                    f"--max-length, fp32), both seed {mine['seed']}, same split, same epochs:",
                "", f"- nlpft: {mine['examples_per_s']:.2f} examples/s ({mine['precision']}, dynamic padding, "
                    f"length-grouped batches), test accuracy {mine['accuracy']:.4f}; its training time includes "
                    "the per-epoch validation and checkpoint writes",
                f"- plain: {p['examples_per_s']:.2f} examples/s, test accuracy {p['accuracy']:.4f}",
                f"- nlpft / plain examples/s: **{results['speed_ratio']:.2f}**"]
    out += ["", f"Whole run, including training the word2vec vectors, the RNN LM and the GPT-2 it fine-tunes: "
                f"{results['total_wall_s'] / 60:.1f} min (`{results['command']}`)"]
    out += ["", "Settings per backbone: " + "; ".join(f"{r['backbone']}: {' '.join(r['settings']) or 'defaults'}"
                                                       for r in results["rows"])]
    if results["quick"]:
        out += ["", "--quick trains MiniLM for one epoch to fit the hour; `nlpft finetune`'s defaults (3 epochs, "
                    "no --quick) are what MiniLM's full accuracy needs."]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", nargs="+", choices=BACKBONES, default=list(BACKBONES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[13, 14, 15])
    ap.add_argument("--quick", action="store_true",
                    help="fewer epochs (see `settings`): 1 for MiniLM, 5 for the tiny GPT-2, 10 for the RNN rows, "
                         "4 for the RNN LM's pretraining; the whole run takes under an hour on 2 cores")
    ap.add_argument("--no-plain", action="store_true", help="skip the plain transformers baseline")
    ap.add_argument("--gpt", default=None, help="a GPT-2 directory from `nlpft pretrain` (default: pretrain one)")
    ap.add_argument("--gpt-steps", type=int, default=600)
    ap.add_argument("--results", type=Path, default=HERE / "results")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()


    results = {"machine": harness.machine(),
               "seeds": args.seeds, "quick": args.quick, "rows": [],
               "command": " ".join(["python benchmarks/finetune/run.py", *sys.argv[1:]])}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        split = harness.write_split(_find("bbc_news.csv"), work / "split")
        results["split"] = {name: sum(1 for _ in open(path, encoding="utf-8")) - 1 for name, path in split.items()}
        started = time.perf_counter()
        for backbone in args.backbones:
            model = prepare(backbone, work, split, args.quick, args.gpt, args.gpt_steps)
            results["rows"].append(run_backbone(backbone, model, split, args.seeds, args.quick, work))
        if "minilm" in args.backbones and not args.no_plain:
            results["plain"] = plain_baseline(split, args.quick, args.seeds[0])
            minilm = next(r for r in results["rows"] if r["backbone"] == "minilm")
            results["speed_compared"] = minilm["runs"][0]  # the same seed as the plain run
            results["speed_ratio"] = minilm["runs"][0]["examples_per_s"] / results["plain"]["examples_per_s"]
        results["total_wall_s"] = time.perf_counter() - started
        _say(f"done in {results['total_wall_s'] / 60:.1f} min")
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    report = _md(results)
    (args.results / "results.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
