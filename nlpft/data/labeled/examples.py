"""What a labeled file turns into: one `LabeledExample` per usable row, a `SkippedRow`
per row left out."""

from __future__ import annotations

from dataclasses import dataclass

TASKS = ("single", "multi", "regression")
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
