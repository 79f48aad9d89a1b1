"""Labeled text files (CSV, TSV, JSON Lines) read and validated before any model loads.

`nlpft finetune` trains a classifier or regressor on a file of texts and labels. A bad
file should stop the run in the first second, with every problem listed at once, rather
than one problem per attempt or a crash twenty minutes into training. So `read_labeled`
reads the whole file (up to ~100k rows are held in memory as Python strings), collects
every problem in one pass and raises one `UserInputError` that names the file, the kinds
of problem, the first few rows of each kind and a file holding the full list.

Row numbers are the ones a user sees:

* CSV/TSV: numbered as in a spreadsheet. Row 1 is the header, the first data row is row 2.
  They are *record* numbers, not line numbers: a quoted CSV field with newlines inside is
  one row, as in a spreadsheet. Blank lines count as (empty, ignored) rows, so the numbers
  still match what a spreadsheet shows.
* JSONL: line numbers (1-based); blank lines are ignored but counted.

Problems come in two levels:

* file-level: missing file, unknown extension, missing columns, no data rows, a training
  file with a single class. These always raise.
* row-level: not UTF-8, wrong number of fields, invalid JSON, empty text, empty label, a
  regression label that is not a number. These raise unless `skip_bad_rows=True`, which
  drops the rows and reports how many were dropped and why (`LabeledData.skipped`).

Labels are always read as strings, whatever they look like: "1" and "2" are class names,
and "1" and "1.0" are two *different* labels. Only `task="regression"` parses numbers.
Surrounding whitespace is stripped from labels (not from texts). Labels that still differ
only in case or Unicode width ("Pos" / "pos") are different classes; `LabeledData.label_variants`
lists them so the caller can warn, and `normalize_labels=True` merges each group under its
most frequent spelling (see `label_key`).

TSV files are read without quoting (the IANA TSV convention): a field may contain quote
characters but neither tabs nor newlines. CSV files use standard RFC 4180 quoting.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import math
import os
import re
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from nlpft.data.input_files import check_not_stream
from nlpft.errors import UserInputError

TASKS = ("single", "multi", "regression")

# -- kinds of row-level problem; the strings are the keys of `LabeledData.skipped` --------
NOT_UTF8 = "not UTF-8"
WRONG_FIELD_COUNT = "wrong number of fields"
BAD_JSON = "not a JSON object"
MISSING_FIELD = "missing field"
BAD_VALUE = "bad value"
EMPTY_TEXT = "empty text"
EMPTY_TEXT_PAIR = "empty text pair"
EMPTY_LABEL = "empty label"
NOT_A_NUMBER = "not a number"

# A row with several problems is counted once, under the first of these.
PROBLEM_ORDER = (
    NOT_UTF8,
    WRONG_FIELD_COUNT,
    BAD_JSON,
    MISSING_FIELD,
    BAD_VALUE,
    EMPTY_TEXT,
    EMPTY_TEXT_PAIR,
    EMPTY_LABEL,
    NOT_A_NUMBER,
)
# kinds whose detail (the byte, the field count, the value) helps in the short message
_DETAILED = {NOT_UTF8, WRONG_FIELD_COUNT, BAD_JSON, MISSING_FIELD, BAD_VALUE, NOT_A_NUMBER}
_ROWS_SHOWN = 5

_COMPRESSION = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".json-lines": "jsonl", ".ndjson": "jsonl"}
_SUPPORTED = ".csv, .tsv, .tab, .jsonl, .json-lines, .ndjson (optionally .gz, .bz2 or .xz compressed)"
_SNIFF_BYTES = 1 << 16
# long documents (news articles, reviews) exceed csv's default 128 KiB field limit
_CSV_FIELD_LIMIT = 1 << 26
_SURROGATE = re.compile("[\udc80-\udcff]")


# -- data classes -------------------------------------------------------------------------
Label = str | tuple[str, ...] | float | None


@dataclass(frozen=True)
class LabeledExample:
    """One usable row. `label` is a str (single), a tuple of str (multi), a float
    (regression), or None when the file has no label for it (predict input)."""

    text: str
    label: Label
    row: int
    text_pair: str | None = None


@dataclass(frozen=True)
class SkippedRow:
    """A row left out of `LabeledData.examples`, with the first reason it was bad."""

    row: int
    reason: str
    detail: str = ""


@dataclass
class LabeledData(Sequence):
    """The usable rows of one file, plus what was left out and why.

    `skipped` counts skipped rows per reason (each row counted once); `skipped_rows` has
    the row numbers, e.g. for `predict` to report rows it could not predict.
    """

    examples: list[LabeledExample]
    file: Path
    task: str
    columns: list[str] = field(default_factory=list)
    has_labels: bool = True
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_rows: list[SkippedRow] = field(default_factory=list)
    bad_rows_file: Path | None = None
    label_variants: dict[str, Counter] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index):
        return self.examples[index]

    def __iter__(self) -> Iterator[LabeledExample]:
        return iter(self.examples)

    def texts(self) -> list[str]:
        return [ex.text for ex in self.examples]

    def text_pairs(self) -> list[str | None]:
        return [ex.text_pair for ex in self.examples]

    def labels(self) -> list[Label]:
        return [ex.label for ex in self.examples]

    def label_counts(self) -> Counter:
        """Rows per label name; a multi-label row counts once for each of its labels."""
        if self.task == "regression":
            raise ValueError("label_counts() is for classification; regression labels are numbers")
        return _label_counts(self.examples)

    def label_variants_warning(self) -> str | None:
        """One line for the CLI when labels differ only in case or width, with each
        spelling's count; None when there are none (or they were merged)."""
        if not self.label_variants:
            return None
        unit = "line" if _format_of(self.file) == "jsonl" else "row"
        groups = "; ".join(
            ", ".join(f"{spelling!r} ({_plural(n, unit)})" for spelling, n in spellings.most_common())
            for spellings in self.label_variants.values()
        )
        return (f"{self.file}: labels that differ only in case are separate classes: {groups}; "
                "pass --normalize-labels to merge each group under its most frequent spelling")

    @property
    def num_skipped(self) -> int:
        return len(self.skipped_rows)

    def skipped_summary(self) -> str:
        """One line for the CLI, e.g. "skipped 3 rows (empty text: 2, empty label: 1)"."""
        if not self.skipped_rows:
            return f"{self.file}: no rows skipped"
        reasons = ", ".join(f"{reason}: {n}" for reason, n in self.skipped.items())
        where = f"; list in {self.bad_rows_file}" if self.bad_rows_file else ""
        return f"{self.file}: skipped {_plural(self.num_skipped, 'row')} ({reasons}){where}"


