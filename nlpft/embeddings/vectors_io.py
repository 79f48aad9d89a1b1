"""Read and write static word vectors: word2vec text, word2vec binary and GloVe text.

Vector files come from anywhere (downloads, other tools, half-finished copies), so this
module parses them itself instead of calling gensim's loader: every way a file can be
broken ends in a `UserInputError` naming the file and the 1-based line (text) or byte
offset (binary), rather than a traceback or, worse, silently wrong vectors.

Pickled gensim models are refused unless the caller opts in, because unpickling a file
can run arbitrary code.

Speed: text rows are split in Python only to peel off the word; the numbers of a whole
chunk of lines are parsed at once by numpy's C reader, and a slow row-by-row pass runs
only to pinpoint an error. Binary rows are copied straight from a memory map.
"""

from __future__ import annotations

import io
import mmap
import re
import sys
from array import array
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from gensim.models import KeyedVectors

from nlpft.data.input_files import check_not_stream
from nlpft.errors import UserInputError

__all__ = ["DIR_FILES", "FORMAT_FILES", "load_vectors", "save_vectors"]

FORMAT_FILES = {"bin": "vectors.bin", "txt": "vectors.txt", "glove": "vectors.glove.txt"}
"""File name that `save_vectors` writes for each format name."""

DIR_FILES = ("vectors.bin", "vectors.txt", "vectors.glove.txt")
"""Files `load_vectors` looks for in a directory, best first (binary is exact and fastest)."""

PICKLE_SUFFIXES = (".model", ".kv")
_PICKLE_MAGIC = b"\x80"
_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"
_CHUNK_BYTES = 32 << 20  # text lines parsed per numpy call; bounds memory on big files
_SNIFF_BYTES = 1 << 16
_MAX_WORD_BYTES = 1 << 16  # a longer "word" in a binary file means the file is corrupt
_INT_RE = re.compile(rb"[+-]?\d+\Z")
_WHITESPACE_RE = re.compile(r"[ \t\n\r\x0b\x0c]")
# Bytes that never occur in a text file; float32 payloads are full of them.
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\x0b\x0c") + b"\x7f"
_NUMBER_BYTES = b"0123456789+-.eEinfatyINFATY \t\r"  # digits, signs, nan, inf(inity)
_TEXT_SUFFIXES = (".txt", ".vec", ".tsv")
_FLOAT32_LE = np.dtype("<f4")


# --------------------------------------------------------------------------- loading


def load_vectors(path: str | Path, *, allow_pickle: bool = False) -> KeyedVectors:
    """Load word vectors from an nlpft output directory or a single vector file.

    `path` may be a directory holding `vectors.bin`, `vectors.txt` or `vectors.glove.txt`
    (tried in that order), a word2vec text or binary file (header "V D"), or a GloVe text
    file (no header; detected from the first line: the Stanford glove.*.txt files and
    GloVe C's vectors.txt). Rows past a header's vocabulary size are ignored with a line
    on stderr, as gensim ignores them: GloVe C's `-write-header 1` counts the vocabulary
    but then appends an <unk> row. Malformed files raise `UserInputError` with the line
    number or byte offset of the first problem.

    Pickled gensim models (`.model`, `.kv`, or any file starting with the pickle opcode
    0x80) are refused unless `allow_pickle=True`, and even then only `.model`/`.kv`
    files are unpickled: unpickling runs code from the file.
    """
    path = _resolve(Path(path))
    head = _read_head(path)
    if path.suffix in PICKLE_SUFFIXES or head.startswith(_PICKLE_MAGIC):
        return _load_pickled(path, allow_pickle)
    if head.startswith(_GZIP_MAGIC):
        raise UserInputError(
            f"{path}: file is gzip-compressed; decompress it first (gunzip -k '{path}') "
            "and pass the uncompressed file."
        )
    words, vectors, locate = _parse_file(path, head)
    _check_finite(vectors, locate)
    _check_unique(words, locate)
    return _build_keyed_vectors(words, vectors)


def _resolve(path: Path) -> Path:
    """Turn a directory into the best vector file inside it; refuse missing paths."""
    if not path.exists():
        raise UserInputError(f"{path}: does not exist; check the path to the vectors file or directory.")
    if not path.is_dir():
        check_not_stream(path)
        return path
    for name in DIR_FILES:
        if (path / name).is_file():
            return path / name
    raise UserInputError(
        f"{path}: directory holds none of {', '.join(DIR_FILES)}; pass the vector file itself "
        "or the output directory of an nlpft embedding run."
    )


