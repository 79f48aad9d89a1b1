"""Reading CSV, TSV and JSON Lines files (optionally compressed) into raw rows, before
any column or label is checked.

UTF-16 and binary files are caught up front by sniffing the first bytes. Undecodable
bytes in CSV/TSV become surrogates (surrogateescape), so a bad byte spoils only its own
row; `nlpft.data.tagged` reads its CSV/JSONL files through the same functions.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nlpft.data.input_files import check_not_stream
from nlpft.data.labeled.problems import BAD_JSON, NOT_UTF8, SURROGATE, WRONG_FIELD_COUNT, bad_byte, hint, plural
from nlpft.errors import UserInputError

_COMPRESSION = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".json-lines": "jsonl", ".ndjson": "jsonl"}
_SUPPORTED = (".csv, .tsv, .tab, .jsonl, .json-lines, .ndjson (optionally .gz, .bz2 or .xz compressed), "
              ".parquet, a save_to_disk directory, or hf:NAME[:CONFIG][@SPLIT]")
_SNIFF_BYTES = 1 << 16
# long documents (news articles, reviews) exceed csv's default 128 KiB field limit
_CSV_FIELD_LIMIT = 1 << 26


@dataclass
class RawRow:
    """A record before validation: its values by column, or the structural problem that
    kept it from being split into columns."""

    row: int
    values: dict[str, object] | None
    problem: tuple[str, str] | None = None


def format_of(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    return _FORMATS.get(suffixes[-1]) if suffixes else None


def check_path(path: Path) -> str:
    """The file's format; raises for a missing file, a directory or an unknown extension."""
    if not path.exists():
        raise UserInputError(f"{path}: no such file; pass a labeled {_SUPPORTED} file")
    if path.is_dir():
        raise UserInputError(f"{path}: is a directory, and not one written by `datasets`' save_to_disk; pass one "
                             "labeled file (CSV, TSV, JSONL or Parquet)")
    check_not_stream(path)  # before anything opens it: opening a named pipe waits for a writer
    fmt = format_of(path)
    if fmt is None:
        conversion = ""
        if path.suffix.lower() == ".json":
            conversion = "; for a JSON array, convert it to JSON Lines with `jq -c '.[]' in.json > in.jsonl`"
        elif path.suffix.lower() in (".xlsx", ".xls", ".ods"):
            conversion = "; export the spreadsheet as CSV"
        raise UserInputError(f"{path}: unknown file type {path.suffix or '(no extension)'!r}; supported: {_SUPPORTED}{conversion}")
    return fmt


@contextmanager
def open_bytes(path: Path):
    opener = _COMPRESSION.get(path.suffix.lower(), open)
    try:
        with opener(path, "rb") as fh:
            yield fh
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise UserInputError(f"{path}: cannot be read ({exc}); check the file and its compression") from None


def sniff(path: Path) -> None:
    """Catch binary and UTF-16 files up front: the row-by-row checks would report
    every row of them, which hides the one thing to fix."""
    with open_bytes(path) as fh:
        head = fh.read(_SNIFF_BYTES)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UserInputError(f"{path}: is UTF-16; save it as UTF-8 (e.g. `iconv -f utf-16 -t utf-8`)")
    if b"\x00" in head:
        raise UserInputError(f"{path}: looks like a binary file (it contains NUL bytes); pass a UTF-8 text file")
    if not head.strip():
        raise UserInputError(f"{path}: the file is empty; it needs a header row and data rows")


def read_table(path: Path, fmt: str) -> tuple[list[str], list[RawRow]]:
    sniff(path)
    if fmt == "jsonl":
        return _read_jsonl(path)
    return _read_delimited(path, "\t" if fmt == "tsv" else ",")


@contextmanager
def _csv_field_limit(limit: int):
    # the limit is process-wide state: put it back afterwards
    old = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _read_delimited(path: Path, delimiter: str) -> tuple[list[str], list[RawRow]]:
    """Header and records of a CSV/TSV file. Undecodable bytes become surrogates
    (surrogateescape), so a bad byte spoils only its own row and rows stay numbered."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    kind = "TSV" if delimiter == "\t" else "CSV"
    rows: list[RawRow] = []
    row = 0
    with open_bytes(path) as raw, _csv_field_limit(_CSV_FIELD_LIMIT):
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text, delimiter=delimiter, quoting=quoting)
        try:
            header = [name.strip() for name in next(reader, [])]
            row = 1
            _check_header(path, header)
            for row, record in enumerate(reader, 2):
                rows.append(_record_to_row(row, record, header))
        except csv.Error as exc:
            raise UserInputError(
                f"{path}, row {row + 1}: cannot be parsed as {kind} ({exc}); "
                "check the quoting near that row"
            ) from None
    return header, rows


def _check_header(path: Path, header: list[str]) -> None:
    if not any(header):
        raise UserInputError(f"{path}, row 1: the header is empty; the first row must name the columns")
    bad = next((name for name in header if SURROGATE.search(name)), None)
    if bad is not None:
        raise UserInputError(f"{path}, row 1 (header): not UTF-8 ({bad_byte(bad)}); {hint(NOT_UTF8)}")


def _record_to_row(row: int, record: list[str], header: list[str]) -> RawRow:
    if not record or (len(record) == 1 and not record[0].strip() and len(header) > 1):
        return RawRow(row, None)  # blank line: counted, not data
    if len(record) != len(header):
        detail = f"{plural(len(record), 'field')}, expected {len(header)}"
        if any("\n" in value for value in record):
            detail += "; a quoted field spans several lines: check for an unclosed quote"
        return RawRow(row, None, (WRONG_FIELD_COUNT, detail))
    return RawRow(row, dict(zip(header, record)))


def _read_jsonl(path: Path) -> tuple[list[str], list[RawRow]]:
    """Objects of a JSON Lines file; the columns are every key seen, in order of first use."""
    rows: list[RawRow] = []
    columns: dict[str, None] = {}
    with open_bytes(path) as fh:
        for line_no, raw in enumerate(fh, 1):
            if line_no == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            parsed = _parse_json_line(line_no, raw)
            if parsed.values:
                columns.update(dict.fromkeys(parsed.values))
            rows.append(parsed)
    return list(columns), rows


def _parse_json_line(line_no: int, raw: bytes) -> RawRow:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RawRow(line_no, None, (NOT_UTF8, f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1}"))
    if not line.strip():
        return RawRow(line_no, None)
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return RawRow(line_no, None, (BAD_JSON, f"{exc.msg} at column {exc.colno}"))
    if not isinstance(obj, dict):
        return RawRow(line_no, None, (BAD_JSON, f"a JSON {type(obj).__name__}, not an object"))
    return RawRow(line_no, obj)
