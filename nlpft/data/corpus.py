"""Corpora as re-iterable streams of lines.

A corpus is a text file, a `.gz`/`.bz2`/`.xz` file, or a directory of such files (read in
sorted order, hidden files skipped), or one column of a dataset that `datasets` reads
(`DatasetLines`: hf:NAME[:CONFIG][@SPLIT], a Parquet file, a save_to_disk directory; see
`nlpft.data.sources`), or several of these one after the other. Iterating a `TextCorpus`
opens the files (and datasets) afresh each time, so it can be passed over as often as
training needs and is never held in memory.

A dataset's row is a document: its text comes through as the lines it holds, as if it were
a file (empty and missing texts give no line). A streamed Hub dataset (`--streaming`) is
read over the network on every pass; a run that passes over its corpus more than once
first keeps the part it needs on disk (`TextCorpus.fetch_streams`).

Bad input is found early: `validate()` checks existence, readability, binary content (NUL
bytes) and UTF-8 decoding, and the streaming readers raise `UserInputError` naming the
file and line if an undecodable line shows up later. Pipes and devices are refused (see
`nlpft.data.input_files`): a corpus is read more than once.

Bounded memory. Lines are read at most `MAX_LINE_CHARS` characters at a time: a longer
line is handed on as several consecutive lines, each cut at the last space or tab of its
stretch (at the limit itself when the second half of the stretch has none). So no reader
ever holds more of one line than that, whatever the file looks like (a 50 MB corpus on
one line included); lines up to the limit come through exactly as before. `batches()`
also closes a batch at `BATCH_CHARS` characters.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import os
from collections.abc import Iterator
from pathlib import Path

from nlpft.data.input_files import check_not_stream
from nlpft.data.sources import DatasetSource, OpenedDataset, open_dataset
from nlpft.errors import UserInputError

#: the longest stretch of one line any reader holds; longer lines come in pieces (see above)
MAX_LINE_CHARS = 1 << 17
#: the most characters `TextCorpus.batches` puts in one batch
BATCH_CHARS = 1 << 22

_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_SNIFF_BYTES = 1 << 16


def _open_binary(path: Path):
    opener = _OPENERS.get(path.suffix.lower(), open)
    return opener(path, "rb")


def _first_bad_line(path: Path) -> tuple[int, str]:
    """1-based line number and reason of the first line that is not UTF-8 (read in
    bounded pieces, like the corpus itself)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lineno, column = 1, 0
    with _open_binary(path) as fh:
        while piece := fh.readline(MAX_LINE_CHARS):
            try:
                decoder.decode(piece)
            except UnicodeDecodeError as exc:
                # the decoder prepends the bytes of a character cut at the previous piece's end
                held = len(exc.object) - len(piece)
                return lineno, f"byte 0x{exc.object[exc.start]:02x} at column {column - held + exc.start + 1}"
            if piece.endswith(b"\n"):
                lineno, column = lineno + 1, 0
            else:
                column += len(piece)
    return 0, "unknown position"


def check_stream_is_bounded(streaming: bool, max_steps: int | None) -> None:
    """A run that passes over its corpus more than once keeps the part of a stream it needs
    on disk (`TextCorpus.fetch_streams`), and --max-steps is what says how much that is."""
    if streaming and max_steps is None:
        raise UserInputError("--streaming reads a corpus of unknown length, so it needs --max-steps N: how many "
                             "steps to train (and so how much of the stream to read)")


