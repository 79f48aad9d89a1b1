"""Word-word co-occurrence counts for GloVe, memory-bounded and vectorised.

What is counted is exactly what the Stanford C tool `cooccur` counts with `-symmetric 1`:
for every pair of words at distance d (1..window) inside one line, X[left, right] += 1/d and
X[right, left] += 1/d (with `symmetric=False` only X[left, right]).  Windows never cross the
boundary between two input arrays.

Why it is fast without a Python loop per pair: the corpus is consumed in chunks of ~1M words
laid end to end.  For each distance d the chunk gives all its pairs at once as two shifted
views `(ids[:-d], ids[d:])`.  Like the C code we split pairs in two by their frequency ranks:

* frequent pairs, (i+1)(j+1) < max_product, land in a dense float64 table whose rows are
  cut to the hyperbola (row r holds columns up to max_product / (r+1)), so a few hundred MiB
  cover ~90% of all pair occurrences.  They are added with one `np.add.at` per d.  float64 (as in the C code) because
  float32 sums of ~1e6 identical 1/d weights drift by percents for the most frequent pairs.
  In symmetric mode the table stores only the upper triangle (i <= j): X is symmetric, so
  half the memory covers twice the vocabulary.
* the rare remainder (the long tail, which is what grows with the corpus) is buffered as
  int64 keys `i*V + j`, with d packed into the low bits so that one plain `np.sort` (no
  argsort) orders them and a segment sum reduces them to a sorted "run" of unique pairs.
  When the runs outgrow their share of `max_memory_bytes` they are spilled to disk as
  `.npy` files and merged at the end by key range (np.searchsorted on memory-mapped runs),
  so peak memory depends on the cap and the vocabulary, never on the corpus size.
"""

from __future__ import annotations

import json
import os
import shutil
import queue
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nlpft.errors import ResourceLimitError, UserInputError

GIB = 1 << 30
META_FILE = "cooccurrence.json"
FORMAT_VERSION = 1

#: words per chunk; ~1M keeps the per-distance temporaries (~40 bytes a word) in the tens of MiB
MAX_CHUNK_WORDS = 1 << 20
MIN_CHUNK_WORDS = 4096
#: bytes of temporaries per chunk word while one distance is being processed
_BYTES_PER_CHUNK_WORD = 48
#: bytes per raw buffered sparse pair: the int64 key plus the sort copy and reduce temporaries
_BYTES_PER_RAW = 40
#: bytes per reduced sparse entry in a run (int64 key + float32 value)
_BYTES_PER_RUN_ENTRY = 12
#: bytes per vocabulary word for the dense-table index (row limits and offsets)
_BYTES_PER_VOCAB = 20
#: smallest sparse buffer worth running with
_MIN_SPARSE_ENTRIES = 1 << 14
#: share of the free budget given to the dense table of frequent pairs
_DENSE_SHARE = 0.2


