"""GloVe's compiled (numba) kernel against the numpy update, Hogwild threads, the fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nlpft.embeddings.cooccurrence import count_cooccurrences
from nlpft.embeddings.glove import GloveConfig, GloveTrainer
from nlpft.errors import UserInputError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_cooc():
    rng = np.random.default_rng(3)
    lines = [np.minimum(rng.zipf(1.4, rng.integers(2, 40)) - 1, 59).astype(np.int32) for _ in range(40)]
    return count_cooccurrences(lines, 60, window=4)


def test_numba_and_numpy_kernels_give_the_same_vectors(tiny_cooc):
    """One thread, one pair per numpy step: the same update in the same order."""
    pytest.importorskip("numba")
    config = dict(dim=8, epochs=3, batch_size=1, threads=1, seed=2, learning_rate=0.2)
    by_numpy = GloveTrainer(tiny_cooc, GloveConfig(kernel="numpy", **config))
    by_numba = GloveTrainer(tiny_cooc, GloveConfig(kernel="numba", **config))
    assert (by_numpy.kernel, by_numba.kernel) == ("numpy", "numba")
    expected = by_numpy.train()
    got = by_numba.train()
    assert not np.array_equal(got, by_numba.params[:60, :8] * 0)  # trained, not zero
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(by_numba.gradsq, by_numpy.gradsq, rtol=1e-4)
    assert by_numba.losses == pytest.approx(by_numpy.losses, rel=1e-4)
    assert by_numba.losses[-1] < by_numba.losses[0]


def test_numba_kernel_clips_gradients_like_numpy(tiny_cooc):
    """Large vectors make fdiff * w exceed the clip value: both kernels clip alike."""
    pytest.importorskip("numba")
    results = []
    for kernel in ("numpy", "numba"):
        trainer = GloveTrainer(tiny_cooc, GloveConfig(dim=4, epochs=1, batch_size=1, threads=1, kernel=kernel))
        trainer.params[:, :4] = 12.0  # diff ~ 576, fdiff * w ~ 7000 > 100
        results.append(trainer.train())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-4, atol=1e-5)


def test_numba_hogwild_threads_lower_the_loss(tiny_cooc):
    """Two chunks at once on two numba threads (NUMBA_NUM_THREADS=2 even on one CPU)."""
    pytest.importorskip("numba")
    code = ("import numpy as np, numba\n"
            "from nlpft.embeddings.cooccurrence import count_cooccurrences\n"
            "from nlpft.embeddings.glove import GloveConfig, GloveTrainer\n"
            "rng = np.random.default_rng(3)\n"
            "lines = [np.minimum(rng.zipf(1.4, 60) - 1, 199).astype(np.int32) for _ in range(200)]\n"
            "m = count_cooccurrences(lines, 200, window=4)\n"
            "t = GloveTrainer(m, GloveConfig(dim=8, epochs=5, threads=2, kernel='numba'))\n"
            "v = t.train()\n"
            "assert numba.get_num_threads() == 2, numba.get_num_threads()\n"
            "assert np.isfinite(v).all()\n"
            "print(t.losses)\n")
    env = {**os.environ, "NUMBA_NUM_THREADS": "2", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    losses = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(losses) == 5 and losses[-1] < 0.6 * losses[0]


def test_kernel_choice_is_checked(tiny_cooc, monkeypatch):
    with pytest.raises(UserInputError, match="kernel"):
        GloveTrainer(tiny_cooc, GloveConfig(kernel="cuda"))
    _block_numba(monkeypatch)
    with pytest.raises(UserInputError, match=r"nlpft\[fast\]"):
        GloveTrainer(tiny_cooc, GloveConfig(kernel="numba"))


def _block_numba(monkeypatch):
    """Make `import numba` fail in this process, as when it is not installed."""
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "nlpft.embeddings.glove_kernel", raising=False)


def test_without_numba_the_run_trains_with_numpy_and_says_how_to_get_numba(
        tmp_path, small_corpus, monkeypatch, capsys):
    from nlpft.cli.main import main

    _block_numba(monkeypatch)
    out = tmp_path / "glove"
    code = main(["embed", "train", "--algo", "glove", "--corpus", str(small_corpus), "--out", str(out),
                 "--min-count", "1", "--dim", "8", "--epochs", "2", "--threads", "1"])
    assert code == 0
    err = capsys.readouterr().err
    assert err.count("numba is not installed") == 1 and "pip install 'nlpft[fast]'" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kernel"] == "numpy"
    assert metrics["losses"][-1] < metrics["losses"][0]


def test_with_numba_the_run_says_it_uses_the_compiled_kernel(tmp_path, small_corpus, capsys):
    pytest.importorskip("numba")
    from nlpft.cli.main import main

    out = tmp_path / "glove"
    code = main(["embed", "train", "--algo", "glove", "--corpus", str(small_corpus), "--out", str(out),
                 "--min-count", "1", "--dim", "8", "--epochs", "2", "--threads", "1"])
    assert code == 0
    assert capsys.readouterr().err.count("compiled numba kernel") == 1
    assert json.loads((out / "metrics.json").read_text())["kernel"] == "numba"


def test_kernel_runs_when_numba_finds_no_writable_cache_directory(tmp_path):
    """numba caches next to the module, else in the user's cache directory; where neither
    is writable (simulated: the only locator allowed is the one for zip imports) its
    `cache=True` raises at import, and the kernel must compile in memory instead."""
    pytest.importorskip("numba")
    code = ("import numpy as np\n"
            "from nlpft.embeddings import glove_kernel as k\n"
            "p = np.full((4, 3), 0.1, np.float32); g = np.ones((4, 3), np.float32)\n"
            "cost = k.train_pairs(p, g, np.array([0], np.int32), np.array([1], np.int32),\n"
            "                     np.array([2.0], np.float32), np.array([0]), vocab_size=2, x_max=10.0,\n"
            "                     alpha=0.75, learning_rate=0.05, grad_clip=100.0, threads=1)\n"
            "assert cost > 0 and (g[[0, 3]] > 1).all(), (cost, g)\n")  # word 0, context 1
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(REPO), NUMBA_CACHE_LOCATOR_CLASSES="ZipCacheLocator")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
