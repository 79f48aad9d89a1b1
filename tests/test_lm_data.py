import json
import tracemalloc

import numpy as np
import pytest
import torch

from nlpft.data.corpus import TextCorpus
from nlpft.errors import UserInputError
from nlpft.lm.data import (
    EOS_TOKEN,
    EncodedSplits,
    batchify,
    bptt_windows,
    build_lm_tokenizer,
    encode_corpus,
    encode_file,
    ensure_eos,
    num_windows,
    shard_for_rank,
)
from nlpft.tokenization.words import WordTokenizer


# -- batchify / windows ---------------------------------------------------------------
def test_batchify_matches_the_diagram():
    letters = "a b c d e f g h i j k l m n o p q r s t u v w x y z".split()
    ids = np.arange(26, dtype=np.uint32)  # a..z; y, z do not fill a row and are dropped
    data = batchify(ids, 4)
    assert data.shape == (4, 6)
    rows = [" ".join(letters[i] for i in row) for row in data.long().tolist()]
    assert rows == ["a b c d e f", "g h i j k l", "m n o p q r", "s t u v w x"]


def test_batchify_reads_a_memmap(tmp_path):
    np.save(tmp_path / "ids.npy", np.arange(1000, dtype=np.uint32))
    ids = np.load(tmp_path / "ids.npy", mmap_mode="r", allow_pickle=False)
    data = batchify(ids, 8)
    assert data.shape == (8, 125) and data[3, 0].item() == 375 and data[7, 124].item() == 999
    # memory stays flat in corpus size: the rows are a view of the memmap, not a copy
    assert data.dtype == torch.uint32 and data.data_ptr() == ids.ctypes.data
    assert next(bptt_windows(data, 5))[1].dtype == torch.int64, "windows come out as int64"


def _windows(data, bptt, start=0):
    return [(p, x.clone(), y.clone()) for p, x, y in bptt_windows(data, bptt, start=start)]


def test_bptt_windows_cover_every_target_once():
    data = batchify(np.arange(4 * 25 + 3, dtype=np.uint32), 4).long()  # (4, 25): 24 targets per row
    windows = _windows(data, 7)
    assert [p for p, _, _ in windows] == [0, 7, 14, 21]
    assert [x.shape[1] for _, x, _ in windows] == [7, 7, 7, 3]  # last window shorter
    assert len(windows) == num_windows(data, 7)
    for p, x, y in windows:
        assert x.shape == y.shape and x.shape[0] == 4
        assert torch.equal(x, data[:, p : p + x.shape[1]])
        assert torch.equal(y, data[:, p + 1 : p + 1 + x.shape[1]])
        assert torch.equal(y, x + 1)  # consecutive ids: targets are inputs shifted by one
    assert torch.equal(torch.cat([y for _, _, y in windows], dim=1), data[:, 1:])
    assert torch.equal(torch.cat([x for _, x, _ in windows], dim=1), data[:, :-1])
    for (p, x, y), (q, x2, _) in zip(windows, windows[1:]):
        assert q == p + x.shape[1]
        assert torch.equal(x2[:, 0], y[:, -1])  # the stream carries across the boundary


def test_num_windows_edges():
    assert num_windows(torch.zeros(2, 0, dtype=torch.long), 5) == 0
    assert num_windows(torch.zeros(2, 1, dtype=torch.long), 5) == 0
    assert num_windows(torch.zeros(2, 2, dtype=torch.long), 5) == 1
    assert num_windows(torch.zeros(2, 11, dtype=torch.long), 5) == 2
    assert num_windows(torch.zeros(2, 12, dtype=torch.long), 5) == 3
    assert list(bptt_windows(torch.zeros(2, 1, dtype=torch.long), 5)) == []


def test_bptt_windows_resume_from_start():
    data = batchify(np.arange(4 * 25 + 3, dtype=np.uint32), 4)
    full = _windows(data, 7)
    resumed = _windows(data, 7, start=14)
    assert len(resumed) == 2
    for (p, x, y), (q, x2, y2) in zip(full[2:], resumed):
        assert p == q and torch.equal(x, x2) and torch.equal(y, y2)
    # a checkpoint records position + t; resuming there continues exactly
    p, x, _ = full[1]
    assert _windows(data, 7, start=p + x.shape[1])[0][0] == full[2][0]
    assert _windows(data, 7, start=24) == []


def test_shard_for_rank():
    data = torch.arange(6 * 10).view(6, 10)
    shards = [shard_for_rank(data, r, 3) for r in range(3)]
    assert all(s.shape == (2, 10) for s in shards)
    assert torch.equal(torch.cat(shards), data)
    assert torch.equal(shards[1], data[2:4])
    assert len({num_windows(s, 4) for s in shards}) == 1
    with pytest.raises(UserInputError, match="divisible"):
        shard_for_rank(data, 0, 4)
    with pytest.raises(ValueError):
        shard_for_rank(data, 3, 3)


