"""`read_labeled`: a labeled file read, checked and turned into `LabeledData`, or one
`UserInputError` listing every problem."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nlpft.data.labeled.examples import TASKS, Label, LabeledExample, SkippedRow
from nlpft.data.labeled.formats import check_path, read_table
from nlpft.data.labeled.labels import count_labels, label_variants, preferred_spellings, respell_labels
from nlpft.data.labeled.problems import PROBLEM_ORDER, plural
from nlpft.data.labeled.validation import (
    DATASET,
    ReadSpec,
    class_problems,
    column_problems,
    convert_rows,
    first_problem_per_row,
    is_missing,
    no_rows_message,
    problem_message,
    write_bad_rows,
)
from nlpft.data.sources import dataset_source
from nlpft.errors import UserInputError


@dataclass
class LabeledData(Sequence):
    """The usable rows of one file, plus what was left out and why.

    `skipped` counts skipped rows per reason (each row counted once); `skipped_rows` has
    the row numbers, e.g. for `predict` to report rows it could not predict. `file` is the
    file read, or a dataset source's spec as given (`nlpft.data.sources`); `note` says which
    split of a dataset source was read when it had several.
    """

    examples: list[LabeledExample]
    file: Path | str
    task: str
    columns: list[str] = field(default_factory=list)
    has_labels: bool = True
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_rows: list[SkippedRow] = field(default_factory=list)
    bad_rows_file: Path | None = None
    label_variants: dict[str, Counter] = field(default_factory=dict)
    unit: str = "row"  # what a row number counts: "row", or "line" in JSON Lines
    note: str | None = None

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
        return count_labels(self.examples)

    def label_variants_warning(self) -> str | None:
        """One line for the CLI when labels differ only in case or width, with each
        spelling's count; None when there are none (or they were merged)."""
        if not self.label_variants:
            return None
        groups = "; ".join(
            ", ".join(f"{spelling!r} ({plural(n, self.unit)})" for spelling, n in spellings.most_common())
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
        return f"{self.file}: skipped {plural(self.num_skipped, 'row')} ({reasons}){where}"


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
    role: str = "train",
) -> LabeledData:
    """Read and validate a labeled CSV/TSV/JSONL file, or a dataset source that `datasets`
    reads (hf:NAME[:CONFIG][@SPLIT], a Parquet file, a save_to_disk directory; see
    `nlpft.data.sources`), whose row numbers are the dataset's row indices.

    `require_label=False` is for predict input: the label column may be missing, and rows
    with empty text are returned in `skipped_rows` instead of stopping the run.
    `training=True` also checks that the labels hold at least two classes (or, for
    regression, two different values): a model cannot learn from one.
    `normalize_labels=True` merges labels with the same `label_key` under the file's most
    frequent spelling (before that check); otherwise such groups are in `label_variants`.
    Raises `UserInputError` listing every problem; the full row list goes to
    `<file name>.bad-rows.txt` (e.g. `train.csv.bad-rows.txt`) in `bad_rows_dir` (default:
    next to the file).
    `role` (train, valid, test) picks the split of a dataset source that names none.
    """
    _check_options(task, label_delimiter)
    source = dataset_source(path)
    note = split = None
    if source is not None:
        from nlpft.data.labeled.dataset_table import read_dataset_table

        path, fmt = source.given, DATASET
        table = read_dataset_table(source, role, [text_col, text_pair_col, label_col])
        columns, raw_rows, split, note = table.columns, table.rows, table.split, table.note
    else:
        path = Path(path)
        fmt = check_path(path)
        columns, raw_rows = read_table(path, fmt)
    spec = ReadSpec(path, fmt, text_col, label_col, text_pair_col, task, label_delimiter, require_label, split)

    file_problems = column_problems(spec, columns)
    if not any(r.values is not None or r.problem for r in raw_rows):
        file_problems.append(no_rows_message(fmt))
    has_labels = not is_missing(label_col, columns)
    # rows with any problem never become examples: skipping them is just not raising
    kept, problems, soft = convert_rows(spec, columns, raw_rows, has_labels)
    variants = label_variants(kept) if task != "regression" else {}
    if normalize_labels and variants:
        kept, variants = respell_labels(kept, preferred_spellings(kept)), {}
    bad_rows = first_problem_per_row(problems + soft)
    if (skip_bad_rows or not problems) and not kept and not file_problems:
        file_problems.append(f"no usable rows: all {plural(len(bad_rows), spec.unit)} have problems")
    if training and require_label and has_labels and kept and not file_problems:
        file_problems.extend(class_problems(spec, kept))

    bad_rows_file = write_bad_rows(spec, problems + soft, bad_rows_dir) if problems or soft else None
    if file_problems or (problems and not skip_bad_rows):
        shown = problems + soft if file_problems else problems
        skip_hint = bool(problems) and not skip_bad_rows
        raise UserInputError(problem_message(spec, file_problems, shown, bad_rows_file, skip_hint))

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
        unit=spec.unit,
        note=note,
    )


def _check_options(task: str, label_delimiter: str) -> None:
    if task not in TASKS:
        raise UserInputError(f"unknown task {task!r}; use one of: {', '.join(TASKS)}")
    if not label_delimiter:
        raise UserInputError("the label delimiter is empty; pass a character such as ';' or '|'")
