"""Data for the RNN language model: corpus -> id stream on disk -> (B, N) tensor -> BPTT windows.

Encoding. Every line that has at least one word becomes its word ids followed by `[EOS]`;
lines with no words (blank lines, "* * *" rules) are skipped, so "non-empty line" below
means "line with a word in it". Unknown words map to `[UNK]`. The ids are the tokenizer's
own (the words come from `WordTokenizer.words()`, the same normalise + split pipeline that
`encode()` runs in Rust, looked up in its vocabulary), written as little-endian uint32.

Streaming. Nothing proportional to the corpus is held in memory: lines are read, encoded
and appended to the output files one block at a time. Each output is a valid `.npy` file
from the start: a fixed 128-byte header (rewritten with the final length at the end) and
then raw uint32, so it is filled by appending and opened with
`np.load(path, mmap_mode="r", allow_pickle=False)`. Files are written as `*.npy.partial`
and renamed when complete, so a killed run never leaves a truncated `.npy` behind.

Split rule (`encode_corpus`). The non-empty lines are cut into consecutive blocks of
`block_lines`; a `numpy.random.default_rng(seed)` draws one uniform number per block, in
corpus order: `u < valid_fraction` -> valid, `u < valid_fraction + test_fraction` -> test,
else train. Held-out text is therefore contiguous prose (a block is never cut), and the
same corpus + seed + block_lines always gives the same split. With at least 3 blocks
every split is guaranteed non-empty: if the draw left a split empty, the last block of
the split with the most blocks (ties: train, then valid, then test) is moved there, once
per empty split (valid is filled before test, then train). With fewer than 3 blocks the
same rule runs again with one line per block; with fewer than 3 non-empty lines
`UserInputError` is raised ("corpus too small"). A split therefore never ends with zero
tokens. Whether there is enough data for a given batch size and BPTT length is the
caller's check: `num_windows(batchify(ids, B), bptt) >= 1`.

Batching (`batchify`, `bptt_windows`) follows PyTorch's word_language_model example,
batch-first; see the diagram at `batchify`.
"""

from __future__ import annotations

import itertools
import json
import os
import warnings
import struct
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nlpft.data.corpus import TextCorpus
from nlpft.errors import UserInputError
from nlpft.tokenization.words import WordTokenizer, select_vocabulary

EOS_TOKEN = "[EOS]"
SPLITS = ("train", "valid", "test")
ProgressFn = Callable[[int], None]

_DTYPE = np.dtype("<u4")
_HEADER_BYTES = 128  # magic(6) + version(2) + length(2) + dict padded with spaces + "\n"
_EOS_KEY = object()  # stands for end-of-line in the word lists; no word can equal it


# -- tokenizer -----------------------------------------------------------------------------
def ensure_eos(tokenizer: WordTokenizer) -> int:
    """The id of `[EOS]`, added as a special token at the end of the vocabulary when the
    tokenizer lacks it. Existing ids never change; calling it again changes nothing."""
    eos = tokenizer.token_to_id(EOS_TOKEN)
    if eos is None:
        tokenizer.backend.add_special_tokens([EOS_TOKEN])
        eos = tokenizer.token_to_id(EOS_TOKEN)
    return eos


def build_lm_tokenizer(corpus: TextCorpus, min_count: int = 2, max_vocab: int | None = 50_000,
                       lowercase: bool = True) -> WordTokenizer:
    """A word-level tokenizer from one counting pass over `corpus`: words seen at least
    `min_count` times, the `max_vocab` most frequent (None or 0: no cap). `max_vocab`
    counts words only; the vocabulary adds `[PAD]` (0), `[UNK]` (1) and `[EOS]` (last)."""
    if min_count < 1:
        raise UserInputError(f"min_count must be at least 1 (got {min_count})")
    words = WordTokenizer.untrained(lowercase=lowercase).words
    counts: Counter = Counter()
    for batch in corpus.batches(4096):
        for line in batch:
            counts.update(words(line))
    if not counts:
        raise UserInputError(f"{corpus.path}: the corpus has no words once tokenized; pass a file with text in it")
    vocabulary = select_vocabulary(counts, min_count=min_count, max_vocab=max_vocab)
    if not vocabulary:
        raise UserInputError(
            f"{corpus.path}: no word occurs {min_count} times or more ({len(counts)} distinct words); "
            "lower --min-count or use a larger corpus"
        )
    tokenizer = WordTokenizer.from_vocabulary(vocabulary, lowercase=lowercase)
    ensure_eos(tokenizer)
    return tokenizer