# -- tokenizer -----------------------------------------------------------------------------
def test_ensure_eos_keeps_ids_and_is_idempotent(tmp_path):
    tok = WordTokenizer.from_vocabulary(["the", "cat", "sat"])
    before = tok.backend.get_vocab(with_added_tokens=True)
    eos = ensure_eos(tok)
    assert eos == len(before) == 5
    after = tok.backend.get_vocab(with_added_tokens=True)
    assert {k: after[k] for k in before} == before
    assert ensure_eos(tok) == eos and tok.vocab_size == 6
    assert tok.encode("the cat sat on it") == [2, 3, 4, 1, 1]
    tok.save(tmp_path)
    loaded = WordTokenizer.load(tmp_path)
    assert loaded.token_to_id(EOS_TOKEN) == eos and ensure_eos(loaded) == eos and loaded.vocab_size == 6


def test_build_lm_tokenizer_min_count(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("a a a b\n\nb c C\nd-d\n", encoding="utf-8")
    corpus = TextCorpus(path)
    tok = build_lm_tokenizer(corpus, min_count=2)  # a:3 b:2 c:2 (lowercased) d:2
    assert [tok.id_to_token(i) for i in range(tok.vocab_size)] == ["[PAD]", "[UNK]", "a", "b", "c", "d", EOS_TOKEN]
    tok = build_lm_tokenizer(corpus, min_count=3)
    assert tok.words_in_vocab()[0] == "a" and tok.token_to_id("b") is None
    assert tok.token_to_id(EOS_TOKEN) == tok.vocab_size - 1
    tok = build_lm_tokenizer(corpus, min_count=1, max_vocab=2, lowercase=False)
    assert [tok.id_to_token(i) for i in range(2, tok.vocab_size)] == ["a", "b", EOS_TOKEN]
    with pytest.raises(UserInputError, match="min-count"):
        build_lm_tokenizer(corpus, min_count=10)


# -- encoding ------------------------------------------------------------------------------
N_LINES = 500


@pytest.fixture
def numbered(tmp_path):
    """Lines 'n<i> the cat ...' (each identifiable by its first word), with blank lines and
    word-less lines mixed in, and a word outside the vocabulary."""
    lines = []
    for i in range(N_LINES):
        lines.append(f"N{i} the cat sat" + (" on the zebra" if i % 3 == 0 else "") + ".")
        if i % 10 == 0:
            lines.append("")
        if i % 37 == 0:
            lines.append("  * * *  ")
    path = tmp_path / "numbered.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tok = WordTokenizer.from_vocabulary([f"n{i}" for i in range(N_LINES)] + ["the", "cat", "sat", "on"])
    ensure_eos(tok)
    return TextCorpus(path), tok


def _segments(ids, eos):
    """The stream cut after each [EOS] (every segment is one line)."""
    ends = np.flatnonzero(ids == eos) + 1
    assert ends.size and ends[-1] == ids.size  # the stream ends on a line boundary
    return np.split(np.asarray(ids), ends[:-1])


def test_encode_corpus_splits_whole_lines_in_blocks(numbered, tmp_path):
    corpus, tok = numbered
    eos = tok.token_to_id(EOS_TOKEN)
    reported = []
    splits = encode_corpus(corpus, tok, tmp_path / "enc", valid_fraction=0.15, test_fraction=0.15,
                           seed=1, block_lines=10, progress=reported.append)
    assert isinstance(splits, EncodedSplits) and splits.vocab_size == tok.vocab_size
    expected = {f"n{i}": tok.encode(f"N{i} the cat sat" + (" on the zebra" if i % 3 == 0 else ""))
                + [eos] for i in range(N_LINES)}
    total = sum(len(v) for v in expected.values())
    lengths = splits.lengths()
    assert sum(lengths.values()) == total == sum(reported)
    assert all(n > 0 for n in lengths.values())
    seen = []
    for name in ("train", "valid", "test"):
        arr = np.load(tmp_path / "enc" / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        assert arr.dtype == np.uint32 and arr.ndim == 1 and isinstance(arr, np.memmap)
        assert getattr(splits, name).dtype == np.uint32 and np.array_equal(arr, getattr(splits, name))
        numbers = []
        for seg in _segments(arr, eos):
            key = tok.id_to_token(int(seg[0]))
            assert seg.tolist() == expected[key]  # a whole line, never cut
            numbers.append(int(key[1:]))
        # held-out text is contiguous: runs of 10 consecutive lines starting at a block boundary
        assert len(numbers) % 10 == 0
        for b in range(0, len(numbers), 10):
            run = numbers[b : b + 10]
            assert run[0] % 10 == 0 and run == list(range(run[0], run[0] + 10))
        seen += numbers
    assert sorted(seen) == list(range(N_LINES))  # every line exactly once
    info = json.loads((tmp_path / "enc" / "splits.json").read_text())
    assert info["splits"]["valid"]["tokens"] == lengths["valid"]
    assert sum(s["lines"] for s in info["splits"].values()) == N_LINES
    assert not list((tmp_path / "enc").glob("*.partial"))
    reopened = EncodedSplits.load(tmp_path / "enc", tok.vocab_size)
    assert reopened.lengths() == lengths


def test_encode_corpus_split_is_seeded(numbered, tmp_path):
    corpus, tok = numbered

    def run(seed, where):
        s = encode_corpus(corpus, tok, tmp_path / where, seed=seed, block_lines=5,
                          valid_fraction=0.2, test_fraction=0.2)
        return [np.array(getattr(s, n)) for n in ("train", "valid", "test")]

    a, b, c = run(1, "a"), run(1, "b"), run(2, "c")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])
    assert sum(x.size for x in a) == sum(x.size for x in c)


