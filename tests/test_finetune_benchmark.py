"""benchmarks/finetune/run.py: the table comes from `nlpft experiment run` of its config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.test_experiment import write_inputs
from tests.test_split import DATA_TRAIN_CONFIG

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "finetune" / "run.py"


def test_the_table_is_the_experiments_runs(tmp_path):
    config = write_inputs(tmp_path, DATA_TRAIN_CONFIG)
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[2])}
    done = subprocess.run([sys.executable, str(SCRIPT), "--config", str(config), "--work", str(tmp_path / "work"),
                           "--results", str(tmp_path / "results"), "--no-plain"], capture_output=True, text=True,
                          env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert [row["backbone"] for row in results["rows"]] == ["tfidf", "w2v"]
    assert results["split"]["seed"] == 5 and results["seeds"] == [1, 2] and results["steps"] == 6
    for row in results["rows"]:  # each row is the mean of the experiment's own runs
        runs = sorted((tmp_path / "work" / "experiment" / "steps").glob(f"ft-{row['backbone']}-s*"))
        accuracy = [json.loads((run / "metrics.json").read_text())["test"]["accuracy"] for run in runs]
        assert len(runs) == 2 and abs(row["accuracy"]["mean"] - sum(accuracy) / 2) < 1e-9
    assert str(tmp_path) not in (tmp_path / "results" / "results.json").read_text()  # no folder of this machine
    table = (tmp_path / "results" / "results.md").read_text()
    assert f"| tfidf | {results['rows'][0]['accuracy']['mean']:.4f} ±" in table
