"""A seeded, stratified train/valid/test split of labeled examples."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nlpft.data.labeled.examples import Label, LabeledExample
from nlpft.errors import UserInputError


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
    check_fractions(valid_fraction, test_fraction)
    examples = list(examples)
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(_stratum(ex.label), []).append(i)
    keys = sorted(groups)
    sizes = [len(groups[k]) for k in keys]
    test_counts = _apportion(sizes, holdout_size(len(examples), test_fraction), [s - 1 for s in sizes])
    room = [s - 1 - t for s, t in zip(sizes, test_counts)]
    valid_counts = _apportion(sizes, holdout_size(len(examples), valid_fraction), room)

    rng = np.random.default_rng(seed)
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    for key, n_test, n_valid in zip(keys, test_counts, valid_counts):
        order = [groups[key][i] for i in rng.permutation(len(groups[key]))]
        parts[2].extend(order[:n_test])
        parts[1].extend(order[n_test : n_test + n_valid])
        parts[0].extend(order[n_test + n_valid :])
    train, valid, test = ([examples[i] for i in sorted(part)] for part in parts)
    return train, valid, test


# Held-out rows when the user gives no fraction: 10% each, but on a small file at least
# MIN_TEST_ROWS test and MIN_VALID_ROWS validation rows (up to MAX_DEFAULT_FRACTION of it), so
# that a test score is not a handful of rows (20 rows: one row moves accuracy 5 points)
DEFAULT_FRACTION = 0.1
MIN_TEST_ROWS = 40
MIN_VALID_ROWS = 20
MAX_DEFAULT_FRACTION = 0.2


def default_fractions(n: int, valid_fraction: float | None, test_fraction: float | None) -> tuple[float, float]:
    """The (valid, test) fractions of `n` rows: those given, else the default rule above."""
    def rule(minimum: int) -> float:
        return min(MAX_DEFAULT_FRACTION, max(DEFAULT_FRACTION, minimum / n)) if n else DEFAULT_FRACTION

    return (rule(MIN_VALID_ROWS) if valid_fraction is None else valid_fraction,
            rule(MIN_TEST_ROWS) if test_fraction is None else test_fraction)


def held_out_fractions(n: int, valid_fraction: float | None, test_fraction: float | None, valid_given: bool,
                       test_given: bool) -> dict[str, float] | None:
    """{"valid": share, "test": share} of `n` rows to hold out from a training file: the
    fraction given or `default_fractions`' rule, 0.0 for a part given as a file of its own;
    None when both parts are given (nothing is split off)."""
    if valid_given and test_given:
        return None
    valid, test = default_fractions(n, valid_fraction, test_fraction)
    return {"valid": 0.0 if valid_given else valid, "test": 0.0 if test_given else test}


def check_fractions(valid_fraction: float, test_fraction: float) -> None:
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


def holdout_size(n: int, fraction: float) -> int:
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