class _LineEncoder:
    """Line -> word ids + [EOS], via `tokenizer.words()` and a dict lookup (faster than a
    Rust round trip per line; identical ids for the word pipeline)."""

    def __init__(self, tokenizer: WordTokenizer):
        self.eos_id = ensure_eos(tokenizer)
        self.unk_id = tokenizer.unk_id if tokenizer.unk_id is not None else 1
        vocab = tokenizer.backend.get_vocab(with_added_tokens=True)
        vocab[_EOS_KEY] = self.eos_id
        self.lookup = vocab.get
        self.words = tokenizer.words

    def to_ids(self, tokens: list) -> np.ndarray:
        """Word strings (and `_EOS_KEY`s) -> uint32 ids."""
        return np.fromiter(map(self.lookup, tokens, itertools.repeat(self.unk_id)),
                           dtype=_DTYPE, count=len(tokens))

    def blocks(self, lines: Iterable[str], block_lines: int) -> Iterator[tuple[np.ndarray, int]]:
        """(ids of `block_lines` consecutive non-empty lines, number of those lines); the last
        block may be shorter."""
        words = self.words
        tokens: list = []
        n = 0
        for line in lines:
            w = words(line)
            if not w:
                continue
            tokens += w
            tokens.append(_EOS_KEY)
            n += 1
            if n == block_lines:
                yield self.to_ids(tokens), n
                tokens, n = [], 0
        if n:
            yield self.to_ids(tokens), n


# -- .npy files written by appending -----------------------------------------------------
def _npy_header(n_items: int) -> bytes:
    body = "{'descr': '%s', 'fortran_order': False, 'shape': (%d,), }" % (_DTYPE.str, n_items)
    length = _HEADER_BYTES - 10
    body = body.ljust(length - 1) + "\n"
    assert len(body) == length
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", length) + body.encode("latin1")


class _NpyAppender:
    """A 1-D uint32 .npy file grown by appending; remembers where its last two blocks
    start so a block can be moved to another split at the end."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(path.name + ".partial")
        self.fh = open(self.tmp, "w+b")
        self.fh.write(_npy_header(0))
        self.n_items = 0
        self.n_lines = 0
        self.n_blocks = 0
        self.block_starts: deque = deque(maxlen=2)  # (item offset, lines) of the last blocks

    def append(self, ids: np.ndarray, n_lines: int) -> None:
        self.block_starts.append((self.n_items, n_lines))
        self.fh.write(ids.tobytes())
        self.n_items += ids.size
        self.n_lines += n_lines
        self.n_blocks += 1

    def pop_block(self) -> tuple[np.ndarray, int]:
        """Remove the last block (its ids and lines count)."""
        start, n_lines = self.block_starts.pop()
        self.fh.flush()
        self.fh.seek(_HEADER_BYTES + start * _DTYPE.itemsize)
        ids = np.frombuffer(self.fh.read((self.n_items - start) * _DTYPE.itemsize), dtype=_DTYPE)
        self.fh.seek(_HEADER_BYTES + start * _DTYPE.itemsize)
        self.fh.truncate()
        self.n_items, self.n_lines, self.n_blocks = start, self.n_lines - n_lines, self.n_blocks - 1
        return ids, n_lines

    def close(self) -> None:
        self.fh.seek(0)
        self.fh.write(_npy_header(self.n_items))
        self.fh.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)


def _open_ids(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)


# -- encoding -------------------------------------------------------------------------------
@dataclass
class EncodedSplits:
    """Train/valid/test id streams: 1-D uint32 memmaps of `.npy` files."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    vocab_size: int

    def lengths(self) -> dict:
        """Tokens per split: {"train": n, "valid": n, "test": n}."""
        return {name: int(getattr(self, name).shape[0]) for name in SPLITS}

    @classmethod
    def load(cls, out_dir: str | os.PathLike, vocab_size: int) -> "EncodedSplits":
        """Reopen the files `encode_corpus` wrote in `out_dir`."""
        out_dir = Path(out_dir)
        return cls(*(_open_ids(out_dir / f"{name}.npy") for name in SPLITS), vocab_size=vocab_size)


