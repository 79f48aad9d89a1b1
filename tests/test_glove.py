"""GloVe: co-occurrence counting against a brute-force reference, spilling, training, resume."""

from __future__ import annotations

import gc
import importlib.util

import numpy as np
import pytest

import nlpft.embeddings.cooccurrence as cooccurrence
from nlpft.embeddings.cooccurrence import CooccurrenceMatrix, count_cooccurrences
from nlpft.embeddings.glove import GloveConfig, GloveTrainer
from nlpft.errors import ResourceLimitError, UserInputError


def brute_force(sentences, vocab_size, window, symmetric=True):
    """What glove's C `cooccur` computes, one pair at a time."""
    X = np.zeros((vocab_size, vocab_size))
    for s in sentences:
        s = [int(w) for w in s]
        for j in range(len(s)):
            for d in range(1, window + 1):
                if j - d < 0:
                    break
                X[s[j - d], s[j]] += 1.0 / d
                if symmetric:
                    X[s[j], s[j - d]] += 1.0 / d
    return X


def zipf_lines(rng, vocab_size, n_lines, max_len, long_line=0):
    lines = [np.minimum(rng.zipf(1.3, rng.integers(0, max_len)) - 1, vocab_size - 1).astype(np.int32)
             for _ in range(n_lines)]
    if long_line:
        lines.append(np.minimum(rng.zipf(1.3, long_line) - 1, vocab_size - 1).astype(np.int64))
    return lines


def assert_same_matrix(m: CooccurrenceMatrix, ref: np.ndarray):
    pairs = set(zip(np.asarray(m.rows).tolist(), np.asarray(m.cols).tolist()))
    assert len(pairs) == m.nnz, "entries must be unique"
    assert m.nnz == int((ref != 0).sum())
    assert m.rows.dtype == np.int32 and m.cols.dtype == np.int32 and m.values.dtype == np.float32
    np.testing.assert_allclose(m.to_dense(), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("window", [1, 3, 15])
def test_counts_match_brute_force_small_vocab(symmetric, window):
    rng = np.random.default_rng(window)
    vocab_size = 40
    lines = [rng.integers(0, vocab_size, rng.integers(0, 30)).astype(np.int32) for _ in range(50)]
    lines += [np.array([3, 3, 3], np.int32), np.array([7], np.int64), np.array([], np.int32)]
    m = count_cooccurrences(lines, vocab_size, window=window, symmetric=symmetric)
    assert_same_matrix(m, brute_force(lines, vocab_size, window, symmetric))


def test_line_boundaries_are_respected():
    lines = [np.array([0, 1], np.int32), np.array([2, 3], np.int32)]
    X = count_cooccurrences(lines, 4, window=5).to_dense()
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 0] = expected[2, 3] = expected[3, 2] = 1.0
    np.testing.assert_array_equal(X, expected)


@pytest.mark.parametrize("symmetric", [True, False])
def test_sparse_path_and_long_lines_match_brute_force(symmetric):
    """A small cap: most pairs miss the dense table, lines are split across chunks."""
    rng = np.random.default_rng(7)
    vocab_size = 3000
    lines = zipf_lines(rng, vocab_size, 30, 300, long_line=12_000)
    cap = 4 << 20
    plan = cooccurrence._plan_memory(vocab_size, 10, cap, symmetric)
    assert plan.chunk_words < 12_000  # the long line really spans chunks
    m = count_cooccurrences(lines, vocab_size, window=10, symmetric=symmetric, max_memory_bytes=cap)
    assert_same_matrix(m, brute_force(lines, vocab_size, 10, symmetric))


