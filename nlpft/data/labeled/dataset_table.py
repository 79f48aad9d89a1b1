"""A dataset source (`nlpft.data.sources`: hf:NAME, Parquet, save_to_disk) read into the raw
rows the CSV/JSONL readers produce, so the same checks judge it.

A row's number is its index in the dataset (from 0). Cells arrive as the Python values
`datasets` gives: a `ClassLabel` cell becomes its label name (a `Sequence` of ClassLabel, a
list of names), -1 (ClassLabel's "no label") becomes an empty cell; bytes are decoded as UTF-8
with bad bytes kept as surrogates (the not-UTF-8 check reports them); values JSON has no
spelling for (dates, decimals) become their text. Only the columns a read needs are
converted.
"""

from __future__ import annotations

from dataclasses import dataclass

from nlpft.data.labeled.formats import RawRow
from nlpft.data.sources import DatasetSource, open_dataset

_BATCH_ROWS = 1000


@dataclass
class DatasetTable:
    columns: list[str]
    rows: list[RawRow]
    split: str | None  # the split read, when the source holds several
    note: str | None  # which split was read, when the source named none of several


def read_dataset_table(source: DatasetSource, role: str, wanted: list[str | None]) -> DatasetTable:
    """The rows of the split of `source` that `role` reads, with the `wanted` columns that
    the dataset has (the others are reported missing by the column checks)."""
    opened = open_dataset(source, role)
    dataset = opened.dataset
    split = opened.split if source.split or opened.note else None
    columns = list(dataset.column_names)
    needed = [name for name in dict.fromkeys(wanted) if name is not None and name in columns]
    names = {name: _label_names(opened.features.get(name)) for name in needed}
    if not needed:  # nothing to convert: rows only count (the missing columns stop the read)
        return DatasetTable(columns, [RawRow(index, {}) for index in range(len(dataset))], split,
                            opened.note)
    rows: list[RawRow] = []
    for batch in dataset.select_columns(needed).iter(batch_size=_BATCH_ROWS):
        for offset in range(len(batch[needed[0]])):
            values = {name: _cell(batch[name][offset], names[name]) for name in needed}
            rows.append(RawRow(len(rows), values))
    return DatasetTable(columns, rows, split, opened.note)


def _label_names(feature) -> list[str] | None:
    """The names of a ClassLabel column, or of a list-of-ClassLabel column; None otherwise."""
    from datasets import ClassLabel

    inner = feature
    if isinstance(inner, (list, tuple)) and len(inner) == 1:
        inner = inner[0]
    inner = getattr(inner, "feature", inner)  # Sequence(ClassLabel) / List(ClassLabel)
    return list(inner.names) if isinstance(inner, ClassLabel) else None


def _cell(value, label_names: list[str] | None):
    if label_names is not None:
        if isinstance(value, list):
            return [_label_name(v, label_names) for v in value]
        return _label_name(value, label_names)
    if isinstance(value, list):
        return [_cell(v, None) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    if value is None or isinstance(value, (str, int, float, bool, dict)):
        return value
    return str(value)


def _label_name(value, label_names: list[str]):
    if isinstance(value, int) and not isinstance(value, bool):
        if value == -1:
            return None  # ClassLabel's missing label
        if 0 <= value < len(label_names):
            return label_names[value]
    return value