@dataclass
class CooccurrenceMatrix:
    """Sparse X as three parallel arrays (COO); entries are unique, in no particular order.

    The arrays may be `np.memmap`s (large results, or `load(..., mmap=True)`); `_cleanup`
    keeps the temporary directory behind such memmaps alive exactly as long as the matrix.
    """

    rows: np.ndarray  # (nnz,) int32, word id i
    cols: np.ndarray  # (nnz,) int32, context id j
    values: np.ndarray  # (nnz,) float32, X_ij
    vocab_size: int
    _cleanup: object = field(default=None, repr=False, compare=False)

    @property
    def nnz(self) -> int:
        return int(self.values.shape[0])

    def save(self, directory: str | os.PathLike) -> None:
        """Write rows/cols/values as plain .npy files and the JSON (written last: its presence
        marks a complete save)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta_path = directory / META_FILE
        if meta_path.exists():
            meta_path.unlink()
        for name in ("rows", "cols", "values"):
            tmp = directory / f"{name}.tmp.npy"
            np.save(tmp, np.asarray(getattr(self, name)), allow_pickle=False)
            os.replace(tmp, directory / f"{name}.npy")
        meta = {"format_version": FORMAT_VERSION, "vocab_size": int(self.vocab_size), "nnz": self.nnz}
        tmp = directory / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp, meta_path)

    @classmethod
    def load(cls, directory: str | os.PathLike, mmap: bool = False) -> CooccurrenceMatrix:
        """Read a matrix written by `save`; `mmap=True` maps the arrays instead of reading them."""
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise UserInputError(
                f"{directory} holds no complete co-occurrence matrix ({META_FILE} is missing); "
                "delete the directory and count again")
        try:
            meta = json.loads(meta_path.read_text())
            arrays = {name: np.load(directory / f"{name}.npy", allow_pickle=False,
                                    mmap_mode="r" if mmap else None)
                      for name in ("rows", "cols", "values")}
        except (OSError, ValueError) as exc:
            raise UserInputError(f"cannot read the co-occurrence matrix in {directory} ({exc}); "
                                 "delete the directory and count again") from exc
        if meta.get("format_version") != FORMAT_VERSION or any(
                a.shape != (meta["nnz"],) for a in arrays.values()):
            raise UserInputError(f"the co-occurrence matrix in {directory} is damaged or from another "
                                 "version; delete the directory and count again")
        return cls(arrays["rows"], arrays["cols"], arrays["values"], int(meta["vocab_size"]))

    def to_dense(self) -> np.ndarray:
        """(V, V) float64 array, for tests and tiny vocabularies only."""
        out = np.zeros((self.vocab_size, self.vocab_size), np.float64)
        np.add.at(out, (np.asarray(self.rows), np.asarray(self.cols)), np.asarray(self.values))
        return out


# ----------------------------------------------------------------------------- memory plan


@dataclass
class _DenseLayout:
    """Where each frequent pair lives in the flat dense table.

    Row r (the smaller id in symmetric mode, the left word otherwise) holds columns
    [start_r, limit_r); pair (r, c) is at `base[r] + c`.  `limit` follows the C code's
    hyperbola (r+1)(c+1) < max_product, so frequent rows are long and rare rows empty.
    """

    max_product: int
    limit: np.ndarray  # (V,) int32: first column NOT in the table for this row
    base: np.ndarray  # (V,) int64: flat index of (r, 0)
    row_start: np.ndarray  # (V+1,) int64: flat index of row r's first stored cell
    size: int  # cells in the table

    @staticmethod
    def cells(vocab_size: int, max_product: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
        r = np.arange(vocab_size, dtype=np.int64)
        limit = np.minimum(vocab_size, (max_product - 1) // (r + 1))
        start = r if symmetric else np.zeros_like(r)
        limit = np.maximum(limit, start)
        return limit, limit - start

    @classmethod
    def build(cls, vocab_size: int, max_product: int, symmetric: bool) -> _DenseLayout:
        limit, width = cls.cells(vocab_size, max_product, symmetric)
        row_start = np.zeros(vocab_size + 1, np.int64)
        np.cumsum(width, out=row_start[1:])
        start = np.arange(vocab_size, dtype=np.int64) if symmetric else 0
        base = row_start[:-1] - start
        return cls(max_product, limit.astype(np.int32), base, row_start, int(row_start[-1]))

    @classmethod
    def fit(cls, vocab_size: int, budget_bytes: int, symmetric: bool) -> _DenseLayout:
        """Largest max_product whose table fits in budget_bytes (binary search; the cell count
        is a cheap vectorised sum)."""
        full = vocab_size * vocab_size + 1  # (V)(V) < max_product covers every pair
        lo, hi = 1, full
        if _DenseLayout.cells(vocab_size, full, symmetric)[1].sum() * 8 <= budget_bytes:
            return cls.build(vocab_size, full, symmetric)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _DenseLayout.cells(vocab_size, mid, symmetric)[1].sum() * 8 <= budget_bytes:
                lo = mid
            else:
                hi = mid
        return cls.build(vocab_size, lo, symmetric)


@dataclass
class _MemoryPlan:
    chunk_words: int
    dense_bytes: int
    raw_entries: int  # sparse pairs buffered before a sort-and-reduce
    run_entries: int  # reduced entries kept in memory before merging / spilling
    merge_entries: int  # entries handled at once by the final merge
    cap: int  # the budget: the user's max_memory_bytes, or less for a small corpus


def _useful_bytes(n_words: int, window: int, full_dense: int) -> int:
    """The most memory counting `n_words` words can put to use: one float64 cell for each
    pair occurrence (every occurrence a distinct pair, at worst), and never more than the
    table of every pair, plus the chunk temporaries.  A bigger budget only sits empty."""
    cells = min(n_words * window * 8, full_dense)
    return cells + _BYTES_PER_CHUNK_WORD * int(np.clip(n_words, MIN_CHUNK_WORDS, MAX_CHUNK_WORDS))


def _plan_memory(vocab_size: int, window: int, max_memory_bytes: int, symmetric: bool,
                 n_words: int | None = None) -> _MemoryPlan:
    """Split the budget between the dense table, the chunk temporaries and the sparse buffers,
    or raise ResourceLimitError when even the smallest workable setup does not fit.

    The budget is the cap, or less when the corpus size `n_words` is known: a small corpus
    gets a small budget (see `_useful_bytes`), a large one is bounded by the cap."""
    full_dense = int(_DenseLayout.cells(vocab_size, vocab_size * vocab_size + 1, symmetric)[1].sum()) * 8
    min_dense = min(full_dense, 1 << 20)
    fixed = _BYTES_PER_VOCAB * vocab_size + _BYTES_PER_CHUNK_WORD * MIN_CHUNK_WORDS
    minimum = fixed + min_dense + _MIN_SPARSE_ENTRIES * (_BYTES_PER_RAW + 2 * _BYTES_PER_RUN_ENTRY)
    if max_memory_bytes < minimum:
        raise ResourceLimitError(
            f"counting co-occurrences needs ~{minimum / GIB:.3g} GiB for a vocabulary of "
            f"{vocab_size:,} words (the cap is {max_memory_bytes / GIB:.3g} GiB); raise --max-memory "
            "or lower --max-vocab / raise --min-count")
    if n_words is not None:
        max_memory_bytes = max(minimum, min(max_memory_bytes, _useful_bytes(n_words, window, full_dense)))
    chunk_words = int(np.clip(max_memory_bytes // 10 // _BYTES_PER_CHUNK_WORD, MIN_CHUNK_WORDS,
                              MAX_CHUNK_WORDS))
    free = max_memory_bytes - _BYTES_PER_VOCAB * vocab_size - _BYTES_PER_CHUNK_WORD * chunk_words
    dense_bytes = int(min(full_dense, max(min_dense, _DENSE_SHARE * free)))
    sparse = free - dense_bytes
    # the raw buffer and the in-memory runs share what is left; the run budget is also what the
    # final merge may use at once (raw buffer freed by then)
    raw_entries = max(_MIN_SPARSE_ENTRIES, int(0.35 * sparse) // _BYTES_PER_RAW)
    run_entries = max(2 * _MIN_SPARSE_ENTRIES, int(0.6 * sparse) // _BYTES_PER_RUN_ENTRY)
    # ~2M entries per merge block already amortise the per-block overhead; bigger blocks only
    # add to the peak (the block's temporaries take ~60 bytes an entry)
    merge_entries = int(np.clip(int(0.3 * sparse) // 64, _MIN_SPARSE_ENTRIES, 1 << 21))
    return _MemoryPlan(chunk_words, dense_bytes, raw_entries, run_entries, merge_entries, max_memory_bytes)


# ----------------------------------------------------------------------------- sparse runs


def _reduce_sorted(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum values of equal adjacent keys (keys sorted); returns unique keys and float32 sums."""
    if keys.size == 0:
        return keys, values.astype(np.float32)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    return keys[starts], np.add.reduceat(values, starts).astype(np.float32, copy=False)


