"""What the benchmark scripts share: running a command (a failure ends the benchmark with
the command's own error), running nlpft in a child process (so each measurement has its
own peak RSS and no state carried over), finding the data in ../shared/corpora, progress
lines, the line that says which machine the numbers come from, labeled splits written as
CSV, and the results files.

The scripts put this folder on `sys.path` and `import harness`. The reference scripts the
benchmarks compare against (plain_*.py, reference_loop.py) do not: they import nothing of
nlpft's on purpose.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str]) -> str:
    """stdout of `cmd`; exits with its stderr's tail if it fails."""
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"command failed ({result.returncode}): {' '.join(cmd)}\n{result.stderr[-3000:]}")
    return result.stdout


def nlpft(*args: str) -> str:
    """`python -m nlpft ARGS` in a child process; its stdout."""
    return run([sys.executable, "-m", "nlpft", *args])


def recorded_command(script: str, argv: list[str], folders: tuple[str, ...] = ()) -> str:
    """The command line as a results file records it: `python SCRIPT ARGS`, the folders
    given to --work, --results and the script's own `folders` options, and the file given
    to --config, being this machine's, so DIR and FILE."""
    shown = {"--work": "DIR", "--results": "DIR", "--config": "FILE", **dict.fromkeys(folders, "DIR")}
    return " ".join(["python", script, *(shown.get(argv[i - 1], arg) if i > 0 else arg
                                          for i, arg in enumerate(argv))])


def say(tag: str, message: str) -> None:
    print(f"[{tag}] {message}", file=sys.stderr, flush=True)


def shared_file(name: str) -> Path:
    """`name` in ../shared/corpora (or $NLPFT_CORPORA_DIR); exits with a message if absent."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # nlpft from this checkout when it is not installed
    from nlpft.data.registry import shared_corpora_dirs

    for folder in shared_corpora_dirs():
        if (folder / name).is_file():
            return folder / name
    sys.exit(f"{name} not found in ../shared/corpora or $NLPFT_CORPORA_DIR")


def machine() -> str:
    """CPU model and the features that decide its speed, threads, torch and Python
    versions, for the head of a results file (our machines change CPU kind between runs)."""
    import torch

    capped = kernel_limits()
    return (f"{cpu_model()} ({', '.join(cpu_features()) or 'no AVX2'}), {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}, Python {platform.python_version()}"
            + (f"; kernels limited by {capped}" if capped else ""))


#: environment variables that keep torch, oneDNN and MKL off instructions the CPU has
KERNEL_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def kernel_limits() -> str:
    """"NAME=value, ..." of the KERNEL_LIMITS set in this process's environment, or ""."""
    return ", ".join(f"{name}={os.environ[name]}" for name in KERNEL_LIMITS if os.environ.get(name))


# /proc/cpuinfo flag -> the name the results give it: what decides fp32 and bf16 speed
CPU_FEATURES = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX-512 BF16", "amx_bf16": "AMX"}


def _cpuinfo_field(name: str) -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return ""


def cpu_model() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    flags = set(_cpuinfo_field("flags").split())
    return [label for flag, label in CPU_FEATURES.items() if flag in flags]


def write_labeled_csvs(parts: dict, folder: Path) -> dict[str, Path]:
    """Each named list of labeled rows (anything with .text and .label) as FOLDER/NAME.csv
    with a text,label header; the paths by name."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in parts.items():
        paths[name] = folder / f"{name}.csv"
        with open(paths[name], "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows([r.text, r.label] for r in rows)
    return paths


def write_split(src: Path, folder: Path, seed: int = 13, task: str = "single") -> dict[str, Path]:
    """`nlpft split` of the labeled file `src` into `folder` (unless it holds that split
    already): the seeded, stratified split `nlpft finetune --seed SEED` makes (80/10/10 of
    a file of BBC News' size), as
    FOLDER/{train,valid,test}.csv (--task tag: .conll) and the training texts alone as
    train.txt (a corpus). Returns those paths by name: train, valid, test, train_text."""
    done = folder / "split.json"
    if not (done.is_file() and json.loads(done.read_text()).get("seed") == seed):
        nlpft("split", "--train", str(src), "--task", task, "--split-seed", str(seed), "--out", str(folder),
              *(["--overwrite"] if done.is_file() else []))
    suffix = "conll" if task == "tag" else "csv"
    paths = {name: folder / f"{name}.{suffix}" for name in ("train", "valid", "test")}
    return {**paths, "train_text": folder / "train.txt"}


def write_results(results_dir: Path, results: dict, report: str, stem: str = "results") -> None:
    """STEM.json (every measurement) and STEM.md (the report) in `results_dir`."""
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (results_dir / f"{stem}.md").write_text(report + "\n")