def _read_head(path: Path) -> bytes:
    """First bytes of the file, enough to detect its format; refuse empty files."""
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError as exc:
        raise UserInputError(f"{path}: cannot be read ({exc.strerror}); check its permissions.") from exc
    if not head.strip():
        raise UserInputError(f"{path}: line 1: file is empty; it holds no vectors. Re-export or re-download it.")
    return head


def _load_pickled(path: Path, allow_pickle: bool) -> KeyedVectors:
    """Refuse pickles by default; with explicit consent, load a gensim `.model`/`.kv`."""
    convert = (
        "Convert it once, in an environment you trust: python -c \"from gensim.models import KeyedVectors; "
        f"m = KeyedVectors.load('{path}'); getattr(m, 'wv', m).save_word2vec_format('vectors.bin', binary=True)\" "
        "and pass vectors.bin instead"
    )
    if not allow_pickle:
        raise UserInputError(
            f"{path}: is a pickled gensim model; nlpft never unpickles files, because unpickling can run "
            f"arbitrary code. {convert} (or pass allow_pickle=True if you trust this file)."
        )
    if path.suffix not in PICKLE_SUFFIXES:
        raise UserInputError(
            f"{path}: looks like a pickle but is not a gensim .model/.kv file; allow_pickle only applies "
            f"to those. {convert}."
        )
    loaded = KeyedVectors.load(str(path))
    kv = getattr(loaded, "wv", loaded)  # a full Word2Vec/FastText model keeps its vectors in .wv
    if not isinstance(kv, KeyedVectors):
        raise UserInputError(f"{path}: holds a {type(loaded).__name__}, not gensim word vectors.")
    return kv


def _parse_file(path: Path, head: bytes):
    """Dispatch on the detected format; returns (words, vectors, locate(row) -> str)."""
    bom = len(_UTF8_BOM) if head.startswith(_UTF8_BOM) else 0
    first_line, _, rest = head[bom:].partition(b"\n")
    header = _parse_header(first_line, path)
    if header is None:
        dim = _glove_dim(first_line, path)
        return _read_text(path, bom, 1, dim, None)
    count, dim = header
    data_start = bom + len(first_line) + 1
    if _looks_binary(rest, dim, path):
        return _read_binary(path, data_start, count, dim)
    return _read_text(path, data_start, 2, dim, count)


def _parse_header(first_line: bytes, path: Path) -> tuple[int, int] | None:
    """Return (count, dim) for a word2vec header, None for a GloVe first row.

    A first line of two tokens starting with an integer is taken as a header (a GloVe
    row would start with a word), so it must then be two positive integers.
    """
    tokens = first_line.split()
    if len(tokens) != 2 or not _INT_RE.match(tokens[0]):
        return None
    if not _INT_RE.match(tokens[1]) or int(tokens[0]) <= 0 or int(tokens[1]) <= 0:
        shown = first_line.strip().decode("utf-8", "replace")
        raise UserInputError(
            f"{path}: line 1: word2vec header must be two positive integers 'VOCAB_SIZE DIM', got {shown!r}; "
            "fix the header or remove it if this is a GloVe file."
        )
    return int(tokens[0]), int(tokens[1])


def _glove_dim(first_line: bytes, path: Path) -> int:
    """Dimension of a header-less (GloVe) file, from its first row."""
    n_tokens = len(first_line.split())
    if n_tokens < 2:
        raise UserInputError(
            f"{path}: line 1: expected a word2vec header 'VOCAB_SIZE DIM' or a GloVe row 'word v1 v2 ...', "
            f"found {n_tokens} token(s); is this a vector file?"
        )
    return n_tokens - 1


def _looks_binary(sample: bytes, dim: int, path: Path) -> bool:
    """Tell word2vec binary from text after the header.

    Float32 payloads almost always contain control bytes that text never has. For tiny
    dimensions where they may not, a first row that parses as text decides, then the
    file suffix, then whether the first row holds anything but number characters.
    """
    if sample.translate(None, _CONTROL_BYTES) != sample:
        return True
    first_row = sample.split(b"\n", 1)[0]
    tokens = first_row.split()
    if len(tokens) == dim + 1 and all(_is_float(token) for token in tokens[1:]):
        return False
    if path.suffix in _TEXT_SUFFIXES or path.suffix == ".bin":
        return path.suffix == ".bin"
    numbers = first_row.split(None, 1)[1:]
    return bool(numbers and numbers[0].translate(None, _NUMBER_BYTES))


