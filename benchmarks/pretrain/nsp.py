"""Does next-sentence prediction make a better fine-tuning backbone? MLM vs MLM+NSP.

Two tiny BERTs (`--size tiny`: 4 x 128) are pretrained by `nlpft pretrain` on Austen + KJV
(../shared/corpora) with the same WordPiece tokenizer, steps, batch size and block size, one
with `--objective mlm` (packed 128-token blocks) and one with `--objective mlm+nsp`
(sentence pairs of up to 128 tokens, half IsNext). The vocabulary is 4,096 ids, half the
preset's: the MLM head scores every position against every id, most of a step's cost on a
CPU. Each model is then fine-tuned on BBC News with
`nlpft finetune` (the whole model, `--method standard`), next to the same architecture from
random weights (`--random-init`), for every seed in --seeds.

- Held-out text: austen and kjv are cut into 200-line blocks and a seeded draw puts 10% of
  the blocks into test files (`run.split_text`); pretraining reads the rest, two files, so
  the file boundary ends a document. Both models' MLM loss is measured on the same fixed
  masks of that test text (`nlpft lm eval`, 128-token blocks), so the price NSP takes from
  MLM at the same budget shows; the NSP model's own test NSP accuracy comes from its run.
- BBC News: one fixed stratified 80/10/10 split (seed 13, as benchmarks/finetune), the first
  --max-length 128 tokens of each article (`--long-text truncate`), --finetune-steps steps,
  validation every quarter of them (the best weights by macro F1 are kept); the fine-tuning
  seed changes the head's initialisation, dropout and batch order, not the split.
- Reported: BBC test accuracy and macro F1 (mean ± sample std over seeds), the per-seed
  difference MLM+NSP - MLM (the same seeds, so paired), pretraining tokens and time.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/pretrain/nsp.py         # about 20 min on one core
    python benchmarks/pretrain/nsp.py --smoke --results /tmp/nsp-smoke         # every step, tiny: ~1.5 CPU min
    python benchmarks/pretrain/nsp.py --pretrain-seeds 1 2 --seeds 1 2 3       # pretraining spread too

Writes results.json and results.md under --results (--smoke writes nothing there unless
--results is given). Every number is measured in the run.
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
from harness import shared_file as _find  # noqa: E402
from run import split_text  # noqa: E402  (benchmarks/pretrain/run.py: the held-out blocks)

_say = functools.partial(harness.say, "nsp")

OBJECTIVES = ("mlm", "mlm+nsp")
BLOCK_SIZE = 128
SMOKE = {"pretrain_steps": 15, "finetune_steps": 8, "batch_size": 8, "seeds": [1], "pretrain_seeds": [1],
         "corpus_lines": 3000, "vocab_size": 2000, "bbc_rows": 300}


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


# -- data ------------------------------------------------------------------------------------------
def corpus_files(work: Path, corpus_lines: int | None) -> tuple[list[Path], list[Path]]:
    """(training files, held-out files) of austen and kjv; --smoke keeps the first lines only."""
    train, test = [], []
    for name in ("austen.txt", "kjv.txt"):
        src = _find(name)
        if corpus_lines:
            short = work / "text" / f"{src.stem}-first-{corpus_lines}.txt"
            short.parent.mkdir(parents=True, exist_ok=True)
            with open(src, encoding="utf-8") as fh:
                short.write_text("".join(line for _, line in zip(range(corpus_lines), fh, strict=False)),
                                 encoding="utf-8")
            src = short
        a, b = split_text(src, work / "text")
        train.append(a)
        test.append(b)
    return train, test


def bbc_split(work: Path, rows: int | None) -> dict[str, Path]:
    """Stratified 80/10/10 split of bbc_news.csv (seed 13) as train/valid/test CSVs; --smoke
    takes a stratified sample of `rows` rows first."""
    sys.path.insert(0, str(harness.REPO))
    from nlpft.data.labeled import read_labeled, stratified_split

    examples = list(read_labeled(_find("bbc_news.csv")))
    if rows:
        examples = stratified_split(examples, valid_fraction=0.0, test_fraction=rows / len(examples), seed=13)[2]
    parts = stratified_split(examples, valid_fraction=0.1, test_fraction=0.1, seed=13)
    return harness.write_labeled_csvs(dict(zip(("train", "valid", "test"), parts, strict=True)), work / "bbc")


# -- pretraining -------------------------------------------------------------------------------------
def pretrain(objective: str, out: Path, train_files: list[Path], test_files: list[Path], steps: int,
             batch_size: int, seed: int, vocab_size: int, tokenizer: Path | None) -> dict:
    _say(f"pretraining {objective}, seed {seed}, {steps} steps ...")
    args = ["pretrain", "--arch", "bert", "--objective", objective, "--size", "tiny", "--corpus",
            *map(str, train_files), "--out", str(out), "--overwrite", "--quiet", "--block-size", str(BLOCK_SIZE),
            "--batch-size", str(batch_size), "--max-steps", str(steps), "--eval-every", str(steps),
            "--checkpoint-every", str(steps), "--seed", str(seed), "--threads", "1"]
    # the first model trains the tokenizer, the others use it
    args += ["--tokenizer", str(tokenizer)] if tokenizer is not None else ["--vocab-size", str(vocab_size)]
    started = time.perf_counter()
    _nlpft(*args)
    wall = time.perf_counter() - started
    m = _metrics(out)
    tokens_per_example = m.get("mean_pair_tokens") or m["block_size"]
    held_out = json.loads(_nlpft("lm", "eval", "--model", str(out), "--corpus", *map(str, test_files),
                                 "--block-size", str(BLOCK_SIZE), "--threads", "1", "--json"))
    return {"objective": objective, "seed": seed, "steps": m["steps"], "wall_s": wall,
            "train_s": m["time_s"]["train"], "train_tokens": round(m["steps"] * batch_size * tokens_per_example),
            "parameters": m["parameters"], "vocab_size": m["vocab_size"],
            "valid_mlm_loss_own_data": m["valid"]["loss"],
            "test_nsp_accuracy": m["test"].get("nsp_accuracy"),
            "held_out_mlm_loss": held_out["loss"], "held_out_tokens": held_out["tokens"]}


# -- fine-tuning ---------------------------------------------------------------------------------------
def finetune(label: str, model: Path, split: dict, seed: int, steps: int, out: Path, *extra: str) -> dict:
    _say(f"fine-tuning {label} on BBC News, seed {seed}, {steps} steps ...")
    started = time.perf_counter()
    _nlpft("finetune", "--train", str(split["train"]), "--valid", str(split["valid"]), "--test", str(split["test"]),
           "--model", str(model), "--out", str(out), "--overwrite", "--quiet", "--seed", str(seed),
           "--method", "standard", "--max-length", str(BLOCK_SIZE), "--long-text", "truncate",
           "--max-steps", str(steps), "--eval-every", str(max(steps // 4, 1)), "--threads", "1", *extra)
    wall = time.perf_counter() - started
    m = _metrics(out)
    return {"seed": seed, "accuracy": m["test"]["accuracy"], "macro_f1": m["test"]["macro_f1"],
            "train_s": m["train_time_s"], "wall_s": wall, "steps": m["steps"]}


def _spread(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: list[dict]) -> dict:
    acc, f1 = _spread([r["accuracy"] for r in runs]), _spread([r["macro_f1"] for r in runs])
    return {"runs": runs, "accuracy_mean": acc[0], "accuracy_std": acc[1], "macro_f1_mean": f1[0],
            "macro_f1_std": f1[1]}


def compare(results: dict) -> dict:
    """MLM+NSP - MLM test accuracy, paired by (pretraining seed, fine-tuning seed)."""
    def by_seed(backbone: str) -> dict:
        return {(row["pretrain_seed"], r["seed"]): r["accuracy"] for row in results["backbones"]
                if row["backbone"] == backbone for r in row["finetune"]["runs"]}

    mlm, nsp = by_seed("mlm"), by_seed("mlm+nsp")
    diffs = [nsp[key] - mlm[key] for key in sorted(mlm) if key in nsp]
    mean, std = _spread(diffs)
    return {"differences": diffs, "mean": mean, "std": std,
            "nsp_better_in": sum(d > 0 for d in diffs), "mlm_better_in": sum(d < 0 for d in diffs), "pairs": len(diffs)}


# -- report ----------------------------------------------------------------------------------------------
def _md(results: dict) -> str:
    s = results["settings"]
    out = ["# MLM vs MLM+NSP as a fine-tuning backbone (tiny BERT, austen + kjv -> BBC News)", "",
           results["machine"], "",
           f"Pretraining: `--size tiny`, block {BLOCK_SIZE}, batch {s['batch_size']}, {s['pretrain_steps']} steps, "
           f"one thread, the same WordPiece tokenizer ({results['backbones'][-1]['pretraining']['vocab_size']:,} ids) "
           f"for both; seeds {s['pretrain_seeds']}. Fine-tuning: BBC News, stratified 80/10/10 split (seed 13; "
           f"{s['bbc_rows']}), first {BLOCK_SIZE} tokens, {s['finetune_steps']} steps, seeds {s['seeds']}.", "",
           "| backbone | pretrain seed | pretrain tokens | pretrain time | held-out MLM loss | test NSP accuracy "
           "| BBC test accuracy | BBC macro F1 |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in results["backbones"]:
        p, f = row["pretraining"], row["finetune"]
        if p:
            tokens, wall = f"{p['train_tokens']:,}", f"{p['wall_s']:.0f} s (train {p['train_s']:.0f} s)"
            mlm_loss = f"{p['held_out_mlm_loss']:.3f}"
            nsp = f"{p['test_nsp_accuracy']:.1%}" if p["test_nsp_accuracy"] is not None else ""
        else:
            tokens, wall, mlm_loss, nsp = "0", "", "", ""
        out.append(f"| {row['label']} | {row['pretrain_seed'] or ''} | {tokens} | {wall} | {mlm_loss} | {nsp} "
                   f"| {f['accuracy_mean']:.4f} ± {f['accuracy_std']:.4f} | {f['macro_f1_mean']:.4f} ± "
                   f"{f['macro_f1_std']:.4f} |")
    c = results["comparison"]
    out += ["", f"MLM+NSP - MLM, BBC test accuracy, paired by seed: **{c['mean'] * 100:+.2f} points** "
                f"(std {c['std'] * 100:.2f} over {c['pairs']} pairs; MLM+NSP ahead in {c['nsp_better_in']}, "
                f"MLM in {c['mlm_better_in']}).", "",
            "Held-out MLM loss: `nlpft lm eval` on the same fixed masks of held-out austen + kjv text "
            f"({results['backbones'][-1]['pretraining']['held_out_tokens']:,} tokens, {BLOCK_SIZE}-token blocks). "
            "Pretrain tokens: steps x batch x tokens per example (MLM: full blocks; MLM+NSP: the mean pair, "
            "padding not counted).", "",
            f"Whole run: {results['total_wall_s'] / 60:.1f} min (`{results['command']}`)."]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pretrain-steps", type=int, default=400, help="per model (default: %(default)s)")
    ap.add_argument("--vocab-size", type=int, default=4096, help="WordPiece ids (default: %(default)s)")
    ap.add_argument("--batch-size", type=int, default=32, help="pretraining (default: %(default)s)")
    ap.add_argument("--finetune-steps", type=int, default=200,
                    help="per fine-tuning run (default: %(default)s, about 1.8 epochs)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="fine-tuning seeds (default: 1 2 3)")
    ap.add_argument("--pretrain-seeds", type=int, nargs="+", default=[1], help="default: 1")
    ap.add_argument("--smoke", action="store_true",
                    help="every step once on small slices (austen/kjv first lines, 300 BBC rows): a check that "
                         "the benchmark runs, not a measurement")
    ap.add_argument("--results", type=Path, default=None, help="default: benchmarks/pretrain/results/nsp")
    ap.add_argument("--work", type=Path, default=None, help="keep the models here (default: a temp dir)")
    args = ap.parse_args()
    corpus_lines = bbc_rows = None
    if args.smoke:
        args.pretrain_steps, args.finetune_steps = SMOKE["pretrain_steps"], SMOKE["finetune_steps"]
        args.batch_size, args.seeds, args.pretrain_seeds = SMOKE["batch_size"], SMOKE["seeds"], SMOKE["pretrain_seeds"]
        args.vocab_size, corpus_lines, bbc_rows = SMOKE["vocab_size"], SMOKE["corpus_lines"], SMOKE["bbc_rows"]
    results_dir = args.results or (None if args.smoke else HERE / "results" / "nsp")

    results = {"machine": harness.machine(), "command": "python benchmarks/pretrain/nsp.py " + " ".join(sys.argv[1:]),
               "settings": {"pretrain_steps": args.pretrain_steps, "batch_size": args.batch_size,
                            "finetune_steps": args.finetune_steps, "seeds": args.seeds,
                            "pretrain_seeds": args.pretrain_seeds, "smoke": args.smoke,
                            "bbc_rows": f"{bbc_rows} rows sampled" if bbc_rows else "all 2,225 rows"},
               "backbones": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        train_files, test_files = corpus_files(work, corpus_lines)
        split = bbc_split(work, bbc_rows)
        first_model = None  # trains the tokenizer the others use
        for pretrain_seed in args.pretrain_seeds:
            for objective in OBJECTIVES:
                model = work / f"bert-{objective.replace('+', '-')}-{pretrain_seed}"
                pretraining = pretrain(objective, model, train_files, test_files, args.pretrain_steps,
                                       args.batch_size, pretrain_seed, args.vocab_size, first_model)
                first_model = first_model or model
                runs = [finetune(objective, model, split, seed, args.finetune_steps,
                                 work / "runs" / f"{model.name}-ft-{seed}") for seed in args.seeds]
                results["backbones"].append({"backbone": objective, "label": objective.upper(),
                                             "pretrain_seed": pretrain_seed, "pretraining": pretraining,
                                             "finetune": summarize(runs)})
        baseline = [finetune("random init", first_model, split, seed, args.finetune_steps,
                             work / "runs" / f"random-init-ft-{seed}", "--random-init") for seed in args.seeds]
        results["backbones"].insert(0, {"backbone": "random-init", "label": "random init (no pretraining)",
                                        "pretrain_seed": None, "pretraining": None,
                                        "finetune": summarize(baseline)})
        results["comparison"] = compare(results)
        results["total_wall_s"] = time.perf_counter() - started
    report = _md(results)
    if results_dir is not None:
        harness.write_results(results_dir, results, report)
    print(report)


if __name__ == "__main__":
    main()