# -- reading ------------------------------------------------------------------------------
def read_labeled(
    path: str | os.PathLike,
    text_col: str = "text",
    label_col: str = "label",
    text_pair_col: str | None = None,
    task: str = "single",
    label_delimiter: str = ";",
    skip_bad_rows: bool = False,
    require_label: bool = True,
    bad_rows_dir: str | os.PathLike | None = None,
    training: bool = True,
    normalize_labels: bool = False,
) -> LabeledData:
    """Read and validate a labeled CSV/TSV/JSONL file.

    `require_label=False` is for predict input: the label column may be missing, and rows
    with empty text are returned in `skipped_rows` instead of stopping the run.
    `training=True` also checks that the labels hold at least two classes (or, for
    regression, two different values): a model cannot learn from one.
    `normalize_labels=True` merges labels with the same `label_key` under the file's most
    frequent spelling (before that check); otherwise such groups are in `label_variants`.
    Raises `UserInputError` listing every problem; the full row list goes to
    `<file name>.bad-rows.txt` (e.g. `train.csv.bad-rows.txt`) in `bad_rows_dir` (default:
    next to the file).
    """
    path = Path(path)
    _check_options(task, label_delimiter)
    fmt = _check_path(path)
    columns, raw_rows = _read_table(path, fmt)
    spec = _Spec(path, fmt, text_col, label_col, text_pair_col, task, label_delimiter, require_label)

    file_problems = _column_problems(spec, columns)
    if not any(r.values is not None or r.problem for r in raw_rows):
        file_problems.append(_no_rows_message(fmt))
    has_labels = not _missing(label_col, columns)
    # rows with any problem never become examples: skipping them is just not raising
    kept, problems, soft = _convert_rows(spec, columns, raw_rows, has_labels)
    variants = label_variants(kept) if task != "regression" else {}
    if normalize_labels and variants:
        kept, variants = respell_labels(kept, preferred_spellings(kept)), {}
    bad_rows = _first_problem_per_row(problems + soft)
    if (skip_bad_rows or not problems) and not kept and not file_problems:
        file_problems.append(f"no usable rows: all {_plural(len(bad_rows), spec.unit)} have problems")
    if training and require_label and has_labels and kept and not file_problems:
        file_problems.extend(_class_problems(spec, kept))

    bad_rows_file = _write_bad_rows(spec, problems + soft, bad_rows_dir) if problems or soft else None
    if file_problems or (problems and not skip_bad_rows):
        shown = problems + soft if file_problems else problems
        skip_hint = bool(problems) and not skip_bad_rows
        raise UserInputError(_problem_message(spec, file_problems, shown, bad_rows_file, skip_hint))

    skipped_rows = [SkippedRow(row, kind, detail) for row, (kind, detail) in sorted(bad_rows.items())]
    skipped = Counter(s.reason for s in skipped_rows)
    return LabeledData(
        examples=kept,
        file=path,
        task=task,
        columns=columns,
        has_labels=has_labels,
        skipped={k: skipped[k] for k in PROBLEM_ORDER if k in skipped},
        skipped_rows=skipped_rows,
        bad_rows_file=bad_rows_file,
        label_variants=variants,
    )