class _Runs:
    """Sorted runs of unique (key, value) sparse entries, in memory or spilled to disk."""

    def __init__(self, plan: _MemoryPlan, tmp_root: Path | None):
        self.plan = plan
        self._tmp_root = tmp_root
        self._tmp: Path | None = None
        self.memory: list[tuple[np.ndarray, np.ndarray]] = []
        self.disk: list[tuple[np.ndarray, np.ndarray]] = []
        self.spills = 0

    @property
    def memory_entries(self) -> int:
        return sum(k.size for k, _ in self.memory)

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        if keys.size == 0:
            return
        self.memory.append((keys, values))
        if self.memory_entries > self.plan.run_entries:
            merged = self._merge_in_memory()
            # merging collapses duplicates between runs; only spill what still takes room
            if merged[0].size > self.plan.run_entries // 2:
                self._spill(*merged)
                self.memory = []
            else:
                self.memory = [merged]

    def _merge_in_memory(self) -> tuple[np.ndarray, np.ndarray]:
        keys = np.concatenate([k for k, _ in self.memory])
        values = np.concatenate([v for _, v in self.memory])
        self.memory = []
        order = np.argsort(keys, kind="stable")
        return _reduce_sorted(keys[order], values[order])

    def _spill(self, keys: np.ndarray, values: np.ndarray) -> None:
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="nlpft-cooc-runs-", dir=self._tmp_root))
        k_path = self._tmp / f"run{self.spills:05d}.keys.npy"
        v_path = self._tmp / f"run{self.spills:05d}.values.npy"
        np.save(k_path, keys, allow_pickle=False)
        np.save(v_path, values, allow_pickle=False)
        self.disk.append((np.load(k_path, mmap_mode="r"), np.load(v_path, mmap_mode="r")))
        self.spills += 1

    def all_runs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.disk + self.memory

    def close(self) -> None:
        self.memory, self.disk = [], []
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


