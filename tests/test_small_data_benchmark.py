"""benchmarks/small-data/run.py: its splits (k rows per class, nested across k, disjoint
from the test rows, the test set capped when asked, and "full" holding out a fixed fraction)
and its table cells, which say when a point has fewer seeds than the run."""

import importlib.util
import json
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


def test_the_report_gives_training_rows_and_calls_full_per_class_an_average(bench):
    def point(k, seed, train_rows, per_class):
        return {"dataset": "bbc-news", "method": "tfidf", "k": k, "seed": seed, "train_rows": train_rows,
                "per_class": per_class, "test_rows": 444, "accuracy": 0.9, "macro_f1": 0.9, "train_s": 1.0,
                "wall_s": 2.0, "steps": None}

    points = [point("8", 1, 40, 8.0), point("full", 1, 1781, 356.2), point("full", 2, 1779, 355.8)]
    rows = bench.summarize(points)
    assert bench._cell(rows, "bbc-news", "tfidf", "full")["train_rows"] == 1780
    results = {"rows": rows, "points": points, "methods": ["tfidf"], "ks": ["8", "full"], "seeds": [1, 2],
               "datasets": ["bbc-news"], "machine": "a CPU", "command": "run.py", "smoke": False,
               "total_wall_s": 4.0, "points_run": 3, "points_read_back": 0}
    sizes = next(line for line in bench._md(results).splitlines() if line.startswith("Training / test rows"))
    assert "8: 40 (8/class), 444 test" in sizes
    assert "full: 1780 (356/class on average), 444 test" in sizes


def test_a_run_records_its_machine_and_the_report_names_each(bench, tmp_path, monkeypatch):
    """A benchmark resumed on another CPU: each run keeps the machine it ran on, and the report
    says which runs ran where, since their times compare only within one machine."""
    def fake_finetune(*args):
        out = Path(args[args.index("--out") + 1])
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(json.dumps(
            {"test_examples": 4, "test": {"accuracy": 0.75, "macro_f1": 0.7}, "train_time_s": 1.0}))

    monkeypatch.setattr(bench, "_nlpft", fake_finetune)
    split = {"train": tmp_path / "train.csv", "test": tmp_path / "test.csv", "train_rows": 6, "test_rows": 4,
             "per_class": 3.0}
    record = bench.run_point("polarity", "tfidf", "8", 3, split, tmp_path, False, "CPU B")
    assert record["machine"] == "CPU B"
    assert json.loads(bench.point_record(tmp_path, "polarity", "tfidf", "8", 3, False).read_text())["machine"] == "CPU B"

    def point(method, seed, machine=None):
        return {"dataset": "bbc-news", "method": method, "k": "full", "seed": seed,
                **({"machine": machine} if machine else {})}

    points = [point("tfidf", 1), point("tfidf", 3, "CPU B"), point("tfidf", 4, "CPU B"), point("tfidf", 5, "CPU B"),
              point("frozen", 3, "CPU B"), point("frozen", 4, "CPU B"), point("frozen", 5, "CPU B"),
              point("standard", 2, "CPU A")]
    lines = bench.machine_lines(points, "CPU B")
    assert "- CPU B: 6 runs: bbc-news k=full seeds 3-5 (tfidf, frozen)" in lines
    assert "- CPU A: 1 run: bbc-news k=full seeds 2 (standard)" in lines
    assert "- 1 run from before runs recorded their machine" in lines
    assert bench.machine_lines([point("tfidf", 1)], "CPU B") == [
        "Report written on CPU B; the runs do not record their machine."]