def test_spilled_runs_merge_to_the_in_memory_result(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    vocab_size = 5000
    lines = [rng.integers(0, vocab_size, 2000).astype(np.int32) for _ in range(40)]
    in_memory = count_cooccurrences(lines, vocab_size, window=8)

    spills = []
    original = cooccurrence._Runs._spill

    def counting_spill(self, keys, values):
        spills.append(keys.size)
        original(self, keys, values)

    monkeypatch.setattr(cooccurrence._Runs, "_spill", counting_spill)
    progress = []
    spilled = count_cooccurrences(lines, vocab_size, window=8, max_memory_bytes=3 << 20,
                                  tmp_dir=tmp_path / "runs", progress=progress.append)
    assert len(spills) >= 3
    assert sum(progress) == sum(len(x) for x in lines)
    left = [p.name for p in (tmp_path / "runs").iterdir()]
    assert not [n for n in left if "runs" in n]  # spilled runs are cleaned up
    assert spilled.nnz == in_memory.nnz
    np.testing.assert_allclose(spilled.to_dense(), in_memory.to_dense(), rtol=1e-6)
    # a result too big for the cap is memory-mapped from a temp dir that dies with it
    assert isinstance(spilled.values, np.memmap)
    del spilled
    gc.collect()
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_small_corpus_is_counted_in_a_small_budget():
    """The budget follows what the corpus can fill, not the cap: 20k words in a 5,000-word
    vocabulary need a few MiB, not the 2 GiB cap (nor the 100 MiB table of every pair)."""
    vocab_size, window, cap = 5000, 15, 2 << 30
    plan = cooccurrence._plan_memory(vocab_size, window, cap, True, n_words=20_000)
    assert plan.cap <= 20_000 * window * 8 + (16 << 20)
    assert plan.dense_bytes + plan.raw_entries * 40 + plan.run_entries * 12 <= plan.cap
    # a huge corpus over a small vocabulary needs no more than the table of every pair
    # (5000 x 5001 / 2 cells of 8 bytes, ~100 MB) and the chunk temporaries
    assert cooccurrence._plan_memory(vocab_size, window, cap, True, n_words=10**9).cap < 160 << 20
    # a large corpus over a large vocabulary is bounded by the cap; without n_words the cap is the budget
    assert cooccurrence._plan_memory(200_000, window, cap, True, n_words=10**9).cap == cap
    assert cooccurrence._plan_memory(vocab_size, window, cap, True).cap == cap


def test_counts_do_not_depend_on_the_budget():
    rng = np.random.default_rng(5)
    vocab_size = 2000
    lines = zipf_lines(rng, vocab_size, 60, 400)
    n_words = sum(x.size for x in lines)
    sized = count_cooccurrences(lines, vocab_size, window=10, n_words=n_words)
    assert_same_matrix(sized, brute_force(lines, vocab_size, 10))


def test_one_shot_iterator_and_progress():
    lines = [np.arange(10, dtype=np.int32) % 4 for _ in range(5)]
    seen = []
    m = count_cooccurrences(iter(lines), 4, window=2, progress=seen.append)
    assert sum(seen) == 50
    assert_same_matrix(m, brute_force(lines, 4, 2))


def test_absurdly_small_cap_raises_resource_limit():
    with pytest.raises(ResourceLimitError, match="raise --max-memory"):
        count_cooccurrences([np.arange(10, dtype=np.int32)], 100_000, max_memory_bytes=1000)


def test_bad_ids_raise_user_input_error():
    with pytest.raises(UserInputError, match="outside"):
        count_cooccurrences([np.array([0, 5], np.int32)], 5)


def test_save_load_roundtrip_without_pickle(tmp_path):
    rng = np.random.default_rng(0)
    m = count_cooccurrences(zipf_lines(rng, 300, 20, 100), 300, window=5)
    m.save(tmp_path / "cooc")
    for mmap in (False, True):
        back = CooccurrenceMatrix.load(tmp_path / "cooc", mmap=mmap)
        assert back.vocab_size == 300 and back.nnz == m.nnz
        for name in ("rows", "cols", "values"):
            np.testing.assert_array_equal(np.asarray(getattr(back, name)), getattr(m, name))
    with pytest.raises(UserInputError):
        CooccurrenceMatrix.load(tmp_path / "missing")


# ---------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def small_cooc():
    rng = np.random.default_rng(11)
    return count_cooccurrences(zipf_lines(rng, 400, 200, 200), 400, window=5)


KERNELS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(
    importlib.util.find_spec("numba") is None, reason="numba is not installed"))]


@pytest.mark.parametrize("kernel", KERNELS)
def test_training_lowers_the_loss(small_cooc, kernel):
    trainer = GloveTrainer(small_cooc, GloveConfig(dim=16, epochs=6, batch_size=256, threads=2, kernel=kernel))
    vectors = trainer.train()
    assert vectors.shape == (400, 16) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    assert len(trainer.losses) == 6
    assert trainer.losses[-1] < 0.5 * trainer.losses[0]