@dataclass(frozen=True)
class _Spec:
    """What the caller asked for, passed around instead of eight arguments."""

    path: Path
    fmt: str
    text_col: str
    label_col: str
    text_pair_col: str | None
    task: str
    delimiter: str
    require_label: bool

    @property
    def unit(self) -> str:
        return "line" if self.fmt == "jsonl" else "row"


@dataclass
class _RawRow:
    """A record before validation: its values by column, or the structural problem that
    kept it from being split into columns."""

    row: int
    values: dict[str, object] | None
    problem: tuple[str, str] | None = None


@dataclass
class _Problem:
    row: int
    kind: str
    detail: str = ""


def _check_options(task: str, label_delimiter: str) -> None:
    if task not in TASKS:
        raise UserInputError(f"unknown task {task!r}; use one of: {', '.join(TASKS)}")
    if not label_delimiter:
        raise UserInputError("the label delimiter is empty; pass a character such as ';' or '|'")


def _format_of(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    return _FORMATS.get(suffixes[-1]) if suffixes else None


def _check_path(path: Path) -> str:
    """The file's format; raises for a missing file, a directory or an unknown extension."""
    if not path.exists():
        raise UserInputError(f"{path}: no such file; pass a labeled {_SUPPORTED} file")
    if path.is_dir():
        raise UserInputError(f"{path}: is a directory; pass one labeled file (CSV, TSV or JSONL)")
    check_not_stream(path)  # before anything opens it: opening a named pipe waits for a writer
    fmt = _format_of(path)
    if fmt is None:
        hint = ""
        if path.suffix.lower() == ".json":
            hint = "; for a JSON array, convert it to JSON Lines with `jq -c '.[]' in.json > in.jsonl`"
        elif path.suffix.lower() in (".xlsx", ".xls", ".ods"):
            hint = "; export the spreadsheet as CSV"
        raise UserInputError(f"{path}: unknown file type {path.suffix or '(no extension)'!r}; supported: {_SUPPORTED}{hint}")
    return fmt


@contextmanager
def _open_bytes(path: Path):
    opener = _COMPRESSION.get(path.suffix.lower(), open)
    try:
        with opener(path, "rb") as fh:
            yield fh
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise UserInputError(f"{path}: cannot be read ({exc}); check the file and its compression") from None


def _sniff(path: Path) -> None:
    """Catch binary and UTF-16 files up front: the row-by-row checks would report
    every row of them, which hides the one thing to fix."""
    with _open_bytes(path) as fh:
        head = fh.read(_SNIFF_BYTES)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UserInputError(f"{path}: is UTF-16; save it as UTF-8 (e.g. `iconv -f utf-16 -t utf-8`)")
    if b"\x00" in head:
        raise UserInputError(f"{path}: looks like a binary file (it contains NUL bytes); pass a UTF-8 text file")
    if not head.strip():
        raise UserInputError(f"{path}: the file is empty; it needs a header row and data rows")


def _read_table(path: Path, fmt: str) -> tuple[list[str], list[_RawRow]]:
    _sniff(path)
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


def _read_delimited(path: Path, delimiter: str) -> tuple[list[str], list[_RawRow]]:
    """Header and records of a CSV/TSV file. Undecodable bytes become surrogates
    (surrogateescape), so a bad byte spoils only its own row and rows stay numbered."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    kind = "TSV" if delimiter == "\t" else "CSV"
    rows: list[_RawRow] = []
    row = 0
    with _open_bytes(path) as raw, _csv_field_limit(_CSV_FIELD_LIMIT):
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
    bad = next((name for name in header if _SURROGATE.search(name)), None)
    if bad is not None:
        raise UserInputError(f"{path}, row 1 (header): not UTF-8 ({_bad_byte(bad)}); {_hint(NOT_UTF8)}")


def _record_to_row(row: int, record: list[str], header: list[str]) -> _RawRow:
    if not record or (len(record) == 1 and not record[0].strip() and len(header) > 1):
        return _RawRow(row, None)  # blank line: counted, not data
    if len(record) != len(header):
        detail = f"{_plural(len(record), 'field')}, expected {len(header)}"
        if any("\n" in value for value in record):
            detail += "; a quoted field spans several lines: check for an unclosed quote"
        return _RawRow(row, None, (WRONG_FIELD_COUNT, detail))
    return _RawRow(row, dict(zip(header, record)))


def _read_jsonl(path: Path) -> tuple[list[str], list[_RawRow]]:
    """Objects of a JSON Lines file; the columns are every key seen, in order of first use."""
    rows: list[_RawRow] = []
    columns: dict[str, None] = {}
    with _open_bytes(path) as fh:
        for line_no, raw in enumerate(fh, 1):
            if line_no == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            parsed = _parse_json_line(line_no, raw)
            if parsed.values:
                columns.update(dict.fromkeys(parsed.values))
            rows.append(parsed)
    return list(columns), rows


def _parse_json_line(line_no: int, raw: bytes) -> _RawRow:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _RawRow(line_no, None, (NOT_UTF8, f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1}"))
    if not line.strip():
        return _RawRow(line_no, None)
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return _RawRow(line_no, None, (BAD_JSON, f"{exc.msg} at column {exc.colno}"))
    if not isinstance(obj, dict):
        return _RawRow(line_no, None, (BAD_JSON, f"a JSON {type(obj).__name__}, not an object"))
    return _RawRow(line_no, obj)


# -- columns ------------------------------------------------------------------------------
def _missing(column: str | None, columns: list[str]) -> bool:
    return column is not None and column not in columns


def _column_problems(spec: _Spec, columns: list[str]) -> list[str]:
    wanted = [(spec.text_col, "--text-col"), (spec.text_pair_col, "--text-pair-col")]
    if spec.require_label:
        wanted.append((spec.label_col, "--label-col"))
    problems = [
        _missing_column_message(name, flag, columns, spec)
        for name, flag in wanted
        if _missing(name, columns)
    ]
    if spec.fmt != "jsonl":
        dupes = sorted({name for name, _ in wanted if name and columns.count(name) > 1})
        problems += [f"column {name!r} appears more than once in the header; rename one" for name in dupes]
    return problems


def _missing_column_message(name: str, flag: str, columns: list[str], spec: _Spec) -> str:
    shown = ", ".join(repr(c) for c in columns[:20]) + (" ..." if len(columns) > 20 else "")
    message = f"missing column {name!r}; the file has columns {shown or '(none)'}; pass {flag} NAME to use another"
    near = [c for c in columns if c.lower() == name.lower()]
    if near:
        message += f" (did you mean {near[0]!r}? names are case-sensitive)"
    if spec.fmt == "csv" and len(columns) == 1 and "\t" in columns[0]:
        message += "; the header holds tabs: if this is a TSV file, name it .tsv"
    elif spec.fmt == "tsv" and len(columns) == 1 and "," in columns[0]:
        message += "; the header holds commas: if this is a CSV file, name it .csv"
    elif spec.fmt == "csv" and len(columns) == 1 and ";" in columns[0]:
        message += ("; the header holds semicolons: the file is ';'-delimited (as spreadsheets save CSV in "
                    "some locales); save it comma-delimited, or tab-delimited as .tsv")
    elif spec.fmt != "jsonl" and not near:
        message += "; the first row must be a header naming the columns"
    return message


def _no_rows_message(fmt: str) -> str:
    if fmt == "jsonl":
        return "no data: the file holds no JSON objects"
    return "no data rows: the file has only a header"


# -- rows ---------------------------------------------------------------------------------
def _convert_rows(
    spec: _Spec, columns: list[str], rows: list[_RawRow], has_labels: bool
) -> tuple[list[LabeledExample], list[_Problem], list[_Problem]]:
    """Examples from the rows that have every needed column, plus the row problems.

    `soft` problems (empty text in predict input) skip the row without stopping the run.
    """
    examples: list[LabeledExample] = []
    problems: list[_Problem] = []
    soft: list[_Problem] = []
    can_build = not any(_missing(c, columns) for c in (spec.text_col, spec.text_pair_col))
    for raw in rows:
        if raw.problem:
            problems.append(_Problem(raw.row, *raw.problem))
            continue
        if raw.values is None:
            continue
        found = _row_problems(spec, raw, has_labels, columns)
        hard = [p for p in found if spec.require_label or p.kind not in (EMPTY_TEXT, EMPTY_TEXT_PAIR)]
        problems += hard
        soft += [p for p in found if p not in hard]
        if can_build and not found:
            examples.append(_example(spec, raw, has_labels))
    return examples, problems, soft


def _row_problems(spec: _Spec, raw: _RawRow, has_labels: bool, columns: list[str]) -> list[_Problem]:
    found: list[_Problem] = []
    text_cols = [(c, kind) for c, kind in ((spec.text_col, EMPTY_TEXT), (spec.text_pair_col, EMPTY_TEXT_PAIR)) if c]
    for column, empty_kind in text_cols:
        if column in columns:
            problem = _text_problem(raw, column, empty_kind)
            if problem:
                found.append(problem)
    if has_labels:
        problem = _label_problem(spec, raw)
        if problem:
            found.append(problem)
    return found


def _value_problem(raw: _RawRow, column: str) -> _Problem | None:
    """Structural trouble with one cell: absent (JSONL), undecodable, or not a scalar."""
    values = raw.values or {}
    if column not in values:
        return _Problem(raw.row, MISSING_FIELD, f"no {column!r} key")
    value = values[column]
    if isinstance(value, str) and _SURROGATE.search(value):
        return _Problem(raw.row, NOT_UTF8, f"{_bad_byte(value)} in column {column!r}")
    if isinstance(value, (dict, bool)):
        return _Problem(raw.row, BAD_VALUE, f"{column!r} is a JSON {type(value).__name__}")
    return None


def _text_problem(raw: _RawRow, column: str, empty_kind: str) -> _Problem | None:
    problem = _value_problem(raw, column)
    if problem:
        return problem
    value = raw.values[column]
    if isinstance(value, list):
        return _Problem(raw.row, BAD_VALUE, f"{column!r} is a JSON list, not text")
    if value is None or not str(value).strip():
        return _Problem(raw.row, empty_kind)
    return None


def _label_problem(spec: _Spec, raw: _RawRow) -> _Problem | None:
    if not spec.require_label and spec.label_col not in (raw.values or {}):
        return None  # predict input: a JSONL object may leave the label out
    problem = _value_problem(raw, spec.label_col)
    if problem:
        return problem
    value = raw.values[spec.label_col]
    if isinstance(value, list) and spec.task != "multi":
        return _Problem(raw.row, BAD_VALUE, f"{spec.label_col!r} is a JSON list; lists need --task multi")
    label = _parse_label(spec, value)
    if label is None or label == ():
        # predict input may leave labels blank; a labeled file may not
        return _Problem(raw.row, EMPTY_LABEL) if spec.require_label else None
    if isinstance(label, float) and not math.isfinite(label):
        return _Problem(raw.row, NOT_A_NUMBER, f"{_cell_text(value)!r}")
    if label is _NOT_A_NUMBER:
        detail = f"{_cell_text(value).strip()!r}"
        if "," in detail:
            detail += ": use a dot as the decimal point"
        return _Problem(raw.row, NOT_A_NUMBER, detail)
    return None


_NOT_A_NUMBER = object()


def _cell_text(value: object) -> str:
    """A cell as the string a user wrote. JSON numbers keep their JSON spelling, so
    `1` -> "1" and `1.0` -> "1.0" stay different labels, as in a CSV file."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _parse_label(spec: _Spec, value: object):
    """str, tuple of str, float, None (empty), or _NOT_A_NUMBER."""
    if spec.task == "regression":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        text = _cell_text(value).strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            return _NOT_A_NUMBER
    if spec.task == "multi":
        parts = value if isinstance(value, list) else _cell_text(value).split(spec.delimiter)
        labels = (_cell_text(p).strip() for p in parts)
        # dict.fromkeys: drop repeats ("a;a") but keep the order written
        return tuple(dict.fromkeys(label for label in labels if label))
    return _cell_text(value).strip() or None


def _example(spec: _Spec, raw: _RawRow, has_labels: bool) -> LabeledExample:
    values = raw.values
    label = _parse_label(spec, values.get(spec.label_col)) if has_labels else None
    if label == ():
        label = None  # predict input with a blank multi-label cell: no labels known
    pair = _cell_text(values[spec.text_pair_col]) if spec.text_pair_col else None
    return LabeledExample(text=_cell_text(values[spec.text_col]), label=label, row=raw.row, text_pair=pair)


def _bad_byte(value: str) -> str:
    match = _SURROGATE.search(value)
    return f"byte 0x{ord(match.group()) - 0xDC00:02x}" if match else "bad bytes"


def _first_problem_per_row(problems: list[_Problem]) -> dict[int, tuple[str, str]]:
    rank = {kind: i for i, kind in enumerate(PROBLEM_ORDER)}
    first: dict[int, tuple[str, str]] = {}
    for p in sorted(problems, key=lambda p: (p.row, rank[p.kind])):
        first.setdefault(p.row, (p.kind, p.detail))
    return first


# -- file-level label checks --------------------------------------------------------------
def _label_counts(examples: Iterable[LabeledExample]) -> Counter:
    counts: Counter = Counter()
    for ex in examples:
        if isinstance(ex.label, tuple):
            counts.update(ex.label)
        elif ex.label is not None:
            counts[ex.label] += 1
    return counts


def _class_problems(spec: _Spec, examples: list[LabeledExample]) -> list[str]:
    if spec.task == "regression":
        values = {ex.label for ex in examples}
        if len(values) == 1:
            return [f"every row has the label {values.pop()}; a regression target needs different values"]
        return []
    counts = _label_counts(examples)
    if len(counts) == 1:
        (label, n), = counts.items()
        message = (
            f"a single class only: every usable row ({n}) has the label {label!r}; a classifier needs "
            f"at least two classes: check that {spec.label_col!r} is the label column (--label-col)"
        )
        return [message]
    return []


# -- reporting ----------------------------------------------------------------------------
_HINTS = {
    NOT_UTF8: "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 IN > OUT`)",
    WRONG_FIELD_COUNT: "quote fields that contain the delimiter, or fix the row",
    BAD_JSON: "each line must be one JSON object",
    MISSING_FIELD: "give every object the key",
    BAD_VALUE: "texts and labels must be strings or numbers",
    EMPTY_TEXT: "fill in the text or remove the row",
    EMPTY_TEXT_PAIR: "fill in the second text or remove the row",
    EMPTY_LABEL: "fill in the label or remove the row",
    NOT_A_NUMBER: "regression labels must be finite numbers",
}


def _hint(kind: str) -> str:
    return _HINTS[kind]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _row_list(problems: list[_Problem], kind: str, unit: str) -> str:
    """"rows 3, 7 (byte 0xe9), ... and 41 more" for the first few rows of one kind."""
    shown = [
        f"{p.row} ({p.detail})" if kind in _DETAILED and p.detail else str(p.row)
        for p in problems[:_ROWS_SHOWN]
    ]
    more = len(problems) - len(shown)
    text = f"{unit if len(problems) == 1 else unit + 's'} {', '.join(shown)}"
    return text + (f" and {more} more" if more else "")


def _problem_message(
    spec: _Spec, file_problems: list[str], problems: list[_Problem], bad_rows_file: Path | None, skip_hint: bool
) -> str:
    numbering = "line numbers" if spec.fmt == "jsonl" else "row 1 is the header, as in a spreadsheet"
    total = len(file_problems) + len({p.kind for p in problems})
    lines = [f"{spec.path}: {_plural(total, 'problem')} found ({numbering}):"]
    lines += [f"  - {text}" for text in file_problems]
    by_kind: dict[str, list[_Problem]] = {}
    for p in sorted(problems, key=lambda p: p.row):
        by_kind.setdefault(p.kind, []).append(p)
    for kind in PROBLEM_ORDER:
        if kind in by_kind:
            rows = by_kind[kind]
            lines.append(
                f"  - {kind} ({_plural(len(rows), spec.unit)}): {_row_list(rows, kind, spec.unit)}; {_hint(kind)}"
            )
    if problems:
        if bad_rows_file:
            lines.append(f"Full list of bad {spec.unit}s: {bad_rows_file}")
        if skip_hint:
            lines.append(
                f"Fix those {spec.unit}s, or pass --skip-bad-rows to leave them out "
                "(problems with the whole file still stop the run)."
            )
    return "\n".join(lines)


def _write_bad_rows(spec: _Spec, problems: list[_Problem], directory: str | os.PathLike | None) -> Path | None:
    """Write every problem row to `<file name>.bad-rows.txt` (the whole name, so
    train.csv and train.jsonl keep separate lists); falls back to a temp dir when the
    chosen directory is not writable. None if nothing could be written."""
    name = f"{spec.path.name}.bad-rows.txt"
    lines = [f"# {spec.path}: {spec.unit}\tproblem\tdetail"]
    lines += [f"{p.row}\t{p.kind}\t{p.detail}" for p in sorted(problems, key=lambda p: (p.row, p.kind))]
    content = "\n".join(lines) + "\n"
    first_choice = Path(directory) if directory is not None else spec.path.parent
    for make_dir in (lambda: first_choice, lambda: Path(tempfile.mkdtemp(prefix="nlpft-bad-rows-"))):
        try:
            target = make_dir() / name
            target.write_text(content, encoding="utf-8")
            return target
        except OSError:
            continue
    return None


# -- labels that differ only in case ------------------------------------------------------
def label_key(label: str) -> str:
    """What --normalize-labels compares: the label in Unicode NFKC form (full-width letters
    become plain ones), without surrounding whitespace, casefolded ("Pos", " POS" -> "pos")."""
    return unicodedata.normalize("NFKC", label).strip().casefold()


def label_variants(examples: Iterable[LabeledExample]) -> dict[str, Counter]:
    """{key: Counter(spelling -> rows)} for each `label_key` written more than one way."""
    groups: dict[str, Counter] = {}
    for label, n in _label_counts(examples).items():
        groups.setdefault(label_key(label), Counter())[label] = n
    return {key: spellings for key, spellings in groups.items() if len(spellings) > 1}


def preferred_spellings(examples: Sequence[LabeledExample]) -> dict[str, str]:
    """{key: the spelling with the most rows}; on a tie, the one that comes first in the file."""
    counts = _label_counts(examples)  # in first-seen order: a later spelling must have more rows to win
    best: dict[str, str] = {}
    for label in counts:
        key = label_key(label)
        if key not in best or counts[label] > counts[best[key]]:
            best[key] = label
    return best


def respell_labels(examples: Iterable[LabeledExample], spellings: dict[str, str]) -> list[LabeledExample]:
    """`examples` with every label whose key is in `spellings` written that way; other
    labels (and regression values) unchanged. A multi-label row keeps each label once."""
    def respell(label: str) -> str:
        return spellings.get(label_key(label), label)

    result = []
    for ex in examples:
        if isinstance(ex.label, str):
            ex = replace(ex, label=respell(ex.label))
        elif isinstance(ex.label, tuple):
            ex = replace(ex, label=tuple(dict.fromkeys(respell(label) for label in ex.label)))
        result.append(ex)
    return result


# -- label map ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelMap:
    """Label names <-> ids. Ids follow the sorted (string) order of the training labels,
    so the same training file always gives the same ids."""

    labels: tuple[str, ...]

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label: object) -> bool:
        return label in self.labels

    def encode(self, label: str) -> int:
        return self.label2id[label]

    def encode_multi(self, labels: Iterable[str]) -> np.ndarray:
        """A multi-hot float32 vector, the target of a multi-label classifier."""
        vector = np.zeros(len(self.labels), dtype=np.float32)
        lookup = self.label2id
        for label in labels:
            vector[lookup[label]] = 1.0
        return vector

    def decode(self, label_id: int) -> str:
        return self.labels[label_id]

    def to_dict(self) -> dict:
        """JSON-ready; the shape of a Hugging Face config's label2id/id2label."""
        return {"label2id": self.label2id, "id2label": {str(i): label for i, label in enumerate(self.labels)}}

    @classmethod
    def from_dict(cls, data: dict, source: str = "label map") -> LabelMap:
        try:
            label2id = data["label2id"] if "label2id" in data else {v: int(k) for k, v in data["id2label"].items()}
            ordered = sorted(label2id.items(), key=lambda item: int(item[1]))
            if [int(i) for _, i in ordered] != list(range(len(ordered))):
                raise ValueError("ids are not 0..n-1")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserInputError(f"{source}: not a valid label map ({exc}); it needs label2id with ids 0..n-1") from None
        return cls(tuple(str(label) for label, _ in ordered))

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> LabelMap:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserInputError(f"{path}: no such label map; it is written next to the trained model") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserInputError(f"{path}: cannot read the label map ({exc})") from None
        if not isinstance(data, dict):
            raise UserInputError(f"{path}: not a valid label map (a JSON {type(data).__name__}, not an object)")
        return cls.from_dict(data, source=str(path))


