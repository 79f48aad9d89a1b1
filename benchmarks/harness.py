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
    """CPU, threads, torch and Python versions, for the head of a results file."""
    import torch

    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}, Python {platform.python_version()}")


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


def write_results(results_dir: Path, results: dict, report: str) -> None:
    """results.json (every measurement) and results.md (the report) in `results_dir`."""
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (results_dir / "results.md").write_text(report + "\n")