@pytest.mark.parametrize("kernel", KERNELS)
def test_resume_after_epoch_k_equals_uninterrupted(small_cooc, tmp_path, kernel):
    cfg = GloveConfig(dim=8, epochs=4, batch_size=128, threads=1, seed=5, kernel=kernel)
    straight = GloveTrainer(small_cooc, cfg).train(checkpoint_dir=str(tmp_path / "a"))

    class Stop(Exception):
        pass

    def stop_after_two(epoch, loss):
        if epoch == 2:
            raise Stop

    first = GloveTrainer(small_cooc, cfg)
    with pytest.raises(Stop):
        first.train(checkpoint_dir=str(tmp_path / "b"), on_epoch_end=stop_after_two)
    resumed = GloveTrainer(small_cooc, cfg)
    pairs = []
    out = resumed.train(checkpoint_dir=str(tmp_path / "b"), resume=True, progress=pairs.append)
    assert sum(pairs) == 2 * small_cooc.nnz  # only epochs 3 and 4 ran
    np.testing.assert_array_equal(out, straight)
    assert resumed.losses == pytest.approx(first.losses + resumed.losses[2:])
    assert len(resumed.losses) == 4
    # only the latest checkpoint is kept, and no temp files linger
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "glove-epoch0004.json", "glove-epoch0004.safetensors"]


def test_resume_without_checkpoint_starts_fresh(small_cooc, tmp_path):
    cfg = GloveConfig(dim=8, epochs=1, threads=1)
    a = GloveTrainer(small_cooc, cfg).train(checkpoint_dir=str(tmp_path / "x"), resume=True)
    b = GloveTrainer(small_cooc, cfg).train()
    np.testing.assert_array_equal(a, b)


def test_checkpoint_mismatch_raises_user_input_error(small_cooc, tmp_path):
    ckpt = tmp_path / "ckpt"
    GloveTrainer(small_cooc, GloveConfig(dim=8, epochs=1, threads=1)).train(checkpoint_dir=str(ckpt))
    with pytest.raises(UserInputError, match=str(ckpt)):
        GloveTrainer(small_cooc, GloveConfig(dim=16, epochs=2, threads=1)).train(
            checkpoint_dir=str(ckpt), resume=True)
    other = CooccurrenceMatrix(small_cooc.rows, small_cooc.cols, small_cooc.values, 500)
    with pytest.raises(UserInputError, match="vocab_size"):
        GloveTrainer(other, GloveConfig(dim=8, epochs=2, threads=1)).train(
            checkpoint_dir=str(ckpt), resume=True)


@pytest.mark.parametrize("kernel", KERNELS)
def test_max_steps_stops_early(small_cooc, kernel):
    trainer = GloveTrainer(small_cooc, GloveConfig(dim=8, epochs=3, batch_size=100, threads=2, kernel=kernel))
    pairs = []
    trainer.train(max_steps=5, progress=pairs.append)
    assert len(trainer.losses) == 1 and trainer.epochs_done == 0
    assert sum(pairs) == 500


def test_counting_and_training_do_not_import_torch(tmp_path):
    """torch's import alone holds ~170 MiB resident, half of what the C tools need."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from nlpft.embeddings.cooccurrence import count_cooccurrences\n"
            "from nlpft.embeddings.glove import GloveConfig, GloveTrainer\n"
            "lines = [np.arange(50, dtype=np.int32) % 30 for _ in range(20)]\n"
            "m = count_cooccurrences(lines, 30, window=5, n_words=1000)\n"
            f"GloveTrainer(m, GloveConfig(dim=4, epochs=1, threads=2)).train(checkpoint_dir={str(tmp_path)!r})\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_repeated_rows_are_all_added():
    from nlpft.embeddings.glove import _distinct_rounds

    index = np.array([3, 3, 5, 7, 7, 7, 1, 3, 9])
    rows = np.arange(index.size * 2, dtype=np.float64).reshape(-1, 2)
    got = np.zeros((10, 2))
    for pick in _distinct_rounds(index):
        assert len(set(index[pick].tolist())) == pick.size  # distinct within a round
        got[index[pick]] += rows[pick]
    expected = np.zeros((10, 2))
    np.add.at(expected, index, rows)
    np.testing.assert_array_equal(got, expected)
