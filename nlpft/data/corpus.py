"""Plain-text corpora as re-iterable streams of lines.

A corpus is a text file, a `.gz`/`.bz2`/`.xz` file, or a directory of such files (read in
sorted order, hidden files skipped). Iterating a `TextCorpus` opens the files afresh each
time, so it can be passed over as often as training needs and is never held in memory.

Bad input is found early: `validate()` checks existence, readability, binary content (NUL
bytes) and UTF-8 decoding, and the streaming readers raise `UserInputError` naming the
file and line if an undecodable line shows up later.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
from collections.abc import Iterator
from pathlib import Path

from nlpft.errors import UserInputError

_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_SNIFF_BYTES = 1 << 16


def _open_binary(path: Path):
    opener = _OPENERS.get(path.suffix.lower(), open)
    return opener(path, "rb")


def _first_bad_line(path: Path) -> tuple[int, str]:
    """1-based line number and reason of the first line that is not UTF-8."""
    with _open_binary(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return lineno, f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1}"
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
                for line in fh:
                    yield line.rstrip("\n")
        except UnicodeDecodeError:
            lineno, why = _first_bad_line(path)
            raise UserInputError(
                f"{path}, line {lineno}: not UTF-8 ({why}); re-encode the file as UTF-8"
            ) from None
        except (OSError, EOFError, lzma.LZMAError) as exc:
            raise UserInputError(f"{path}: read failed ({exc}); the file may be truncated") from None

    def batches(self, lines_per_batch: int = 4096) -> Iterator[list[str]]:
        """Lines in lists of `lines_per_batch`, for batch tokenization."""
        batch: list[str] = []
        for line in self:
            batch.append(line)
            if len(batch) >= lines_per_batch:
                yield batch
                batch = []
        if batch:
            yield batch
