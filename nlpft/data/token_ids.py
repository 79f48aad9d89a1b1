"""Token-id streams on disk: a corpus encoded once into uint32 `.npy` files.

Any model that reads a corpus as one long stream of ids (the RNN LM, transformer
pretraining) shares this: a `LineEncoder` turns blocks of lines into ids, and the
functions here write them out, split or whole, streaming.

Streaming. Nothing proportional to the corpus is held in memory: lines are read, encoded
and appended to the output files one block at a time. Each output is a valid `.npy` file
from the start: a fixed 128-byte header (rewritten with the final length at the end) and
then raw little-endian uint32, so it is filled by appending and opened with
`np.load(path, mmap_mode="r", allow_pickle=False)`. Files are written as `*.npy.partial`
and renamed when complete, so a killed run never leaves a truncated `.npy` behind.

Split rule (`encode_splits`). The non-empty lines (what counts as non-empty is the
encoder's call) are cut into consecutive blocks of `block_lines`; a
`numpy.random.default_rng(seed)` draws one uniform number per block, in corpus order:
`u < valid_fraction` -> valid, `u < valid_fraction + test_fraction` -> test, else train.
Held-out text is therefore contiguous prose (a block is never cut), and the same corpus +
seed + block_lines always gives the same split. With at least 3 blocks every split is
guaranteed non-empty: if the draw left a split empty, the last block of the split with the
most blocks (ties: train, then valid, then test) is moved there, once per empty split
(valid is filled before test, then train). With fewer than 3 blocks the same rule runs
again with one line per block; with fewer than 3 non-empty lines `UserInputError` is
raised ("corpus too small").
"""

from __future__ import annotations

import json
import os
import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from nlpft.data.corpus import TextCorpus
from nlpft.errors import UserInputError

SPLITS = ("train", "valid", "test")
#: non-empty lines per block of the train/valid/test split (see the module docstring)
BLOCK_LINES = 200
#: the fewest lines for which the split deals out blocks of BLOCK_LINES (fewer: one line each)
SPLIT_MIN_LINES = 3 * BLOCK_LINES
ProgressFn = Callable[[int], None]

DTYPE = np.dtype("<u4")
_HEADER_BYTES = 128  # magic(6) + version(2) + length(2) + dict padded with spaces + "\n"
#: lines per block where blocks decide nothing (counting, unsplit files): a block is held
#: in memory, and a line may be up to `corpus.MAX_LINE_CHARS` characters
_PLAIN_BLOCK_LINES = 256


class LineEncoder(Protocol):
    """Turns lines into ids, a block at a time."""

    vocab_size: int

    def blocks(self, lines: Iterable[str], block_lines: int) -> Iterator[tuple[np.ndarray, int]]:
        """(uint32 ids of `block_lines` consecutive non-empty lines, number of those lines);
        the last block may be shorter."""
        ...


# -- .npy files written by appending -----------------------------------------------------
def _npy_header(n_items: int) -> bytes:
    body = "{'descr': '%s', 'fortran_order': False, 'shape': (%d,), }" % (DTYPE.str, n_items)
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
        self.fh.seek(_HEADER_BYTES + start * DTYPE.itemsize)
        ids = np.frombuffer(self.fh.read((self.n_items - start) * DTYPE.itemsize), dtype=DTYPE)
        self.fh.seek(_HEADER_BYTES + start * DTYPE.itemsize)
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


def open_ids(path: Path) -> np.ndarray:
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
    def load(cls, out_dir: str | os.PathLike, vocab_size: int) -> EncodedSplits:
        """Reopen the files `encode_splits` wrote in `out_dir`."""
        out_dir = Path(out_dir)
        return cls(*(open_ids(out_dir / f"{name}.npy") for name in SPLITS), vocab_size=vocab_size)


def encode_splits(corpus: TextCorpus, encoder: LineEncoder, out_dir: Path, valid_fraction: float = 0.05,
                  test_fraction: float = 0.05, seed: int = 1, block_lines: int = BLOCK_LINES,
                  progress: ProgressFn | None = None) -> EncodedSplits:
    """Encode `corpus` with `encoder` into `out_dir`/train.npy, valid.npy, test.npy, split by
    blocks of `block_lines` non-empty lines with a seeded draw (the rule is in the module
    docstring), streaming. Also writes `out_dir`/splits.json (the rule's parameters and
    lines/blocks/tokens per split). `progress(n)` is told how many tokens each block added.

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
            "practice enough for several batches"
        )
    return EncodedSplits(*(open_ids(out_dir / f"{name}.npy") for name in SPLITS), vocab_size=encoder.vocab_size)


def _count(corpus: TextCorpus, encoder: LineEncoder) -> tuple[int, int]:
    n_tokens = n_lines = 0
    for ids, lines in encoder.blocks(corpus, _PLAIN_BLOCK_LINES):
        n_tokens += ids.size
        n_lines += lines
    return n_tokens, n_lines


def _encode_split(corpus, encoder: LineEncoder, out_dir: Path, valid_fraction: float, test_fraction: float,
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


def encode_whole(corpus: TextCorpus, encoder: LineEncoder, path: Path,
                 progress: ProgressFn | None = None) -> np.ndarray:
    """All of `corpus`, no split, encoded like `encode_splits` into the .npy file `path`;
    returns it memmapped. UserInputError when it has no tokens."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = _NpyAppender(path)
    try:
        for ids, n_lines in encoder.blocks(corpus, _PLAIN_BLOCK_LINES):
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
    return open_ids(path)