def encode_corpus(corpus: TextCorpus, tokenizer: WordTokenizer, out_dir: Path, valid_fraction: float = 0.05,
                  test_fraction: float = 0.05, seed: int = 1, block_lines: int = 200,
                  progress: ProgressFn | None = None) -> EncodedSplits:
    """Encode `corpus` (line ids + [EOS], see the module docstring) into `out_dir`/train.npy,
    valid.npy, test.npy, split by blocks of `block_lines` non-empty lines with a seeded draw
    (the rule is in the module docstring), streaming. Also writes `out_dir`/splits.json
    (the rule's parameters and lines/blocks/tokens per split). Adds [EOS] to the tokenizer
    if it lacks it. `progress(n)` is told how many tokens each block added.

    Raises UserInputError for bad fractions and for a corpus with fewer than 3 non-empty
    lines (some split would be empty)."""
    if not (0 <= valid_fraction and 0 <= test_fraction and valid_fraction + test_fraction < 1):
        raise UserInputError(
            f"valid and test fractions must be >= 0 and sum to less than 1 "
            f"(got {valid_fraction} and {test_fraction})"
        )
    if block_lines < 1:
        raise UserInputError(f"block_lines must be at least 1 (got {block_lines})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = _LineEncoder(tokenizer)
    result = _encode_split(corpus, encoder, out_dir, valid_fraction, test_fraction, seed, block_lines, progress)
    if result is None and block_lines > 1:
        # fewer than 3 blocks: the same rule with one line per block (a small corpus, so
        # the second pass is cheap); progress was already told about every token
        result = _encode_split(corpus, encoder, out_dir, valid_fraction, test_fraction, seed, 1, None)
    if result is None:
        n_tokens, n_lines = _count(corpus, encoder)
        raise UserInputError(
            f"{corpus.path}: corpus too small: {n_tokens} tokens in {n_lines} non-empty lines; "
            "need at least 3 non-empty lines (one each for train, valid and test), and in "
            "practice enough for several batch_size x bptt windows"
        )
    return EncodedSplits(*(_open_ids(out_dir / f"{name}.npy") for name in SPLITS), vocab_size=tokenizer.vocab_size)


def _count(corpus: TextCorpus, encoder: _LineEncoder) -> tuple[int, int]:
    n_tokens = n_lines = 0
    for ids, lines in encoder.blocks(corpus, 1 << 12):
        n_tokens += ids.size
        n_lines += lines
    return n_tokens, n_lines


def _encode_split(corpus, encoder: _LineEncoder, out_dir: Path, valid_fraction: float, test_fraction: float,
                  seed: int, block_lines: int, progress: ProgressFn | None) -> bool | None:
    """One pass of the split rule: True, or None (and no files) when there are fewer than 3 blocks."""
    writers = {name: _NpyAppender(out_dir / f"{name}.npy") for name in SPLITS}
    try:
        rng = np.random.default_rng(seed)
        cut_valid, cut_test = valid_fraction, valid_fraction + test_fraction
        for ids, n_lines in encoder.blocks(corpus, block_lines):
            u = rng.random()
            name = "valid" if u < cut_valid else "test" if u < cut_test else "train"
            writers[name].append(ids, n_lines)
            if progress is not None:
                progress(int(ids.size))
        if sum(w.n_blocks for w in writers.values()) < 3:
            for w in writers.values():
                w.abort()
            return None
        moved = []
        for empty in ("valid", "test", "train"):
            if writers[empty].n_blocks == 0:
                donor = max(SPLITS, key=lambda s: (writers[s].n_blocks, -SPLITS.index(s)))
                ids, n_lines = writers[donor].pop_block()
                writers[empty].append(ids, n_lines)
                moved.append({"from": donor, "to": empty, "tokens": int(ids.size), "lines": n_lines})
        info = {
            "rule": "blocks of block_lines non-empty lines; per block u = default_rng(seed).random(): "
                    "u < valid_fraction -> valid, u < valid_fraction + test_fraction -> test, else train",
            "seed": seed, "block_lines": block_lines, "valid_fraction": valid_fraction,
            "test_fraction": test_fraction, "moved_to_fill_empty_splits": moved,
            "splits": {name: {"tokens": w.n_items, "lines": w.n_lines, "blocks": w.n_blocks}
                       for name, w in writers.items()},
        }
        for w in writers.values():
            w.close()
    except BaseException:
        for w in writers.values():
            if not w.fh.closed:
                w.abort()
        raise
    (out_dir / "splits.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return True


def encode_file(corpus: TextCorpus, tokenizer: WordTokenizer, path: Path,
                progress: ProgressFn | None = None) -> np.ndarray:
    """All of `corpus`, no split, encoded like `encode_corpus` (line ids + [EOS]) into the
    .npy file `path`; returns it memmapped. UserInputError when it has no words."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoder = _LineEncoder(tokenizer)
    writer = _NpyAppender(path)
    try:
        for ids, n_lines in encoder.blocks(corpus, 1 << 12):
            writer.append(ids, n_lines)
            if progress is not None:
                progress(int(ids.size))
        if writer.n_items == 0:
            raise UserInputError(f"{corpus.path}: the corpus has no words once tokenized; pass a file with text in it")
        writer.close()
    except BaseException:
        if not writer.fh.closed:
            writer.abort()
        raise
    return _open_ids(path)


# -- batching -------------------------------------------------------------------------------
def batchify(ids: np.ndarray, batch_size: int) -> torch.Tensor:
    """Cut the id stream into `batch_size` contiguous rows: an int64 tensor (B, N).

    PyTorch's word_language_model recipe, batch-first. The stream
    `a b c d e f g h i j k l m n o p q r s t u v w x` with batch_size 4 becomes

        ┌ a b c d e f ┐   row 0
        │ g h i j k l │   row 1
        │ m n o p q r │   row 2
        └ s t u v w x ┘   row 3

    Each row is a contiguous stretch of text, read left to right one BPTT window of
    columns at a time; the hidden state of row r carries from one window to the next.
    Trailing tokens that do not fill a row (len(ids) % batch_size of them) are dropped.

    Memory: for uint32 ids (the memmaps `encode_corpus` writes) the result is a zero-copy
    uint32 view of the file, so memory stays flat in corpus size: the OS pages ids in as
    windows are read, and `bptt_windows` converts one window at a time to int64. Other
    arrays are copied into an int64 tensor.
    """
    if batch_size < 1:
        raise UserInputError(f"batch size must be at least 1 (got {batch_size})")
    n_cols = len(ids) // batch_size
    if isinstance(ids, np.ndarray) and ids.dtype == np.uint32:
        with warnings.catch_warnings():  # a read-only memmap: torch warns, we never write to it
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(ids[: n_cols * batch_size]).view(batch_size, n_cols)
    flat = np.empty(n_cols * batch_size, dtype=np.int64)
    flat[:] = ids[: n_cols * batch_size]
    return torch.from_numpy(flat).view(batch_size, n_cols)


def num_windows(data: torch.Tensor, bptt: int) -> int:
    """How many windows `bptt_windows(data, bptt)` yields from column 0 (0: too short)."""
    if bptt < 1:
        raise UserInputError(f"bptt must be at least 1 (got {bptt})")
    n_targets = data.size(1) - 1
    return max(0, -(-n_targets // bptt))


def bptt_windows(data: torch.Tensor, bptt: int, start: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(position, inputs, targets) over the columns of `data` (B, N), from column `start`.

    inputs = data[:, p : p + t], targets = data[:, p + 1 : p + 1 + t] with t = bptt (the
    last window is shorter), so over a full pass every column but the first is a target
    exactly once. `position` is p, the window's first column; the next window starts at
    p + t, which is what a checkpoint records to resume with `start=`. Each window is
    copied out as int64 (B x t ids): `data` itself may be a uint32 view of a memmap."""
    if bptt < 1:
        raise UserInputError(f"bptt must be at least 1 (got {bptt})")
    if start < 0:
        raise ValueError(f"start must be >= 0 (got {start})")
    last = data.size(1) - 1
    for position in range(start, last, bptt):
        t = min(bptt, last - position)
        yield position, data[:, position : position + t].long(), data[:, position + 1 : position + 1 + t].long()


def shard_for_rank(data: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rows of a batchified (B_total, N) tensor for one of `world_size` DDP processes: the
    contiguous slice rows [rank * B, (rank + 1) * B) with B = B_total / world_size. Every
    rank gets the same N columns, hence the same number of windows."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
    total = data.size(0)
    if total % world_size:
        raise UserInputError(
            f"batch size {total} is not divisible by the {world_size} processes; "
            f"use a multiple of {world_size}"
        )
    rows = total // world_size
    return data[rank * rows : (rank + 1) * rows]
