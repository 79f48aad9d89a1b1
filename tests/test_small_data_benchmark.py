"""benchmarks/small-data/run.py: its splits (k rows per class, nested across k, disjoint
from the test rows, the test set capped when asked, and "full" holding out a fixed fraction)
and its table cells, which say when a point has fewer seeds than the run."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "small-data" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("small_data_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ROWS = [{"text": f"{label} text {i}", "label": label} for label in ("a", "b", "c") for i in range(40)]


def _per_class(rows):
    return {label: sum(row["label"] == label for row in rows) for label in ("a", "b", "c")}


def test_k_rows_per_class_and_the_rest_is_test(bench):
    train, test = bench.split_rows(ROWS, "8", seed=3, test_cap=None)
    assert _per_class(train) == {"a": 8, "b": 8, "c": 8}
    assert len(test) == len(ROWS) - 24
    assert not {r["text"] for r in train} & {r["text"] for r in test}


def test_samples_are_seeded_and_nested_across_k(bench):
    small, _ = bench.split_rows(ROWS, "8", seed=3, test_cap=None)
    large, _ = bench.split_rows(ROWS, "16", seed=3, test_cap=None)
    again, _ = bench.split_rows(ROWS, "8", seed=3, test_cap=None)
    other, _ = bench.split_rows(ROWS, "8", seed=4, test_cap=None)
    assert small == again
    assert {r["text"] for r in small} < {r["text"] for r in large}
    assert small != other


def test_test_cap_samples_the_remaining_rows(bench):
    train, test = bench.split_rows(ROWS, "8", seed=3, test_cap=50)
    assert len(test) == 50
    assert not {r["text"] for r in train} & {r["text"] for r in test}


def test_full_holds_out_a_fraction_of_each_class(bench):
    train, test = bench.split_rows(ROWS, "full", seed=3, test_cap=10)  # the cap is for k <= 64 only
    held_out = round(bench.FULL_TEST_FRACTION * 40)
    assert _per_class(test) == {"a": held_out, "b": held_out, "c": held_out}
    assert len(train) + len(test) == len(ROWS)


def test_a_point_with_fewer_seeds_says_how_many(bench):
    cell = {"accuracy_mean": 0.9, "accuracy_std": 0.01, "seeds": [1, 2, 3]}
    assert bench._accuracy_cell(cell, [1, 2, 3]) == "0.900 ± 0.010"
    assert bench._accuracy_cell({**cell, "seeds": [1, 2]}, [1, 2, 3]) == "0.900 ± 0.010 (2 seeds)"
    assert bench._accuracy_cell({**cell, "accuracy_std": 0.0, "seeds": [2]}, [1, 2, 3]) == "0.900 (1 seed)"
    assert bench._accuracy_cell(None, [1]) == "–"
