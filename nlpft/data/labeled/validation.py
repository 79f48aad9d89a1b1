"""Checking the columns and rows of a labeled file, and reporting what is wrong: one
message listing every kind of problem with its first rows, and a file with all of them."""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nlpft.data.labeled.examples import LabeledExample
from nlpft.data.labeled.formats import RawRow
from nlpft.data.labeled.labels import count_labels
from nlpft.data.labeled.problems import (
    BAD_VALUE,
    DETAILED_KINDS,
    EMPTY_LABEL,
    EMPTY_TEXT,
    EMPTY_TEXT_PAIR,
    MISSING_FIELD,
    NOT_A_NUMBER,
    NOT_UTF8,
    PROBLEM_ORDER,
    SURROGATE,
    Problem,
    bad_byte,
    hint,
    plural,
)


#: the format name of a table read through `datasets` (hf:NAME, Parquet, save_to_disk)
DATASET = "dataset"


@dataclass(frozen=True)
class ReadSpec:
    """What the caller asked for, passed around instead of eight arguments. `path` is the
    input as messages name it: a file, or a dataset source's spec as given."""

    path: Path | str
    fmt: str
    text_col: str
    label_col: str
    text_pair_col: str | None
    task: str
    delimiter: str
    require_label: bool
    split: str | None = None  # the split of a dataset source read, when it had several

    @property
    def unit(self) -> str:
        return "line" if self.fmt == "jsonl" else "row"

    @property
    def numbering(self) -> str:
        if self.fmt == "jsonl":
            return "line numbers"
        if self.fmt == DATASET:
            return "row numbers are the dataset's row indices, from 0"
        return "row 1 is the header, as in a spreadsheet"

    @property
    def bad_rows_name(self) -> str:
        """The bad-rows file's name: the input file's whole name (train.csv and train.jsonl
        keep separate lists), or a dataset's name (a local one's file or folder name) and the
        split read, made safe for a file name."""
        if self.fmt != DATASET:
            return f"{Path(self.path).name}.bad-rows.txt"
        from nlpft.data.sources import dataset_source

        source = dataset_source(str(self.path))
        name = source.without_split if source.kind == "hub" else Path(source.location).name
        name += f"@{self.split}" if self.split else ""
        return re.sub(r"[^\w.@=+-]+", "_", name).strip("_") + ".bad-rows.txt"

    @property
    def home(self) -> Path | None:
        """Where the bad-rows file goes unless the caller says: beside the input file or the
        local dataset; a Hub dataset has no such place."""
        if self.fmt != DATASET:
            return Path(self.path).parent
        from nlpft.data.sources import dataset_source

        local = dataset_source(str(self.path)).local_path
        return local.parent if local is not None else None


def is_missing(column: str | None, columns: list[str]) -> bool:
    return column is not None and column not in columns


def column_problems(spec: ReadSpec, columns: list[str]) -> list[str]:
    wanted = [(spec.text_col, "--text-col"), (spec.text_pair_col, "--text-pair-col")]
    if spec.require_label:
        wanted.append((spec.label_col, "--label-col"))
    problems = [
        _missing_column_message(name, flag, columns, spec)
        for name, flag in wanted
        if is_missing(name, columns)
    ]
    if spec.fmt not in ("jsonl", DATASET):
        dupes = sorted({name for name, _ in wanted if name and columns.count(name) > 1})
        problems += [f"column {name!r} appears more than once in the header; rename one" for name in dupes]
    return problems


def _missing_column_message(name: str, flag: str, columns: list[str], spec: ReadSpec) -> str:
    shown = ", ".join(repr(c) for c in columns[:20]) + (" ..." if len(columns) > 20 else "")
    holder = "dataset" if spec.fmt == DATASET else "file"
    message = f"missing column {name!r}; the {holder} has columns {shown or '(none)'}; pass {flag} NAME to use another"
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
    elif spec.fmt in ("csv", "tsv") and not near:
        message += "; the first row must be a header naming the columns"
    return message


def no_rows_message(fmt: str) -> str:
    if fmt == "jsonl":
        return "no data: the file holds no JSON objects"
    if fmt == DATASET:
        return "no data rows: the dataset split is empty"
    return "no data rows: the file has only a header"


def convert_rows(
    spec: ReadSpec, columns: list[str], rows: list[RawRow], has_labels: bool
) -> tuple[list[LabeledExample], list[Problem], list[Problem]]:
    """Examples from the rows that have every needed column, plus the row problems.

    `soft` problems (empty text in predict input) skip the row without stopping the run.
    """
    examples: list[LabeledExample] = []
    problems: list[Problem] = []
    soft: list[Problem] = []
    can_build = not any(is_missing(c, columns) for c in (spec.text_col, spec.text_pair_col))
    for raw in rows:
        if raw.problem:
            problems.append(Problem(raw.row, *raw.problem))
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


def _row_problems(spec: ReadSpec, raw: RawRow, has_labels: bool, columns: list[str]) -> list[Problem]:
    found: list[Problem] = []
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


def _value_problem(raw: RawRow, column: str) -> Problem | None:
    """Structural trouble with one cell: absent (JSONL), undecodable, or not a scalar."""
    values = raw.values or {}
    if column not in values:
        return Problem(raw.row, MISSING_FIELD, f"no {column!r} key")
    value = values[column]
    if isinstance(value, str) and SURROGATE.search(value):
        return Problem(raw.row, NOT_UTF8, f"{bad_byte(value)} in column {column!r}")
    if isinstance(value, (dict, bool)):
        return Problem(raw.row, BAD_VALUE, f"{column!r} is a JSON {type(value).__name__}")
    return None