def build_label_map(examples: Iterable[LabeledExample]) -> LabelMap:
    """The label map of a training split: every label name seen, sorted as strings."""
    counts = _label_counts(examples)
    if any(isinstance(label, float) for label in counts):
        raise ValueError("regression labels are numbers; a label map is for classification")
    return LabelMap(tuple(sorted(counts)))


def check_labels(examples: Iterable[LabeledExample], label_map: LabelMap, file: str | os.PathLike) -> None:
    """Raise if `examples` (valid/test/predict input) hold labels the training split lacked,
    naming each such label with its row count and first row."""
    unseen: Counter = Counter()
    first_row: dict[str, int] = {}
    for ex in examples:
        labels = ex.label if isinstance(ex.label, tuple) else (ex.label,)
        for label in labels:
            if isinstance(label, str) and label not in label_map:
                unseen[label] += 1
                first_row.setdefault(label, ex.row)
    if not unseen:
        return
    unit = "line" if _format_of(Path(file)) == "jsonl" else "row"
    ranked = sorted(unseen.items(), key=lambda item: (-item[1], item[0]))
    listed = ", ".join(f"{label!r} ({_plural(n, unit)}, first at {unit} {first_row[label]})" for label, n in ranked[:20])
    if len(ranked) > 20:
        listed += f" and {len(ranked) - 20} more labels"
    known = ", ".join(repr(label) for label in label_map.labels[:10])
    if len(label_map) > 10:
        known += f" and {len(label_map) - 10} more"
    keys = {label_key(label): label for label in label_map.labels}
    case_only = [f"{label!r} is {keys[label_key(label)]!r}" for label, _ in ranked if label_key(label) in keys]
    case_hint = f" ({', '.join(case_only[:5])} but for case: pass --normalize-labels)" if case_only else ""
    raise UserInputError(
        f"{file}: labels not seen in training: {listed}; the training labels are {known}{case_hint}. "
        "A classifier cannot predict labels it never saw: fix these labels, or add examples "
        "of them to the training file"
    )


