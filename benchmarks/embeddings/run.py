"""Benchmark: word2vec, fastText and GloVe through nlpft on one corpus, plus plain gensim.

For each algorithm: wall time, training words/s (pairs/s for GloVe), peak RSS, analogy
accuracy, WordSim-353 and SimLex-999 Spearman. In the same run, `nlpft embed train --algo
word2vec` and a plain gensim script with identical settings (plain_gensim.py) are timed
in interleaved repeats, and the ratio of their median wall times is reported.

    python benchmarks/embeddings/run.py                       # austen + kjv from ../shared/corpora
    python benchmarks/embeddings/run.py --corpus my.txt --repeats 5
    python benchmarks/embeddings/run.py --glove-corpus text17m   # adds GloVe at scale (~10 min)

Writes results.json and results.md under --results (default: benchmarks/embeddings/results).
Every number printed is measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # benchmarks/harness.py
import harness  # noqa: E402


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(cmd: list[str]) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, stdout) of one command."""
    cpu = _cpu_children()
    started = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"command failed ({result.returncode}): {' '.join(cmd)}\n{result.stderr[-3000:]}")
    return wall, _cpu_children() - cpu, result.stdout


def _evaluate(vectors: Path) -> dict:
    from nlpft.embeddings.evaluation import evaluate
    from nlpft.embeddings.vectors_io import load_vectors

    results = evaluate(load_vectors(vectors))
    scores = {s["name"]: s for s in results["sets"]}
    return {
        "analogy_accuracy": scores["analogy"]["score"],
        "analogy_covered": scores["analogy"]["covered"],
        "wordsim353_spearman": scores["wordsim353"]["score"],
        "simlex999_spearman": scores["simlex999"]["score"],
    }


def _nlpft_train(algo: str, corpus: list[str], out: Path, settings: list[str]) -> dict:
    cmd = [sys.executable, "-m", "nlpft", "embed", "train", "--algo", algo, "--corpus", *corpus,
           "--out", str(out), "--quiet", *settings]
    wall, cpu, _ = _run(cmd)
    metrics = json.loads((out / "metrics.json").read_text())
    row = {
        "algo": algo,
        "wall_s": wall,
        "cpu_s": cpu,
        "train_s": metrics["time_s"]["train"],
        "tokens": metrics["corpus"]["tokens"],
        "vocab_size": metrics["corpus"]["vocab_size"],
        "train_words_per_s": metrics["train_words_per_s"],
        "peak_rss_mib": metrics["peak_rss_bytes"] / 2**20,
    }
    if algo == "glove":
        row["nonzero_pairs"] = metrics["cooccurrence"]["nonzero_pairs"]
        row["count_s"] = metrics["cooccurrence"]["count_s"]
        row["count_words_per_s"] = metrics["corpus"]["tokens"] / metrics["cooccurrence"]["count_s"]
        row["train_pairs_per_s"] = metrics["train_pairs_per_s"]
    return row


def _word2vec_vs_gensim(corpus: list[str], files: list[str], work: Path, repeats: int, common: dict,
                        threads: int) -> dict:
    """Interleaved repeats, alternating which goes first, so drift hits both alike."""
    walls: dict[str, list[float]] = {"nlpft": [], "gensim": []}
    cpus: dict[str, list[float]] = {"nlpft": [], "gensim": []}
    flags = ["--dim", str(common["dim"]), "--window", "5", "--min-count", str(common["min_count"]),
             "--epochs", "5", "--threads", str(threads), "--seed", "1"]
    quality = {}
    for r in range(repeats):
        for who in (["nlpft", "gensim"] if r % 2 == 0 else ["gensim", "nlpft"]):
            out = work / f"{who}-{threads}-{r}"
            if who == "nlpft":
                row = _nlpft_train("word2vec", corpus, out, flags)
                wall, cpu = row["wall_s"], row["cpu_s"]
            else:
                cmd = [sys.executable, str(HERE / "plain_gensim.py"), "--corpus", *files, "--out", str(out), *flags]
                wall, cpu, _ = _run(cmd)
            walls[who].append(wall)
            cpus[who].append(cpu)
            if r == 0:
                quality[who] = _evaluate(out / "vectors.bin")
    pair_ratios = [a / b for a, b in zip(walls["nlpft"], walls["gensim"])]
    return {
        "threads": threads,
        "repeats": repeats,
        "nlpft_wall_s": walls["nlpft"],
        "gensim_wall_s": walls["gensim"],
        "nlpft_cpu_s": cpus["nlpft"],
        "gensim_cpu_s": cpus["gensim"],
        "ratio_of_medians": statistics.median(walls["nlpft"]) / statistics.median(walls["gensim"]),
        "median_pair_ratio": statistics.median(pair_ratios),
        "cpu_ratio_of_medians": statistics.median(cpus["nlpft"]) / statistics.median(cpus["gensim"]),
        "quality": quality,
    }