def _text_problem(raw: RawRow, column: str, empty_kind: str) -> Problem | None:
    problem = _value_problem(raw, column)
    if problem:
        return problem
    value = raw.values[column]
    if isinstance(value, list):
        return Problem(raw.row, BAD_VALUE, f"{column!r} is a JSON list, not text")
    if value is None or not str(value).strip():
        return Problem(raw.row, empty_kind)
    return None


def _label_problem(spec: ReadSpec, raw: RawRow) -> Problem | None:
    if not spec.require_label and spec.label_col not in (raw.values or {}):
        return None  # predict input: a JSONL object may leave the label out
    problem = _value_problem(raw, spec.label_col)
    if problem:
        return problem
    value = raw.values[spec.label_col]
    if isinstance(value, list) and spec.task != "multi":
        return Problem(raw.row, BAD_VALUE, f"{spec.label_col!r} is a JSON list; lists need --task multi")
    label = _parse_label(spec, value)
    if label is None or label == ():
        # predict input may leave labels blank; a labeled file may not
        return Problem(raw.row, EMPTY_LABEL) if spec.require_label else None
    if isinstance(label, float) and not math.isfinite(label):
        return Problem(raw.row, NOT_A_NUMBER, f"{_cell_text(value)!r}")
    if label is _NOT_A_NUMBER:
        detail = f"{_cell_text(value).strip()!r}"
        if "," in detail:
            detail += ": use a dot as the decimal point"
        return Problem(raw.row, NOT_A_NUMBER, detail)
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


def _parse_label(spec: ReadSpec, value: object):
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


def _example(spec: ReadSpec, raw: RawRow, has_labels: bool) -> LabeledExample:
    values = raw.values
    label = _parse_label(spec, values.get(spec.label_col)) if has_labels else None
    if label == ():
        label = None  # predict input with a blank multi-label cell: no labels known
    pair = _cell_text(values[spec.text_pair_col]) if spec.text_pair_col else None
    return LabeledExample(text=_cell_text(values[spec.text_col]), label=label, row=raw.row, text_pair=pair)


def first_problem_per_row(problems: list[Problem]) -> dict[int, tuple[str, str]]:
    rank = {kind: i for i, kind in enumerate(PROBLEM_ORDER)}
    first: dict[int, tuple[str, str]] = {}
    for p in sorted(problems, key=lambda p: (p.row, rank[p.kind])):
        first.setdefault(p.row, (p.kind, p.detail))
    return first


def class_problems(spec: ReadSpec, examples: list[LabeledExample]) -> list[str]:
    if spec.task == "regression":
        values = {ex.label for ex in examples}
        if len(values) == 1:
            return [f"every row has the label {values.pop()}; a regression target needs different values"]
        return []
    counts = count_labels(examples)
    if len(counts) == 1:
        (label, n), = counts.items()
        message = (
            f"a single class only: every usable row ({n}) has the label {label!r}; a classifier needs "
            f"at least two classes: check that {spec.label_col!r} is the label column (--label-col)"
        )
        return [message]
    return []


_ROWS_SHOWN = 5


def _row_list(problems: list[Problem], kind: str, unit: str) -> str:
    """"rows 3, 7 (byte 0xe9), ... and 41 more" for the first few rows of one kind."""
    shown = [
        f"{p.row} ({p.detail})" if kind in DETAILED_KINDS and p.detail else str(p.row)
        for p in problems[:_ROWS_SHOWN]
    ]
    more = len(problems) - len(shown)
    text = f"{unit if len(problems) == 1 else unit + 's'} {', '.join(shown)}"
    return text + (f" and {more} more" if more else "")


def problem_message(
    spec: ReadSpec, file_problems: list[str], problems: list[Problem], bad_rows_file: Path | None, skip_hint: bool
) -> str:
    total = len(file_problems) + len({p.kind for p in problems})
    lines = [f"{spec.path}: {plural(total, 'problem')} found ({spec.numbering}):"]
    lines += [f"  - {text}" for text in file_problems]
    by_kind: dict[str, list[Problem]] = {}
    for p in sorted(problems, key=lambda p: p.row):
        by_kind.setdefault(p.kind, []).append(p)
    for kind in PROBLEM_ORDER:
        if kind in by_kind:
            rows = by_kind[kind]
            lines.append(
                f"  - {kind} ({plural(len(rows), spec.unit)}): {_row_list(rows, kind, spec.unit)}; {hint(kind)}"
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


def write_bad_rows(spec: ReadSpec, problems: list[Problem], directory: str | os.PathLike | None) -> Path | None:
    """Write every problem row to `spec.bad_rows_name` in `directory` (default: the input's
    `spec.home`); falls back to a temp dir when that is not writable (or a Hub dataset has
    no home). None if nothing could be written."""
    name = spec.bad_rows_name
    lines = [f"# {spec.path}: {spec.unit}\tproblem\tdetail"]
    lines += [f"{p.row}\t{p.kind}\t{p.detail}" for p in sorted(problems, key=lambda p: (p.row, p.kind))]
    content = "\n".join(lines) + "\n"
    first_choice = Path(directory) if directory is not None else spec.home
    choices = [lambda: first_choice] if first_choice is not None else []
    for make_dir in [*choices, lambda: Path(tempfile.mkdtemp(prefix="nlpft-bad-rows-"))]:
        try:
            target = make_dir() / name
            target.write_text(content, encoding="utf-8")
            return target
        except OSError:
            continue
    return None
