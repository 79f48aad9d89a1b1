"""Benchmark: nlpft's GloVe against the Stanford C GloVe on the same pre-tokenized corpus.

The corpus goes once through nlpft's tokenizer into a token file (lower-cased words joined
by spaces, one line per input line); both tools then read that file, with the same
settings (dim, window 15, min count, 15 iterations, x_max 10). In interleaved repeats,
alternating which tool goes first, it records per tool: total wall and CPU time (C: the sum
of vocab_count + cooccur + shuffle + glove; nlpft: the whole `nlpft embed train` process),
peak RSS (C: its largest step; nlpft: the process) and the quality of the vectors
(analogies, WordSim-353, SimLex-999 through nlpft's evaluation; C's vectors.txt loads
through nlpft's vectors_io).

nlpft trains with its compiled numba kernel when numba is installed (`pip install
'nlpft[fast]'`; the kernel each run used is recorded). Its machine code is cached on disk
after the first run, so the repeats run with a warm cache (filled by a tiny run first, in a
cache folder of the benchmark's own) and one extra run with an empty cache measures the
first run ever, which compiles the kernel.

    python benchmarks/embeddings/glove_vs_c.py --glove-c /path/to/GloVe/build --threads 1 --cpu 0

--glove-c is the folder holding the C binaries: git clone https://github.com/stanfordnlp/GloVe
and `make` in it (they land in build/). Without it only nlpft's rows are measured.
Results: glove_vs_c.json and glove_vs_c.md under --results.
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

C_STEPS = ("vocab_count", "cooccur", "shuffle", "glove")
BUILD_HINT = ("the C rows are skipped: build the reference with `git clone https://github.com/stanfordnlp/GloVe "
              "&& make -C GloVe` and pass --glove-c GloVe/build")


def _children() -> tuple[float, int]:
    """(CPU seconds, largest peak RSS in bytes) over the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def _timed(cmd: list[str], stdin=None, stdout=None, env=None) -> tuple[float, float, int]:
    """(wall s, CPU s, peak RSS bytes) of one command, run under /usr/bin/time for its own peak."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        full = ["/usr/bin/time", "-f", "%M", "-o", report.name, *cmd]
        cpu0, _ = _children()
        started = time.perf_counter()
        result = subprocess.run(full, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            sys.exit(f"command failed ({result.returncode}): {' '.join(cmd)}\n{result.stderr.decode()[-3000:]}")
        peak_kib = int(report.read().split()[-1])
    return wall, _children()[0] - cpu0, peak_kib * 1024


def run_c(bin_dir: Path, tokens: Path, out: Path, args) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    vocab, cooc, shuf = out / "vocab.txt", out / "cooc.bin", out / "cooc.shuf.bin"
    steps = {}
    with open(tokens, "rb") as src, open(vocab, "wb") as dst:
        steps["vocab_count"] = _timed([str(bin_dir / "vocab_count"), "-min-count", str(args.min_count),
                                       "-verbose", "0"], src, dst)
    with open(tokens, "rb") as src, open(cooc, "wb") as dst:
        steps["cooccur"] = _timed([str(bin_dir / "cooccur"), "-memory", str(args.c_memory), "-vocab-file",
                                   str(vocab), "-verbose", "0", "-window-size", str(args.window)], src, dst)
    with open(cooc, "rb") as src, open(shuf, "wb") as dst:
        steps["shuffle"] = _timed([str(bin_dir / "shuffle"), "-memory", str(args.c_memory), "-verbose", "0"],
                                  src, dst)
    steps["glove"] = _timed([str(bin_dir / "glove"), "-save-file", str(out / "vectors"), "-threads",
                             str(args.threads), "-input-file", str(shuf), "-x-max", "10", "-iter",
                             str(args.iterations), "-vector-size", str(args.dim), "-binary", "0",
                             "-vocab-file", str(vocab), "-verbose", "0", "-write-header", "1"],
                            stdout=subprocess.DEVNULL)
    return {
        "wall_s": sum(s[0] for s in steps.values()),
        "cpu_s": sum(s[1] for s in steps.values()),
        "peak_rss_mib": max(s[2] for s in steps.values()) / 2**20,
        "steps": {name: {"wall_s": s[0], "cpu_s": s[1], "peak_rss_mib": s[2] / 2**20} for name, s in steps.items()},
        "vectors": str(out / "vectors.txt"),
    }


def run_nlpft(tokens: Path, out: Path, args, numba_cache: Path) -> dict:
    cmd = [sys.executable, "-m", "nlpft", "embed", "train", "--algo", "glove", "--corpus", str(tokens),
           "--out", str(out), "--quiet", "--dim", str(args.dim), "--window", str(args.window), "--min-count",
           str(args.min_count), "--epochs", str(args.iterations), "--threads", str(args.threads), "--seed", "1"]
    wall, cpu, peak = _timed(cmd, env={**os.environ, "NUMBA_CACHE_DIR": str(numba_cache)})
    metrics = json.loads((out / "metrics.json").read_text())
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": peak / 2**20,
            "count_s": metrics["cooccurrence"]["count_s"], "train_s": metrics["time_s"]["train"],
            "kernel": metrics.get("kernel", "numpy"), "losses": metrics["losses"],
            "vectors": str(out / "vectors.bin")}


def warm_numba_cache(tokens: Path, work: Path, numba_cache: Path) -> None:
    """Compile the kernel into `numba_cache` with a tiny run on the corpus's first lines."""
    head = work / "warm-up.txt"
    with open(tokens, encoding="utf-8") as src:
        head.write_text("".join(line for _, line in zip(range(2000), src)), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "nlpft", "embed", "train", "--algo", "glove", "--corpus", str(head),
                    "--out", str(work / "warm-up"), "--quiet", "--dim", "4", "--min-count", "1", "--epochs", "1"],
                   check=True, env={**os.environ, "NUMBA_CACHE_DIR": str(numba_cache)})


