"""benchmarks/harness.py: a results file says which CPU ran it and whether its kernels were
held to a lower instruction set than the CPU has."""

from __future__ import annotations

import importlib.util
from pathlib import Path

HARNESS = Path(__file__).parents[1] / "benchmarks" / "harness.py"


def _harness():
    spec = importlib.util.spec_from_file_location("benchmark_harness", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_machine_line_names_kernel_limits_only_when_set(monkeypatch):
    harness = _harness()
    for name in harness.KERNEL_LIMITS:
        monkeypatch.delenv(name, raising=False)
    plain = harness.machine()
    assert "kernels limited" not in plain and "torch" in plain and "threads" in plain
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert harness.machine() == plain + "; kernels limited by ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2"


def test_recorded_commands_hold_no_folder_of_this_machine():
    recorded = _harness().recorded_command("benchmarks/finetune/run.py",
                                           ["--work", "/tmp/w", "--results", "/tmp/r", "--config", "/x/e.yaml", "--no-plain"])
    assert recorded == "python benchmarks/finetune/run.py --work DIR --results DIR --config FILE --no-plain"
    assert (_harness().recorded_command("benchmarks/inference/run.py", ["--model", "/x/bbc", "--smoke"], ("--model",))
            == "python benchmarks/inference/run.py --model DIR --smoke")


def test_benchmark_splits_are_nlpft_split_made_once_per_seed(tmp_path, monkeypatch):
    """harness.write_split is `nlpft split` (the split finetune makes with --seed), reused
    while the folder holds that seed's split and made again for another seed."""
    import csv
    import os

    from tests.test_finetune import make_rows, write_csv

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HARNESS.parents[1]), os.environ.get("PYTHONPATH", "")]))
    harness = _harness()
    data = write_csv(tmp_path / "data.csv", make_rows(60, 1))
    paths = harness.write_split(data, tmp_path / "split", seed=3)
    def read(path):
        return list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))

    rows = {name: read(paths[name]) for name in ("train", "valid", "test")}
    counts = [len(rows[name]) for name in ("train", "valid", "test")]
    assert sum(counts) == 60 and counts[0] > counts[1] > 0 and counts[2] > 0
    assert not {row["text"] for row in rows["train"]} & {row["text"] for row in rows["test"]}
    assert paths["train_text"].read_text(encoding="utf-8").splitlines() == [row["text"] for row in rows["train"]]
    made = paths["train"].stat().st_mtime_ns
    assert harness.write_split(data, tmp_path / "split", seed=3) == paths and paths["train"].stat().st_mtime_ns == made
    other = harness.write_split(data, tmp_path / "split", seed=4)
    assert read(other["train"]) != rows["train"]
