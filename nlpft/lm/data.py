"""Data for the RNN language model: corpus -> id stream on disk -> (B, N) tensor -> BPTT windows.

Encoding. Every line that has at least one word becomes its word ids followed by `[EOS]`;
lines with no words (blank lines, "* * *" rules) are skipped, so "non-empty line" below
means "line with a word in it". Unknown words map to `[UNK]`. The ids are the tokenizer's
own (the words come from `WordTokenizer.words()`, the same normalise + split pipeline that
`encode()` runs in Rust, looked up in its vocabulary), written as little-endian uint32.

Storage and split. `nlpft.data.token_ids` writes the ids as uint32 `.npy` memory maps,
streaming, with a seeded train/valid/test split of 200-line blocks (the rule is in that
module's docstring). Whether there is enough data for a given batch size and BPTT length
is the caller's check: `num_windows(batchify(ids, B), bptt) >= 1`.

Batching (`batchify`, `bptt_windows`) follows PyTorch's word_language_model example,
batch-first; see the diagram at `batchify`.
"""

from __future__ import annotations

import itertools
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from nlpft.data.corpus import TextCorpus
from nlpft.data.token_ids import (
    DTYPE,
    EncodedSplits,
    ProgressFn,
    encode_splits,
    encode_whole,
)
from nlpft.errors import UserInputError
from nlpft.tokenization.words import WordTokenizer, select_vocabulary

EOS_TOKEN = "[EOS]"
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
    Rust round trip per line; identical ids for the word pipeline). A
    `token_ids.LineEncoder`."""

    #: word strings looked up per call, bounding the Python list held between lookups
    LOOKUP_TOKENS = 1 << 16

    def __init__(self, tokenizer: WordTokenizer):
        self.vocab_size = 0  # set below, once [EOS] is in
        self.eos_id = ensure_eos(tokenizer)
        self.unk_id = tokenizer.unk_id if tokenizer.unk_id is not None else 1
        vocab = tokenizer.backend.get_vocab(with_added_tokens=True)
        vocab[_EOS_KEY] = self.eos_id
        self.lookup = vocab.get
        self.words = tokenizer.words
        self.vocab_size = tokenizer.vocab_size

    def to_ids(self, tokens: list) -> np.ndarray:
        """Word strings (and `_EOS_KEY`s) -> uint32 ids."""
        return np.fromiter(map(self.lookup, tokens, itertools.repeat(self.unk_id)),
                           dtype=DTYPE, count=len(tokens))

    def blocks(self, lines: Iterable[str], block_lines: int) -> Iterator[tuple[np.ndarray, int]]:
        """(ids of `block_lines` consecutive non-empty lines, number of those lines); the last
        block may be shorter."""
        words = self.words
        encoded: list[np.ndarray] = []  # the block so far, as ids
        tokens: list = []  # word strings not yet looked up (~60 bytes each, so kept few)
        n = 0
        for line in lines:
            w = words(line)
            if not w:
                continue
            tokens += w
            tokens.append(_EOS_KEY)
            n += 1
            if len(tokens) >= self.LOOKUP_TOKENS:
                encoded.append(self.to_ids(tokens))
                tokens = []
            if n == block_lines:
                yield np.concatenate([*encoded, self.to_ids(tokens)]), n
                encoded, tokens, n = [], [], 0
        if n:
            yield np.concatenate([*encoded, self.to_ids(tokens)]), n



# -- encoding -------------------------------------------------------------------------------
def encode_corpus(corpus: TextCorpus, tokenizer: WordTokenizer, out_dir: Path, valid_fraction: float = 0.05,
                  test_fraction: float = 0.05, seed: int = 1, block_lines: int = 200,
                  progress: ProgressFn | None = None) -> EncodedSplits:
    """Encode `corpus` (line ids + [EOS], see the module docstring) into `out_dir`/train.npy,
    valid.npy, test.npy with `token_ids.encode_splits` (seeded split of `block_lines`-line
    blocks, splits.json beside them). Adds [EOS] to the tokenizer if it lacks it."""
    return encode_splits(corpus, _LineEncoder(tokenizer), out_dir, valid_fraction=valid_fraction,
                         test_fraction=test_fraction, seed=seed, block_lines=block_lines, progress=progress)


def encode_file(corpus: TextCorpus, tokenizer: WordTokenizer, path: Path,
                progress: ProgressFn | None = None) -> np.ndarray:
    """All of `corpus`, no split, encoded like `encode_corpus` (line ids + [EOS]) into the
    .npy file `path`; returns it memmapped. UserInputError when it has no words."""
    return encode_whole(corpus, _LineEncoder(tokenizer), path, progress=progress)


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