def quality(vectors: str) -> dict:
    from nlpft.embeddings.evaluation import evaluate
    from nlpft.embeddings.vectors_io import load_vectors

    scores = {s["name"]: s["score"] for s in evaluate(load_vectors(vectors))["sets"]}
    return {"analogy": scores["analogy"], "wordsim353": scores["wordsim353"], "simlex999": scores["simlex999"]}


def tokenize(specs: list[str], path: Path) -> int:
    from nlpft.data.registry import resolve_corpus
    from nlpft.embeddings.prepare import tokenize_to_file
    from nlpft.tokenization import WordTokenizer

    return tokenize_to_file(resolve_corpus(specs), WordTokenizer.untrained(), path).n_tokens


def summary(runs: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in runs) for key in ("wall_s", "cpu_s", "peak_rss_mib")}


def markdown(report: dict) -> str:
    s = report["summary"]
    lines = [f"# GloVe: nlpft against the Stanford C tools ({report['corpus']})", "",
             f"{report['machine']}; {report['tokens']:,} tokens, pre-tokenized; {report['settings']}; "
             f"{report['repeats']} interleaved repeat(s), medians", "",
             "| tool | wall s | CPU s | peak RSS MiB | analogy | WS-353 ρ | SimLex-999 ρ |", "|---|---:|---:|---:|---:|---:|---:|"]
    for who in ("nlpft", "C"):
        if who in s:
            q = report["quality"][who]
            label = f"nlpft ({report['runs']['nlpft'][0]['kernel']} kernel)" if who == "nlpft" else who
            lines.append(f"| {label} | {s[who]['wall_s']:.1f} | {s[who]['cpu_s']:.1f} | {s[who]['peak_rss_mib']:.0f} | "
                         f"{q['analogy']:.4f} | {q['wordsim353']:.3f} | {q['simlex999']:.3f} |")
    cold = report.get("cold_cache")
    if cold:
        lines.append(f"| nlpft, first run (compiles the kernel; 1 run) | {cold['wall_s']:.1f} | {cold['cpu_s']:.1f} | "
                     f"{cold['peak_rss_mib']:.0f} | | | |")
    if "C" in s:
        r = report["ratios"]
        lines += ["", f"nlpft speed vs C: **{r['speed_wall']:.2f}×** by wall time, **{r['speed_cpu']:.2f}×** by CPU time "
                      f"(C time / nlpft time); memory: nlpft's peak is **{r['memory']:.2f}×** C's largest step",
                  "", "C steps (first repeat): " + ", ".join(
                      f"{k} {v['cpu_s']:.1f} s CPU / {v['peak_rss_mib']:.0f} MiB"
                      for k, v in report["runs"]["C"][0]["steps"].items())]
    else:
        lines += ["", BUILD_HINT]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", nargs="+", default=["austen", "kjv"], help="paths or nlpft corpus names")
    p.add_argument("--glove-c", type=Path, help="folder with the built C binaries (GloVe's build/)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="threads for both tools")
    p.add_argument("--cpu", help="pin both tools to these CPUs (taskset list, e.g. 0)")
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--window", type=int, default=15)
    p.add_argument("--min-count", type=int, default=5)
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--c-memory", type=float, default=4.0, help="the C tools' -memory (GB; demo.sh's value)")
    p.add_argument("--skip-cold", action="store_true", help="no extra nlpft run with an empty numba cache")
    p.add_argument("--results", type=Path, default=HERE / "results")
    args = p.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {int(c) for c in args.cpu.split(",")})  # children inherit it
    if args.glove_c is not None and not all((args.glove_c / step).is_file() for step in C_STEPS):
        sys.exit(f"{args.glove_c} lacks one of {', '.join(C_STEPS)}; {BUILD_HINT}")
    if args.glove_c is None:
        print(BUILD_HINT, file=sys.stderr)

    tools = ["nlpft", "C"] if args.glove_c is not None else ["nlpft"]
    runs: dict[str, list[dict]] = {who: [] for who in tools}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tokens = work / "tokens.txt"
        n_tokens = tokenize(args.corpus, tokens)
        warm_cache = work / "numba-cache"
        warm_numba_cache(tokens, work, warm_cache)
        for r in range(args.repeats):
            for who in tools if r % 2 == 0 else tools[::-1]:
                harness.say("glove", f"repeat {r + 1}: {who}")
                out = work / f"{who}-{r}"
                run = (run_nlpft(tokens, out, args, warm_cache) if who == "nlpft"
                       else run_c(args.glove_c, tokens, out, args))
                if r == 0:
                    run["quality"] = quality(run["vectors"])
                runs[who].append(run)
                harness.say("glove", json.dumps({k: v for k, v in run.items() if k not in ("steps", "losses")}))
        cold = None
        if runs["nlpft"][0]["kernel"] == "numba" and not args.skip_cold:
            harness.say("glove", "nlpft with an empty numba cache")
            cold = run_nlpft(tokens, work / "nlpft-cold", args, work / "numba-cache-cold")
            harness.say("glove", json.dumps({k: v for k, v in cold.items() if k != "losses"}))
    s = {who: summary(rs) for who, rs in runs.items()}
    report = {
        "corpus": "+".join(args.corpus), "tokens": n_tokens, "machine": harness.machine(), "repeats": args.repeats,
        "settings": (f"dim {args.dim}, window {args.window}, min count {args.min_count}, {args.iterations} "
                     f"iterations, {args.threads} thread(s)" + (f", pinned to CPU {args.cpu}" if args.cpu else "")),
        "runs": runs, "summary": s, "quality": {who: rs[0]["quality"] for who, rs in runs.items()},
        "cold_cache": cold,
    }
    if "C" in s:
        report["ratios"] = {"speed_wall": s["C"]["wall_s"] / s["nlpft"]["wall_s"],
                            "speed_cpu": s["C"]["cpu_s"] / s["nlpft"]["cpu_s"],
                            "memory": s["nlpft"]["peak_rss_mib"] / s["C"]["peak_rss_mib"]}
    text = markdown(report)
    harness.write_results(args.results, report, text.rstrip("\n"), stem="glove_vs_c")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
