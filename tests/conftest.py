"""Shared fixtures: small corpora written in the test, gensim's installed test data,
and `../shared/corpora` for slow tests (skipped when absent)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nlpft.data.registry import shared_corpora_dirs
from tests.hub_server import hanging_hub, hub_env, loopback_hub  # noqa: F401  (fixtures: the loopback Hub)

# keep tests on the 2-core CI machine predictable
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def story_lines(rng, count: int) -> list[str]:
    """`count` varied English-like lines drawn with `rng` (a random.Random): subword
    tokenizer trainers (BPE, WordPiece) need some variety to learn from."""
    subjects = ["the cat", "a dog", "my sister", "the old farmer", "our neighbour", "the king", "a young girl"]
    verbs = ["sees", "finds", "likes", "carries", "paints", "follows", "remembers"]
    objects = ["the river", "a red apple", "the letter", "an empty house", "the garden gate", "a small boat"]
    endings = [".", "!", "?", ", and then it rains.", " in the morning.", " before dinner."]
    return [" ".join([rng.choice(subjects), rng.choice(verbs), rng.choice(objects)]) + rng.choice(endings)
            for _ in range(count)]


def save_tiny_bert(folder: Path, tokenizer, hidden_size: int = 64, layers: int = 2, heads: int = 4,
                   positions: int = 64) -> Path:
    """A random BERT (seed 0; intermediate size twice the hidden size) saved with `tokenizer`
    as a Hugging Face model directory `folder`."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=layers,
                                 num_attention_heads=heads, intermediate_size=2 * hidden_size,
                                 max_position_embeddings=positions))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def no_hugging_face_hub(monkeypatch):
    """No test reaches the real Hugging Face Hub: HF_HUB_OFFLINE=1 unless a test points
    Hugging Face at the loopback Hub (the `hub_env` and `hanging_hub` fixtures)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


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


def first_checkpoint_written(out: Path) -> Callable[[], bool]:
    """A test of whether the training run writing `out` has a complete checkpoint (a folder
    with complete.json under `out`.partial/checkpoint)."""
    root = out.with_name(out.name + ".partial") / "checkpoint"
    return lambda: any(root.glob("*/complete.json"))


class Run:
    """A command started in the background with its stderr drained by a thread (a chatty
    run cannot block on a full pipe). Waits on events, never on the clock, so a busy
    machine only makes a test slower."""

    def __init__(self, cmd: list[str], timeout: float = 600):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.timeout = timeout
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=lambda: self._stderr.append(self.proc.stderr.read()), daemon=True)
        self._reader.start()

    def wait_until(self, ready: Callable[[], bool]) -> None:
        """Poll `ready()` while the command runs; fail if it ends first."""
        deadline = time.monotonic() + self.timeout
        while not ready():
            if self.proc.poll() is not None:
                pytest.fail(f"the command ended (code {self.proc.returncode}) before the awaited event:\n"
                            f"{self.finish()[1][-3000:]}")
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"no awaited event within {self.timeout:.0f} s")
            time.sleep(0.01)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def finish(self) -> tuple[int, str]:
        """Wait for the command to end; its exit code and stderr."""
        try:
            self.proc.wait(timeout=self.timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join()
        return self.proc.returncode, "".join(self._stderr)


def signal_when(cmd: list[str], ready: Callable[[], bool], sig: int) -> tuple[int, str]:
    """Run `cmd`, send it `sig` as soon as `ready()` holds; its exit code and stderr."""
    run = Run(cmd)
    run.wait_until(ready)
    run.signal(sig)
    return run.finish()


def kill_after_first_checkpoint(cmd: list[str], out: Path) -> None:
    """Run `cmd` (a training command writing `out`) and SIGKILL it as soon as its first
    complete checkpoint exists."""
    code, stderr = signal_when(cmd, first_checkpoint_written(out), signal.SIGKILL)
    assert code == -signal.SIGKILL, stderr[-3000:]


def sigterm_during_start_up(cmd: list[str], out: Path) -> str:
    """SIGTERM a training command writing `out` during its start-up: once `out`.partial exists
    (the command runs) and, as seen with the process paused, before its data is ready (no
    trainer runs yet). The run must end at once with 128 + SIGTERM, a one-line reason and no
    traceback, leaving neither `out` nor a partial directory. Returns its stderr."""
    partial = out.with_name(out.name + ".partial")
    run = Run(cmd)
    run.wait_until(partial.is_dir)
    run.signal(signal.SIGSTOP)
    before_training = not (partial / "data" / "complete").exists()
    run.signal(signal.SIGTERM)
    run.signal(signal.SIGCONT)
    code, stderr = run.finish()
    assert code == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith("stopped by SIGTERM"), stderr[-3000:]
    assert not out.exists()
    if before_training:
        assert not partial.exists(), "a run stopped before its first checkpoint leaves nothing behind"
    else:  # the start-up was over before the test could pause it: a trainer took the signal
        assert not partial.exists() or first_checkpoint_written(out)()
    return stderr
