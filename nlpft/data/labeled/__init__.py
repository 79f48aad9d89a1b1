"""Labeled text files (CSV, TSV, JSON Lines) and datasets (hf:NAME, Parquet, save_to_disk,
through `datasets`: `nlpft.data.sources`) read and validated before any model loads.

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
* datasets: the dataset's row index (from 0). A `ClassLabel` cell is its label name.

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

The package, one responsibility per module (each imports only those above it):

* `problems`: the kinds of row-level problem and the wording shared by every report;
* `examples`: `LabeledExample` and `SkippedRow`, what a file turns into;
* `formats`: CSV/TSV/JSONL reading, compression, encoding and binary-file sniffing;
* `dataset_table`: a dataset source's rows in the form `formats` gives them;
* `labels`: label counts, case variants, `LabelMap`, unseen-label checks;
* `validation`: column and row checks, the problem message and the bad-rows file;
* `splitting`: the seeded stratified train/valid/test split;
* `reader`: `read_labeled`, which runs the rest, and `LabeledData`.
"""

from nlpft.data.labeled.examples import TASKS, Label, LabeledExample, SkippedRow
from nlpft.data.labeled.labels import (
    LabelMap,
    build_label_map,
    check_labels,
    label_key,
    label_variants,
    preferred_spellings,
    respell_labels,
)
from nlpft.data.labeled.problems import (
    BAD_JSON,
    BAD_VALUE,
    EMPTY_LABEL,
    EMPTY_TEXT,
    EMPTY_TEXT_PAIR,
    MISSING_FIELD,
    NOT_A_NUMBER,
    NOT_UTF8,
    PROBLEM_ORDER,
    WRONG_FIELD_COUNT,
)
from nlpft.data.labeled.reader import LabeledData, read_labeled
from nlpft.data.labeled.splitting import (
    default_fractions,
    held_out_fractions,
    stratified_split,
)

__all__ = [
    "default_fractions",
    "held_out_fractions",
    "BAD_JSON",
    "BAD_VALUE",
    "EMPTY_LABEL",
    "EMPTY_TEXT",
    "EMPTY_TEXT_PAIR",
    "MISSING_FIELD",
    "NOT_A_NUMBER",
    "NOT_UTF8",
    "PROBLEM_ORDER",
    "TASKS",
    "WRONG_FIELD_COUNT",
    "Label",
    "LabelMap",
    "LabeledData",
    "LabeledExample",
    "SkippedRow",
    "build_label_map",
    "check_labels",
    "label_key",
    "label_variants",
    "preferred_spellings",
    "read_labeled",
    "respell_labels",
    "stratified_split",
]