def _is_float(token: bytes) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


# ----------------------------------------------------------------------------- text


def _read_text(path: Path, start: int, first_line_no: int, dim: int, count: int | None):
    """Parse text rows `word v1 .. vD` from byte `start`; `count` is the header's promise."""
    words: list[str] = []
    line_of_row = array("q")
    blocks = []
    line_no = first_line_no - 1
    beyond_header = 0  # rows after the `count` the header promises: read by nobody
    with open(path, "rb") as f:
        f.seek(start)
        while lines := f.readlines(_CHUNK_BYTES):
            numbers = []
            for raw in lines:
                line_no += 1
                if count is not None and len(words) == count:
                    beyond_header += bool(raw.strip())
                    continue
                parts = raw.split(None, 1)
                if not parts:
                    continue  # blank lines carry nothing; tolerate them
                if len(parts) == 1:
                    raise _row_error(path, line_no, dim, 0)
                words.append(_decode_word(parts[0], path, line_no))
                numbers.append(parts[1])
                line_of_row.append(line_no)
            if numbers:
                blocks.append(_parse_numbers(numbers, dim, path, line_of_row[-len(numbers):]))
    _check_count(path, count, len(words), line_no)
    if beyond_header:
        _note_ignored(path, f"{beyond_header} row{'s' * (beyond_header > 1)} after the {count} vectors the header "
                            f"on line 1 promises (GloVe's -write-header 1 appends an <unk> row it does not count)")
    vectors = np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32)
    return words, vectors, lambda row: f"{path}: line {line_of_row[row]}"