class TextCorpus:
    """Lines of text from files, directories of files and dataset columns (`DatasetLines`).

    `paths` names each part as given (a dataset part by its spec), for records and messages.
    """

    def __init__(self, path: str | os.PathLike | DatasetLines | list, name: str | None = None):
        given = list(path) if isinstance(path, (list, tuple)) else [path]
        if not given:
            raise UserInputError("no corpus given; pass --corpus PATH")
        self.parts: list[Path | DatasetLines] = [p if isinstance(p, DatasetLines) else Path(p) for p in given]
        self.paths = [p.given if isinstance(p, DatasetLines) else p for p in self.parts]
        self.path = self.paths[0]
        self.name = name or "+".join(p.given if isinstance(p, DatasetLines) else p.name for p in self.parts)

    def __repr__(self) -> str:
        return f"TextCorpus({[str(p) for p in self.paths]!r})"

    @property
    def datasets(self) -> list[DatasetLines]:
        return [p for p in self.parts if isinstance(p, DatasetLines)]

    # -- files --------------------------------------------------------------------
    def files(self) -> list[Path]:
        """The text files read (a dataset part has none of its own)."""
        return [f for p in self.parts if not isinstance(p, DatasetLines) for f in self._files_under(p)]

    def inputs(self) -> list[Path | str]:
        """What the corpus is read from, in order, for a fingerprint: each text file, and each
        dataset part's data (`OpenedDataset.data_location`)."""
        found: list[Path | str] = []
        for part in self.parts:
            if isinstance(part, DatasetLines):
                found.append(part.opened.data_location())
            else:
                found.extend(self._files_under(part))
        return found

    def local_paths(self) -> list[Path]:
        """The files and directories on this machine the corpus is read from (a dataset from
        the Hub has none), for the checks that an output does not overlap an input."""
        found = []
        for part in self.parts:
            local = part.source.local_path if isinstance(part, DatasetLines) else part
            if local is not None:
                found.append(local)
        return found

    def reading_options(self) -> dict:
        """The options that decide what is read from the dataset parts, for a fingerprint
        (none for a corpus of files, whose fingerprint stays what it was)."""
        return {"--text-col": self.datasets[0].text_col} if self.datasets else {}

    def notes(self) -> list[str]:
        """Which split each dataset part read, where it held several and the spec named none."""
        return [part.opened.note for part in self.datasets if part.opened.note]

    @property
    def streamed(self) -> bool:
        return any(part.streaming for part in self.datasets)

    def fetch_streams(self, folder: Path, max_words: int, min_lines: int = 0) -> None:
        """Read each streamed part once, until it has given its share of `max_words` words
        and of `min_lines` lines (or ends), into a text file in `folder`; later passes read
        that file (see `DatasetLines.fetch`)."""
        streamed = [part for part in self.datasets if part.streaming]
        for index, part in enumerate(streamed):
            part.fetch(Path(folder) / f"stream-{index}.txt", -(-max_words // len(streamed)),
                       -(-min_lines // len(streamed)))

    @staticmethod
    def _files_under(path: Path) -> list[Path]:
        if not path.exists():
            raise UserInputError(
                f"{path}: no such file or directory; pass a text file, a .gz/.bz2 file, "
                "a directory of text files, or a corpus name from `nlpft corpus list`"
            )
        check_not_stream(path)
        if path.is_file():
            return [path]
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise UserInputError(f"{path}: the directory holds no files; put text files in it")
        return files

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files()) + sum(part.size_bytes() for part in self.datasets)

    def validate(self) -> None:
        """Cheap up-front checks on every file (readable, not binary, UTF-8) and dataset part
        (it loads, has the text column), and that not all of them are empty."""
        total = sum(part.validate() for part in self.datasets)
        for path in self.files():
            try:
                with _open_binary(path) as fh:
                    head = fh.read(_SNIFF_BYTES)
            except (OSError, EOFError, lzma.LZMAError) as exc:
                raise UserInputError(f"{path}: cannot be read ({exc}); check the file or its compression") from None
            if b"\x00" in head:
                raise UserInputError(
                    f"{path}: looks like a binary file (it contains NUL bytes); pass plain UTF-8 text"
                )
            try:
                # a multi-byte character may be cut at the sniff boundary: ignore only that
                head.decode("utf-8")
            except UnicodeDecodeError as exc:
                if exc.start < len(head) - 4:
                    lineno, why = _first_bad_line(path)
                    raise UserInputError(
                        f"{path}, line {lineno}: not UTF-8 ({why}); re-encode the file as UTF-8 "
                        "(e.g. `iconv -f latin1 -t utf-8`)"
                    ) from None
            total += len(head.strip())
        if total == 0:
            raise UserInputError(f"{self.path}: the corpus is empty; pass a file with text in it")

    # -- streaming ----------------------------------------------------------------
    def __iter__(self) -> Iterator[str]:
        return (line for line in self.lines_and_document_ends() if line is not None)

    def lines_and_document_ends(self) -> Iterator[str | None]:
        """The lines, with None after each document: a file, or a dataset row (a stream read
        into a local copy: the whole copy, its rows' ends being lost)."""
        for part in self.parts:
            if isinstance(part, DatasetLines):
                yield from part.lines_and_row_ends()
            else:
                for path in self._files_under(part):
                    yield from self._lines(path)
                    yield None

    def _lines(self, path: Path) -> Iterator[str]:
        try:
            with _open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline=None) as fh:
                yield from bounded_lines(fh, MAX_LINE_CHARS)
        except UnicodeDecodeError:
            lineno, why = _first_bad_line(path)
            raise UserInputError(
                f"{path}, line {lineno}: not UTF-8 ({why}); re-encode the file as UTF-8"
            ) from None
        except (OSError, EOFError, lzma.LZMAError) as exc:
            raise UserInputError(f"{path}: read failed ({exc}); the file may be truncated") from None

    def batches(self, lines_per_batch: int = 4096, max_chars: int = BATCH_CHARS) -> Iterator[list[str]]:
        """Lines in lists of `lines_per_batch`, for batch tokenization; a list is also closed
        once it holds `max_chars` characters."""
        batch: list[str] = []
        chars = 0
        for line in self:
            batch.append(line)
            chars += len(line)
            if len(batch) >= lines_per_batch or chars >= max_chars:
                yield batch
                batch, chars = [], 0
        if batch:
            yield batch


def bounded_lines(fh: io.TextIOBase, limit: int) -> Iterator[str]:
    """The lines of the text stream `fh` without their "\\n", a line longer than `limit`
    characters as consecutive pieces of at most `limit` characters (see the module
    docstring); the space or tab a piece is cut at is dropped."""
    carry = ""
    while True:
        chunk = fh.readline(limit - len(carry))
        if not chunk:
            if carry:
                yield carry
            return
        text = carry + chunk
        carry = ""
        if text.endswith("\n"):
            yield text[:-1]
        elif len(text) < limit:  # the last line, without a newline
            yield text
        else:
            cut = max(text.rfind(" "), text.rfind("\t"))
            if cut < limit // 2:
                yield text
            else:
                yield text[:cut]
                carry = text[cut + 1:]


#: rows of a dataset read at a time (and looked at by `DatasetLines.validate`)
_DATASET_BATCH_ROWS = 1000
_TEXT_TYPES = ("string", "large_string")


class DatasetLines:
    """The texts of one column of a dataset source, as the lines they hold.

    Opened on first use (the split is the source's @SPLIT, else `train`). Streamed, it is
    read over the network on every pass until `fetch` keeps it on disk.
    """

    def __init__(self, source: DatasetSource, text_col: str = "text", streaming: bool = False):
        self.source = source
        self.text_col = text_col
        self.streaming = streaming
        self.local_copy: Path | None = None
        self._opened: OpenedDataset | None = None

    @property
    def given(self) -> str:
        return self.source.given

    @property
    def opened(self) -> OpenedDataset:
        if self._opened is None:
            opened = open_dataset(self.source, "train", streaming=self.streaming)
            self._check_column(opened)
            self._opened = opened
        return self._opened

    def _check_column(self, opened: OpenedDataset) -> None:
        columns = opened.columns
        texts = [name for name in columns if _is_text(opened.features.get(name))]
        if self.text_col not in columns:
            offer = f" (its text columns: {', '.join(texts)})" if texts else ""
            raise UserInputError(f"{self.given}: no column {self.text_col!r}; it has {', '.join(columns) or 'none'}: "
                                 f"pass --text-col NAME{offer}")
        feature = opened.features.get(self.text_col)
        if feature is not None and not _is_text(feature):
            offer = f" such as {', '.join(texts)}" if texts else ""
            raise UserInputError(f"{self.given}: column {self.text_col!r} holds {feature}, not text: pass --text-col "
                                 f"with a text column{offer}")

    def size_bytes(self) -> int:
        data = getattr(self.opened.dataset, "data", None)  # an Arrow table; a stream has none
        return int(getattr(data, "nbytes", 0) or 0)

    def validate(self) -> int:
        """Opens the split and checks the column; the characters of text in the first rows."""
        chars = 0
        for index, text in enumerate(self._texts()):
            chars += len(text.strip())
            if index + 1 >= _DATASET_BATCH_ROWS:
                break
        return chars

    def lines(self) -> Iterator[str]:
        return (line for line in self.lines_and_row_ends() if line is not None)

    def lines_and_row_ends(self) -> Iterator[str | None]:
        if self.local_copy is not None:
            yield from TextCorpus(self.local_copy)
            yield None
            return
        for text in self._texts():
            yield from bounded_lines(io.StringIO(text, newline=None), MAX_LINE_CHARS)
            yield None

    def _texts(self) -> Iterator[str]:
        """Each row's text; rows without one are left out."""
        column = self.opened.dataset.select_columns([self.text_col])
        index = 0
        for batch in column.iter(batch_size=_DATASET_BATCH_ROWS):
            for text in batch[self.text_col]:
                if isinstance(text, str):
                    yield text
                elif text is not None:  # a stream whose column types were not declared
                    raise UserInputError(f"{self.given}, row {index}: {self.text_col!r} holds a "
                                         f"{type(text).__name__}, not text: pass --text-col with a text column")
                index += 1

    def fetch(self, path: Path, max_words: int, min_lines: int = 0) -> None:
        """Read the rows once, until their lines hold `max_words` words (whitespace-separated:
        no tokenizer makes fewer tokens of them) and `min_lines` non-empty lines, into the
        text file `path`, which later passes read instead. A file left complete by an earlier
        (resumed) run is reused."""
        if not path.is_file():
            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
            words = lines = 0
            with open(partial, "w", encoding="utf-8", newline="\n") as out:
                for line in self.lines():
                    out.write(line + "\n")
                    words += len(line.split())
                    lines += bool(line.strip())
                    if words >= max_words and lines >= min_lines:
                        break
            os.replace(partial, path)
        self.local_copy = path


def _is_text(feature) -> bool:
    return getattr(feature, "dtype", None) in _TEXT_TYPES