# -- splitting ----------------------------------------------------------------------------
def stratified_split(
    examples: Sequence[LabeledExample],
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 13,
) -> tuple[list[LabeledExample], list[LabeledExample], list[LabeledExample]]:
    """Seeded train/valid/test split keeping each class's share in every part.

    Single-label rows are stratified by label, multi-label rows by their first label,
    regression rows not at all (a plain shuffled split). Every class keeps at least one
    row in train, so a class with one row lands there rather than making the split fail.
    Holdout sizes are round(n * fraction), at least 1 when the fraction is above 0 (and
    the classes leave room). Each part keeps file order; the same seed gives the same split.
    """
    _check_fractions(valid_fraction, test_fraction)
    examples = list(examples)
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(_stratum(ex.label), []).append(i)
    keys = sorted(groups)
    sizes = [len(groups[k]) for k in keys]
    test_counts = _apportion(sizes, _holdout_size(len(examples), test_fraction), [s - 1 for s in sizes])
    room = [s - 1 - t for s, t in zip(sizes, test_counts)]
    valid_counts = _apportion(sizes, _holdout_size(len(examples), valid_fraction), room)

    rng = np.random.default_rng(seed)
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    for key, n_test, n_valid in zip(keys, test_counts, valid_counts):
        order = [groups[key][i] for i in rng.permutation(len(groups[key]))]
        parts[2].extend(order[:n_test])
        parts[1].extend(order[n_test : n_test + n_valid])
        parts[0].extend(order[n_test + n_valid :])
    train, valid, test = ([examples[i] for i in sorted(part)] for part in parts)
    return train, valid, test


