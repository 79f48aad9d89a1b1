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
