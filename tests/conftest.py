"""Shared fixtures: small corpora written in the test, gensim's installed test data,
and `../shared/corpora` for slow tests (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nlpft.data.registry import shared_corpora_dirs

# keep tests on the 2-core CI machine predictable
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def lee_path() -> Path:
    from gensim.test.utils import datapath

    return Path(datapath("lee_background.cor"))


def shared_corpus(name: str) -> Path:
    for folder in shared_corpora_dirs():
        if (folder / name).is_file():
            return folder / name
    pytest.skip(f"{name} not found in ../shared/corpora or $NLPFT_CORPORA_DIR")


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    """A few hundred lines of plain English with a repeated, learnable structure."""
    lines = []
    animals = ["cat", "dog", "horse", "cow", "sheep", "goat"]
    places = ["house", "barn", "field", "garden", "yard", "stable"]
    for i in range(400):
        a, p = animals[i % 6], places[(i * 7) % 6]
        lines.append(f"The {a} sleeps in the {p}. A {a} eats near the {p}, doesn't it?")
    path = tmp_path / "small.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def kill_after_first_checkpoint(cmd: list[str], out: Path, timeout: float = 240) -> None:
    """Run `cmd` (a training command writing `out`) and SIGKILL it as soon as its first
    complete checkpoint (one with complete.json) exists under `out`.partial/checkpoint."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = out.with_name(out.name + ".partial") / "checkpoint"
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if root.is_dir() and any((d / "complete.json").is_file() for d in root.iterdir()):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before its first checkpoint"