def _check_fractions(valid_fraction: float, test_fraction: float) -> None:
    for name, value in (("valid", valid_fraction), ("test", test_fraction)):
        if not 0 <= value < 1:
            raise UserInputError(f"the {name} fraction must be at least 0 and below 1, not {value}")
    if valid_fraction + test_fraction >= 1:
        raise UserInputError(
            f"valid fraction {valid_fraction} + test fraction {test_fraction} leave nothing to train on; "
            "their sum must be below 1"
        )


def _stratum(label: Label) -> str:
    if isinstance(label, tuple):
        return label[0] if label else ""
    if isinstance(label, str):
        return label
    return ""  # regression or unlabeled: one stratum, a plain shuffled split


def _holdout_size(n: int, fraction: float) -> int:
    return max(1, round(n * fraction)) if fraction > 0 and n > 0 else 0


def _apportion(sizes: list[int], total: int, caps: list[int]) -> list[int]:
    """Split `total` over classes in proportion to `sizes` (largest remainder), never
    giving a class more than its cap. Ties go to the bigger, then the earlier class."""
    n = sum(sizes)
    if n == 0 or total == 0:
        return [0] * len(sizes)
    quotas = [size * total / n for size in sizes]
    counts = [min(math.floor(q), cap) for q, cap in zip(quotas, caps)]
    order = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - math.floor(quotas[i])), -sizes[i], i))
    remaining = total - sum(counts)
    while remaining > 0:
        open_classes = [i for i in order if counts[i] < caps[i]]
        if not open_classes:
            break
        for i in open_classes[:remaining]:
            counts[i] += 1
        remaining -= min(remaining, len(open_classes))
    return counts