def test_encode_file_matches_tokenizer_encode(numbered, tmp_path):
    corpus, tok = numbered
    eos = tok.token_to_id(EOS_TOKEN)
    ids = encode_file(corpus, tok, tmp_path / "all.npy")
    expected = []
    for line in corpus:
        if tok.words(line):
            expected += tok.encode(line) + [eos]
    assert ids.dtype == np.uint32 and ids.tolist() == expected
    again = np.load(tmp_path / "all.npy", mmap_mode="r", allow_pickle=False)
    assert np.array_equal(again, ids)


def test_empty_splits_are_filled_from_the_largest(tmp_path):
    path = tmp_path / "three.txt"
    path.write_text("".join(f"w{i} x\n" for i in range(6)), encoding="utf-8")
    tok = WordTokenizer.from_vocabulary([f"w{i}" for i in range(6)] + ["x"])
    eos = ensure_eos(tok)
    # three blocks of 2 lines, all drawn as train: valid gets the last, test the one before
    s = encode_corpus(TextCorpus(path), tok, tmp_path / "o", valid_fraction=0, test_fraction=0, block_lines=2)
    first = {name: [tok.id_to_token(int(seg[0])) for seg in _segments(getattr(s, name), eos)]
             for name in ("train", "valid", "test")}
    assert first == {"train": ["w0", "w1"], "valid": ["w4", "w5"], "test": ["w2", "w3"]}


def test_small_corpus_falls_back_to_lines_then_errors(tmp_path):
    tok = WordTokenizer.from_vocabulary(["a", "b"])
    path = tmp_path / "small.txt"
    path.write_text("a b\n\na\nb a b\n", encoding="utf-8")  # 3 lines < one block of 200
    s = encode_corpus(TextCorpus(path), tok, tmp_path / "o")
    assert sorted(s.lengths().values()) == [2, 3, 4]
    assert json.loads((tmp_path / "o" / "splits.json").read_text())["block_lines"] == 1
    path.write_text("a b\n\n  \nb\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"corpus too small: 5 tokens in 2 non-empty lines"):
        encode_corpus(TextCorpus(path), tok, tmp_path / "o2")
    assert not list((tmp_path / "o2").glob("*.partial"))
    path.write_text("\n -- \n", encoding="utf-8")
    with pytest.raises(UserInputError, match="too small"):
        encode_corpus(TextCorpus(path), tok, tmp_path / "o3")
    with pytest.raises(UserInputError, match="no words"):
        encode_file(TextCorpus(path), tok, tmp_path / "o3" / "x.npy")
    with pytest.raises(UserInputError, match="fractions"):
        encode_corpus(TextCorpus(path), tok, tmp_path / "o4", valid_fraction=0.6, test_fraction=0.5)


def test_encoding_is_streamed(tmp_path):
    """~2M tokens encoded with a small, corpus-independent Python-level peak."""
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(5000)]
    path = tmp_path / "big.txt"
    n_words = 0
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(20):
            chunk = rng.integers(0, 6000, size=(5000, 19))  # ids >= 5000 become [UNK]
            fh.write("\n".join(" ".join(f"w{i}" for i in row) for row in chunk) + "\n")
            n_words += chunk.size
    tok = WordTokenizer.from_vocabulary(vocab)
    ensure_eos(tok)
    corpus = TextCorpus(path)
    tracemalloc.start()
    try:
        splits = encode_corpus(corpus, tok, tmp_path / "enc")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(splits.lengths().values()) == n_words + 100_000 == 2_000_000
    assert peak < 50 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    assert (splits.train == tok.unk_id).mean() == pytest.approx(1 / 6 * 19 / 20, abs=0.01)
