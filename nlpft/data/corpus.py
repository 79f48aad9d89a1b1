"""Plain-text corpora as re-iterable streams of lines.

A corpus is a text file, a `.gz`/`.bz2`/`.xz` file, or a directory of such files (read in
sorted order, hidden files skipped). Iterating a `TextCorpus` opens the files afresh each
time, so it can be passed over as often as training needs and is never held in memory.

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


class TextCorpus:
    """Lines of text from one file or a directory of files."""

    def __init__(self, path: str | os.PathLike | list, name: str | None = None):
        paths = list(path) if isinstance(path, (list, tuple)) else [path]
        if not paths:
            raise UserInputError("no corpus given; pass --corpus PATH")
        self.paths = [Path(p) for p in paths]
        self.path = self.paths[0]
        self.name = name or "+".join(p.name for p in self.paths)

    def __repr__(self) -> str:
        return f"TextCorpus({[str(p) for p in self.paths]!r})"

    # -- files --------------------------------------------------------------------
    def files(self) -> list[Path]:
        return [f for p in self.paths for f in self._files_under(p)]

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
        return sum(p.stat().st_size for p in self.files())

    def validate(self) -> None:
        """Cheap up-front checks on every file: readable, not binary, UTF-8, not all empty."""
        total = 0
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
        for path in self.files():
            yield from self._lines(path)

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