def _decode_word(raw: bytes, path: Path, line_no: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(
            f"{path}: line {line_no}: word {raw!r} is not valid UTF-8 ({exc.reason}); re-encode the file as UTF-8."
        ) from exc


def _parse_numbers(numbers: list[bytes], dim: int, path: Path, line_nos: Sequence[int]) -> np.ndarray:
    """Parse the numeric parts of many rows in one vectorised call; pinpoint errors slowly."""
    try:
        block = np.loadtxt(
            io.BytesIO(b"".join(numbers)), dtype=np.float32, comments=None,
            ndmin=2, encoding="latin-1", quotechar=None,
        )
    except ValueError:
        block = None
    if block is None or block.shape != (len(numbers), dim):
        _raise_first_bad_row(numbers, dim, path, line_nos)
    return block


def _raise_first_bad_row(numbers: list[bytes], dim: int, path: Path, line_nos: Sequence[int]):
    """Slow path, only after a failed chunk: find and report the first bad row."""
    for raw, line_no in zip(numbers, line_nos):
        tokens = raw.split()
        if len(tokens) != dim:
            raise _row_error(path, line_no, dim, len(tokens))
        for column, token in enumerate(tokens, start=2):
            try:
                float(token)
            except ValueError:
                shown = token.decode("utf-8", "replace")
                raise UserInputError(
                    f"{path}: line {line_no}: value {shown!r} in column {column} is not a number; "
                    "fix or delete that row."
                ) from None
    raise UserInputError(
        f"{path}: lines {line_nos[0]}-{line_nos[-1]}: could not parse the numbers in these lines; "
        "check them for unusual number syntax."
    )


def _row_error(path: Path, line_no: int, dim: int, found: int) -> UserInputError:
    return UserInputError(
        f"{path}: line {line_no}: expected a word followed by {dim} values, found {found} values; "
        "fix or delete that row (every row must have the same dimension)."
    )


def _check_count(path: Path, count: int | None, rows: int, last_line: int):
    """A header's vocabulary size must not promise more rows than the file holds (rows past
    it are ignored, as gensim ignores them: see `_note_ignored`)."""
    if count is None:
        if rows == 0:
            raise UserInputError(f"{path}: line 1: file holds no vectors.")
        return
    if rows < count:
        raise UserInputError(
            f"{path}: line {last_line + 1}: file ends after {rows} vectors but the header on line 1 promises "
            f"{count}; the file is probably truncated: re-download or re-export it."
        )


def _note_ignored(path: Path, what: str) -> None:
    """Data past the rows a header counts is left out, as gensim's loader leaves it, and said."""
    print(f"{path}: ignored {what}", file=sys.stderr)


# --------------------------------------------------------------------------- binary


def _read_binary(path: Path, start: int, count: int, dim: int):
    """Parse word2vec binary rows `word<space><dim float32>[\\n]` from byte `start`."""
    row_bytes = dim * _FLOAT32_LE.itemsize
    words: list[str] = []
    offsets = array("q")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        size, pos = len(mm), start
        # the header's count is a claim: room for more rows than the file can hold (each
        # takes a separator byte besides its vector) is never allocated; a short file
        # fails below, at the row where it ends
        vectors = np.empty((min(count, (size - start) // (row_bytes + 1)), dim), dtype=np.float32)
        for row in range(count):
            while pos < size and mm[pos] in b"\n\r":
                pos += 1
            word, vec_start = _binary_word(mm, pos, row, count, path)
            if vec_start + row_bytes > size:
                raise UserInputError(
                    f"{path}: byte offset {vec_start}: file ends in the middle of the vector of row {row + 1} "
                    f"({word!r}): {size - vec_start} of {row_bytes} bytes present; the file is truncated: "
                    "re-download or re-export it."
                )
            vectors[row] = np.frombuffer(mm, _FLOAT32_LE, dim, vec_start)
            words.append(word)
            offsets.append(pos)
            pos = vec_start + row_bytes
        _check_binary_tail(mm, pos, count, path)
    return words, vectors, lambda row: f"{path}: byte offset {offsets[row]} (row {row + 1})"


def _binary_word(mm: mmap.mmap, pos: int, row: int, count: int, path: Path) -> tuple[str, int]:
    """Read the word of binary row `row` at `pos`; return it and where its vector starts."""
    if pos >= len(mm):
        raise UserInputError(
            f"{path}: byte offset {pos}: file ends after {row} vectors but the header promises {count}; "
            "the file is probably truncated: re-download or re-export it."
        )
    space = mm.find(b" ", pos, pos + _MAX_WORD_BYTES)
    if space < 0:
        raise UserInputError(
            f"{path}: byte offset {pos}: row {row + 1} has no word followed by a space; the file is "
            "truncated or not word2vec binary."
        )
    raw = mm[pos:space]
    try:
        return raw.decode("utf-8"), space + 1
    except UnicodeDecodeError as exc:
        raise UserInputError(
            f"{path}: byte offset {pos}: word of row {row + 1} ({raw[:40]!r}) is not valid UTF-8 "
            f"({exc.reason}); re-export the vectors with UTF-8 words."
        ) from exc


def _check_binary_tail(mm: mmap.mmap, pos: int, count: int, path: Path):
    """Data after the last row the header announced is ignored (as gensim does), and said."""
    while pos < len(mm) and mm[pos] in b" \n\r":
        pos += 1
    if pos < len(mm):
        _note_ignored(path, f"{len(mm) - pos:,} bytes from byte offset {pos}, after the {count} vectors the "
                            "header promises")


# ------------------------------------------------------------------------- checks


def _check_finite(vectors: np.ndarray, locate):
    """NaN or Inf would poison every similarity computed against that word."""
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if bad.size:
        raise UserInputError(
            f"{locate(int(bad[0]))}: vector contains NaN or Inf ({bad.size} such rows in all); "
            "the vectors are corrupt: retrain or re-export them."
        )


def _check_unique(words: list[str], locate):
    """A duplicate word makes lookups ambiguous; report both occurrences."""
    if len(set(words)) == len(words):
        return
    first_row: dict[str, int] = {}
    for row, word in enumerate(words):
        if word in first_row:
            raise UserInputError(
                f"{locate(row)}: word {word!r} appears again (first at {locate(first_row[word])}); "
                "every word must appear once: delete one of the rows."
            )
        first_row[word] = row


def _build_keyed_vectors(words: list[str], vectors: np.ndarray) -> KeyedVectors:
    kv = KeyedVectors(vector_size=vectors.shape[1], count=0, dtype=np.float32)
    kv.index_to_key = words
    kv.key_to_index = {word: i for i, word in enumerate(words)}
    kv.vectors = vectors
    kv.next_index = len(words)
    return kv


# --------------------------------------------------------------------------- saving


def save_vectors(
    kv: KeyedVectors, out_dir: str | Path, formats: Iterable[str] = ("bin", "txt", "glove")
) -> dict[str, Path]:
    """Write `kv` into `out_dir` as `vectors.bin`, `vectors.txt` and/or `vectors.glove.txt`.

    All formats keep `kv.index_to_key` order. Text values are written with 9 significant
    digits, which round-trips float32 exactly, so every format loads back to the same
    vectors. Returns {format: path written}.
    """
    formats = list(formats)
    unknown = [name for name in formats if name not in FORMAT_FILES]
    if unknown:
        raise UserInputError(f"unknown vector format(s) {unknown}; choose from {sorted(FORMAT_FILES)}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    words = [str(word) for word in kv.index_to_key]
    _check_writable_words(words)
    vectors = np.asarray(kv.vectors, dtype=np.float32)
    written = {}
    if "bin" in formats:
        written["bin"] = _write_binary(out_dir / FORMAT_FILES["bin"], words, vectors)
    text_targets = {name: out_dir / FORMAT_FILES[name] for name in ("txt", "glove") if name in formats}
    if text_targets:
        written.update(_write_text(text_targets, words, vectors))
    return written


def _check_writable_words(words: list[str]):
    """A word with whitespace in it would split into two columns when read back."""
    for row, word in enumerate(words):
        if not word or _WHITESPACE_RE.search(word):
            raise UserInputError(
                f"vocabulary entry {row} ({word!r}) is empty or contains whitespace, which no vector "
                "format can store; fix the tokenizer so tokens never contain spaces."
            )


def _write_binary(path: Path, words: list[str], vectors: np.ndarray) -> Path:
    """word2vec binary as the original C tool writes it (newline after each vector)."""
    little = vectors.astype(_FLOAT32_LE, copy=False)
    with open(path, "wb") as f:
        f.write(f"{len(words)} {vectors.shape[1]}\n".encode())
        for start in range(0, len(words), 10000):
            rows = zip(words[start:start + 10000], little[start:start + 10000])
            f.write(b"".join(word.encode() + b" " + vec.tobytes() + b"\n" for word, vec in rows))
    return path


def _write_text(targets: dict[str, Path], words: list[str], vectors: np.ndarray) -> dict[str, Path]:
    """Write word2vec text ('txt', with header) and GloVe ('glove', without) in one pass.

    The rows are identical in both formats, so each chunk is formatted once; one `%`
    over a whole chunk is several times faster than gensim's per-value `str()`.
    """
    count, dim = vectors.shape
    numbers_format = " %.9g" * dim + "\n"
    with ExitStack() as stack:
        files = {
            name: stack.enter_context(open(path, "w", encoding="utf-8", newline="\n"))
            for name, path in targets.items()
        }
        if "txt" in files:
            files["txt"].write(f"{count} {dim}\n")
        for start in range(0, count, 5000):
            chunk_words = words[start:start + 5000]
            values = tuple(vectors[start:start + 5000].ravel().tolist())
            numbers = ((numbers_format * len(chunk_words)) % values).split("\n")
            text = "".join(word + row + "\n" for word, row in zip(chunk_words, numbers))
            for f in files.values():
                f.write(text)
    return dict(targets)


def vectors_for_vocabulary(kv, tokenizer, embedding: np.ndarray) -> tuple[np.ndarray, dict]:
    """Rows of `embedding` (the model's initial embedding, (V, D)) replaced by the static
    vector of the same word where there is one; returns the matrix and a coverage report."""
    matrix = embedding.copy()
    specials = set(tokenizer.special_tokens)
    found = missing = 0
    examples_missing = []
    for token_id in range(tokenizer.vocab_size):
        word = tokenizer.id_to_token(token_id)
        if word in specials:
            continue
        index = kv.key_to_index.get(word)
        if index is None:
            missing += 1
            if len(examples_missing) < 10:
                examples_missing.append(word)
            continue
        matrix[token_id] = kv.vectors[index]
        found += 1
    total = found + missing
    report = {
        "words": total,
        "found": found,
        "missing": missing,
        "coverage": found / total if total else 0.0,
        "missing_examples": examples_missing,
        "missing_rows": "kept the model's random initialisation (uniform ±0.1); special tokens too",
    }
    return matrix, report