def _markdown(report: dict) -> str:
    lines = [
        f"# Embedding benchmark: {report['corpus_name']}",
        "",
        f"{report['machine']}; {report['tokens']:,} tokens; settings: {report['settings']}",
        "",
        "| algorithm | wall s | train words/s | peak RSS MiB | analogy acc | WS-353 ρ | SimLex-999 ρ | vocab |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        def f(v, fmt):
            return "n/a" if v is None else format(v, fmt)
        lines.append(
            f"| {row['label']} | {row['wall_s']:.1f} | {row['train_words_per_s']:,.0f} | {row['peak_rss_mib']:.0f} | "
            f"{f(row['analogy_accuracy'], '.4f')} | {f(row['wordsim353_spearman'], '.3f')} | "
            f"{f(row['simlex999_spearman'], '.3f')} | {row['vocab_size']:,} |"
        )
    for row in report["rows"]:
        if row["algo"] == "glove":
            lines += ["", f"GloVe ({row['label']}): {row['nonzero_pairs']:,} non-zero pairs; counting "
                          f"{row['count_s']:.1f} s ({row['count_words_per_s']:,.0f} words/s); training "
                          f"{row['train_pairs_per_s']:,.0f} pairs/s per iteration"]
    for cmp in report.get("word2vec_vs_gensim") or []:
        lines += [
            "",
            f"## nlpft word2vec vs plain gensim, {cmp['threads']} thread(s) "
            f"(identical settings, {cmp['repeats']} interleaved repeats)",
            "",
            f"- nlpft wall s: {', '.join(f'{x:.2f}' for x in cmp['nlpft_wall_s'])}",
            f"- gensim wall s: {', '.join(f'{x:.2f}' for x in cmp['gensim_wall_s'])}",
            f"- wall-time ratio nlpft/gensim: **{cmp['ratio_of_medians']:.3f}** (ratio of medians); "
            f"median of per-repeat ratios {cmp['median_pair_ratio']:.3f}; target ≤ 1.05",
            f"- CPU-time ratio (ratio of medians): {cmp['cpu_ratio_of_medians']:.3f}",
            f"- quality nlpft: {json.dumps(cmp['quality'].get('nlpft'))}",
            f"- quality gensim: {json.dumps(cmp['quality'].get('gensim'))}",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", nargs="+", default=["austen", "kjv"], help="paths or nlpft corpus names")
    p.add_argument("--algos", nargs="+", default=["word2vec", "fasttext", "glove"])
    p.add_argument("--repeats", type=int, default=5, help="interleaved nlpft/gensim word2vec repeats")
    p.add_argument("--compare-threads", type=int, nargs="+", default=[1, 2],
                   help="thread counts for the nlpft/gensim comparison (1 is the low-noise one: with 2 "
                        "threads gensim's own wall time varied by +-25%% between runs here)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--min-count", type=int, default=5)
    p.add_argument("--glove-corpus", nargs="*", default=[], help="also run GloVe on this corpus (e.g. text17m)")
    p.add_argument("--cpu", help="pin every run to these CPUs (taskset list, e.g. 0)")
    p.add_argument("--results", default=str(HERE / "results"))
    args = p.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {int(c) for c in args.cpu.split(",")})  # children inherit it

    from nlpft.data.registry import resolve_corpus
    from nlpft.errors import UserInputError

    try:
        corpus = resolve_corpus(args.corpus)
    except UserInputError as exc:
        print(f"skipping: {exc}", file=sys.stderr)
        return 0
    files = [str(f) for f in corpus.files()]
    common = {"dim": args.dim, "min_count": args.min_count, "threads": args.threads}
    settings = ["--dim", str(args.dim), "--min-count", str(args.min_count), "--threads", str(args.threads),
                "--seed", "1"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        jobs = [(algo, args.corpus, corpus.name) for algo in args.algos]
        if args.glove_corpus:
            jobs.append(("glove", args.glove_corpus, "+".join(args.glove_corpus)))
        for algo, spec, name in jobs:
            print(f"[{name}] {algo} ...", file=sys.stderr, flush=True)
            out = work / f"{algo}-{name}"
            row = _nlpft_train(algo, list(spec), out, settings)
            row.update(_evaluate(out / "vectors.bin"))
            row["label"] = f"{algo} ({name})"
            rows.append(row)
            print(f"  {json.dumps(row)}", file=sys.stderr, flush=True)
        cmp = []
        if "word2vec" in args.algos and args.repeats > 0:
            for threads in args.compare_threads:
                print(f"word2vec: nlpft vs plain gensim, {threads} thread(s) ...", file=sys.stderr, flush=True)
                cmp.append(_word2vec_vs_gensim(args.corpus, files, work, args.repeats, common, threads))
    report = {
        "corpus_name": corpus.name,
        "files": [Path(f).name for f in files],
        "tokens": rows[0]["tokens"] if rows else None,
        "settings": (f"dim {args.dim}, min count {args.min_count}, {args.threads} threads, other options default"
                     + (f", pinned to CPU {args.cpu}" if args.cpu else "")),
        "machine": harness.machine(),
        "rows": rows,
        "word2vec_vs_gensim": cmp,
    }
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (results / "results.md").write_text(_markdown(report))
    print(_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