# ----------------------------------------------------------------------------- counting


class _Counter:
    """State of one counting pass: the dense table, the raw sparse buffer and the runs."""

    def __init__(self, vocab_size: int, window: int, symmetric: bool, plan: _MemoryPlan,
                 tmp_root: Path | None):
        self.V = vocab_size
        self.window = window
        self.symmetric = symmetric
        self.plan = plan
        self.layout = _DenseLayout.fit(vocab_size, plan.dense_bytes, symmetric)
        # one extra cell at the end swallows the pairs that are not dense (masked out)
        self.trash = self.layout.size
        self.dense = np.zeros(self.layout.size + 1, dtype=np.float64)
        self.d_bits = max(1, int(window).bit_length())
        if (vocab_size * vocab_size) >= (1 << (63 - self.d_bits)):
            raise UserInputError(f"a vocabulary of {vocab_size:,} words is too large to count "
                                 "co-occurrences; lower --max-vocab or raise --min-count")
        # weight of each distance d, indexed by the low bits of a packed key: (2**d_bits,)
        self.inv_d = np.zeros(1 << self.d_bits, np.float64)
        self.inv_d[1:] = 1.0 / np.arange(1, 1 << self.d_bits, dtype=np.float64)
        self.raw: list[np.ndarray] = []
        self.raw_size = 0
        self.runs = _Runs(plan, tmp_root)
        # dense additions run in one background thread; the bounded queue caps the key
        # arrays in flight (each chunk_words * 8 bytes)
        self._queue: queue.Queue = queue.Queue(maxsize=3)
        self._adder: threading.Thread | None = None
        self._adder_error: BaseException | None = None
        self.pos_dtype = np.uint8 if window < 255 else np.int32
        # the last `window` words of the previous chunk, kept as left context
        self.carry_ids = np.zeros(0, np.int32)
        self.carry_pos = np.zeros(0, self.pos_dtype)

    # -- per chunk

    def add_chunk(self, pieces: list[np.ndarray], piece_pos: list[int]) -> None:
        """Count the pairs whose right word is in `pieces` (consecutive slices of lines;
        piece_pos[k] is the offset of piece k inside its line, 0 for a line start)."""
        lengths = np.fromiter((p.size for p in pieces), np.int64, len(pieces))
        new = np.concatenate(pieces).astype(np.int32, copy=False)
        # position of each word inside its line, clipped to the window: a pair at distance d
        # stays inside one line iff its right word has pos >= d
        first = np.cumsum(lengths) - lengths  # (pieces,) index of each piece's first word
        pos = np.arange(new.size, dtype=np.int64) - np.repeat(first - np.asarray(piece_pos), lengths)
        pos = np.minimum(pos, self.window).astype(self.pos_dtype)
        ids = np.concatenate((self.carry_ids, new))
        pos = np.concatenate((self.carry_pos, pos))
        skip = self.carry_ids.size  # right words in the carried context were counted already
        self.carry_ids = ids[-self.window:].copy()
        self.carry_pos = pos[-self.window:].copy()

        limit, base = self.layout.limit, self.layout.base
        n = ids.size
        for d in range(1, self.window + 1):
            s = max(d, skip)
            if s >= n:
                break
            left, right = ids[s - d:n - d], ids[s:n]
            if self.symmetric:
                row, col = np.minimum(left, right), np.maximum(left, right)
            else:
                row, col = left, right
            dense = col < limit[row]
            inside = pos[s:n] >= d
            dense &= inside
            flat = base[row]
            flat += col
            np.putmask(flat, ~dense, self.trash)
            self._add_dense(flat, 1.0 / d)
            sparse = ~dense
            sparse &= inside
            key = row[sparse].astype(np.int64)
            key *= self.V
            key += col[sparse]
            key <<= self.d_bits
            key |= d
            self._buffer(key)

    def _add_dense(self, flat: np.ndarray, weight: float) -> None:
        """Queue `table[flat] += weight` for the adder thread (started on first use)."""
        if self._adder is None:
            self._adder = threading.Thread(target=self._adder_loop, daemon=True)
            self._adder.start()
        self._queue.put((flat, weight))

    def _adder_loop(self) -> None:
        """Background scatter-add into the dense table: torch releases the GIL inside
        index_add_, so this overlaps with the numpy key building of the next distances.
        One thread only, so the float64 sums are race-free and deterministic."""
        while True:
            item = self._queue.get()
            if item is None:
                return
            flat, weight = item
            if self._adder_error is None:
                try:
                    np.add.at(self.dense, flat, weight)
                except BaseException as exc:  # reported by drain()
                    self._adder_error = exc

    def drain(self) -> None:
        """Wait for queued dense additions and stop the adder thread."""
        if self._adder is not None:
            self._queue.put(None)
            self._adder.join()
            self._adder = None
        if self._adder_error is not None:
            raise self._adder_error

    def _buffer(self, packed: np.ndarray) -> None:
        if packed.size == 0:
            return
        self.raw.append(packed)
        self.raw_size += packed.size
        if self.raw_size >= self.plan.raw_entries:
            self.flush_raw()

    def flush_raw(self) -> None:
        """Sort the packed (pair, d) keys, turn d into weight 1/d and sum per pair: a new run."""
        if not self.raw:
            return
        packed = np.concatenate(self.raw)
        self.raw, self.raw_size = [], 0
        packed.sort()
        weights = self.inv_d[packed & ((1 << self.d_bits) - 1)]
        packed >>= self.d_bits
        self.runs.add(*_reduce_sorted(packed, weights))

    # -- final merge

    def finish(self, out_dir_root: Path | None) -> CooccurrenceMatrix:
        """Merge dense table and sparse runs row block by row block into the output arrays."""
        self.drain()
        self.flush_raw()
        self.carry_ids = self.carry_ids[:0]
        runs = self.runs.all_runs()
        V = self.V
        layout = self.layout
        dense = self.dense[:-1]

        # per-row entry counts (upper bounds for dense) decide the row blocks
        row_keys = np.arange(V + 1, dtype=np.int64) * V
        per_row = np.diff(layout.row_start).astype(np.int64)
        for keys, _ in runs:
            per_row += np.diff(np.searchsorted(keys, row_keys))
        upper = int(per_row.sum())
        mirror = 2 if self.symmetric else 1
        out_bytes = mirror * upper * 12
        in_use = layout.size * 8 + sum(k.size * 12 for k, _ in self.runs.memory)
        out_tmp = None
        if in_use + out_bytes <= self.plan.cap:
            rows = np.empty(mirror * upper, np.int32)
            cols = np.empty(mirror * upper, np.int32)
            values = np.empty(mirror * upper, np.float32)
        else:
            out_tmp = Path(tempfile.mkdtemp(prefix="nlpft-cooc-", dir=out_dir_root))
            rows, cols, values = (np.lib.format.open_memmap(out_tmp / f"{n}.npy", mode="w+", dtype=t,
                                                            shape=(max(mirror * upper, 1),))
                                  for n, t in (("rows", np.int32), ("cols", np.int32),
                                               ("values", np.float32)))

        cum = np.concatenate(([0], np.cumsum(per_row)))
        filled = 0
        r0 = 0
        while r0 < V:
            # as many rows as fit in the merge budget (at least one)
            r1 = int(np.searchsorted(cum, cum[r0] + self.plan.merge_entries, side="right")) - 1
            r1 = min(V, max(r1, r0 + 1))
            # dense part of rows r0..r1: nonzero cells back to (row, col)
            block = dense[layout.row_start[r0]:layout.row_start[r1]]
            nz = np.flatnonzero(block) + layout.row_start[r0]
            d_row = (np.searchsorted(layout.row_start, nz, side="right") - 1)
            d_col = (nz - layout.base[d_row])
            d_val = dense[nz]
            # sparse part: the key range of these rows in every run, merged
            parts_k, parts_v = [], []
            for keys, vals in runs:
                a, b = np.searchsorted(keys, [r0 * V, r1 * V])
                parts_k.append(np.asarray(keys[a:b]))
                parts_v.append(np.asarray(vals[a:b]))
            s_keys = np.concatenate(parts_k) if parts_k else np.zeros(0, np.int64)
            s_vals = np.concatenate(parts_v) if parts_v else np.zeros(0, np.float32)
            if len(runs) > 1:
                order = np.argsort(s_keys, kind="stable")
                s_keys, s_vals = _reduce_sorted(s_keys[order], s_vals[order])
            b_row = np.concatenate((d_row.astype(np.int32), (s_keys // V).astype(np.int32)))
            b_col = np.concatenate((d_col.astype(np.int32), (s_keys % V).astype(np.int32)))
            b_val = np.concatenate((d_val, s_vals)).astype(np.float32)
            n = b_row.size
            if self.symmetric:
                # the table holds i <= j once; X[i, j] = X[j, i], and the C code adds both
                # directions even for i == j, so the diagonal counts twice
                diag = b_row == b_col
                b_val[diag] *= 2
                off = ~diag
                m = int(off.sum())
                rows[filled:filled + n] = b_row
                cols[filled:filled + n] = b_col
                values[filled:filled + n] = b_val
                rows[filled + n:filled + n + m] = b_col[off]
                cols[filled + n:filled + n + m] = b_row[off]
                values[filled + n:filled + n + m] = b_val[off]
                n += m
            else:
                rows[filled:filled + n] = b_row
                cols[filled:filled + n] = b_col
                values[filled:filled + n] = b_val
            filled += n
            r0 = r1

        self.runs.close()
        self.dense = None
        result = CooccurrenceMatrix(rows[:filled], cols[:filled], values[:filled], V)
        if out_tmp is not None:
            result._cleanup = weakref.finalize(result, shutil.rmtree, out_tmp, True)
        return result


def _iter_chunks(sentences: Iterable[np.ndarray], vocab_size: int, chunk_words: int):
    """Group lines into chunks of ~chunk_words words; split lines longer than that.

    Yields (pieces, piece_pos, n_words): piece_pos[k] is where piece k starts inside its line,
    which is what lets a long line continue across chunks without losing or repeating pairs.
    """
    pieces: list[np.ndarray] = []
    piece_pos: list[int] = []
    size = 0
    for line_no, sent in enumerate(sentences):
        sent = np.asarray(sent)
        if sent.ndim != 1 or sent.dtype.kind not in "iu":
            raise UserInputError(f"line {line_no}: expected a 1-D integer array of word ids, got "
                                 f"{sent.dtype} with shape {sent.shape}")
        if sent.size == 0:
            continue
        lo, hi = int(sent.min()), int(sent.max())
        if lo < 0 or hi >= vocab_size:
            raise UserInputError(f"line {line_no}: word id {lo if lo < 0 else hi} is outside "
                                 f"[0, {vocab_size}); drop out-of-vocabulary words before counting")
        start = 0
        while start < sent.size:
            take = min(sent.size - start, chunk_words - size)
            pieces.append(sent[start:start + take])
            piece_pos.append(start)
            size += take
            start += take
            if size >= chunk_words:
                yield pieces, piece_pos, size
                pieces, piece_pos, size = [], [], 0
    if pieces:
        yield pieces, piece_pos, size


def count_cooccurrences(sentences: Iterable[np.ndarray], vocab_size: int, window: int = 15,
                        symmetric: bool = True, max_memory_bytes: int = 2 << 30,
                        tmp_dir: str | os.PathLike | None = None,
                        progress: Callable[[int], None] | None = None,
                        n_words: int | None = None) -> CooccurrenceMatrix:
    """Count weighted co-occurrences (1/distance, window words each side) of id arrays.

    `sentences` yields 1-D integer arrays of ids in [0, vocab_size), one per line; windows
    stop at line ends.  Memory stays under about `max_memory_bytes` (spilling sorted runs to
    `tmp_dir`, a private temp dir removed afterwards); ResourceLimitError says what to change
    when even the minimum does not fit.  `progress(n)` is told how many words were consumed.
    If the result itself would not fit in the cap it is returned memory-mapped from a temp
    directory that lives as long as the returned matrix.  `n_words`, the number of words
    `sentences` holds when known, lets a small corpus count in a budget its size needs
    instead of the whole cap.
    """
    if vocab_size <= 0:
        raise UserInputError("the vocabulary is empty; lower --min-count or use a larger corpus")
    if window < 1:
        raise UserInputError(f"--window must be at least 1 (got {window})")
    plan = _plan_memory(vocab_size, window, int(max_memory_bytes), symmetric, n_words)
    tmp_root = Path(tmp_dir) if tmp_dir is not None else None
    if tmp_root is not None:
        tmp_root.mkdir(parents=True, exist_ok=True)
    counter = _Counter(vocab_size, window, symmetric, plan, tmp_root)
    try:
        for pieces, piece_pos, n_words in _iter_chunks(sentences, vocab_size, plan.chunk_words):
            counter.add_chunk(pieces, piece_pos)
            if progress is not None:
                progress(n_words)
        return counter.finish(tmp_root)
    finally:
        counter.drain()
        counter.runs.close()
