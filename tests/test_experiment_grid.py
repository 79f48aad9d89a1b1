"""`nlpft experiment`: grids meet backbones. An option a backbone does not use gives it one
run per seed and stays out of its key; a backbone entry's own grid; `search: {trials: N}`;
the dry run's cost estimates. TF-IDF and a tiny word2vec step, as in test_experiment."""

from __future__ import annotations

import json

from nlpft.cli.main import main
from tests.test_experiment import CONFIG, run, write_inputs

TFIDF_ONLY = """\
name: tiny
data: {train: data.csv}
finetune:
  backbones: [tfidf]
  seeds: [1]
"""


def plan_of(config):
    from nlpft.experiments.config import load_experiment
    from nlpft.experiments.plan import build_plan

    return build_plan(load_experiment(config))


def finetune_steps(plan) -> dict:
    return {s.name: s for s in plan.steps if s.kind == "finetune"}


def dry_run(config, out, capsys) -> str:
    capsys.readouterr()
    assert main(["experiment", "run", str(config), "--out", str(out), "--dry-run"]) == 0
    return capsys.readouterr().out


# -- options a backbone does not use --------------------------------------------------------
def test_a_grid_option_tfidf_does_not_use_gives_it_one_run_per_seed(tmp_path, capsys):
    config = write_inputs(tmp_path, CONFIG.replace("seeds: [1]", "seeds: [1, 2]\n  grid: {lr: [0.001, 0.002]}"))
    steps = finetune_steps(plan_of(config))
    assert sorted(steps) == ["ft-tfidf-s1", "ft-tfidf-s2", "ft-w2v-lr0.001-s1", "ft-w2v-lr0.001-s2",
                             "ft-w2v-lr0.002-s1", "ft-w2v-lr0.002-s2"]
    assert "lr" not in steps["ft-tfidf-s1"].options and "epochs" not in steps["ft-tfidf-s1"].options
    assert steps["ft-w2v-lr0.002-s1"].options["lr"] == 0.002
    plan = dry_run(config, tmp_path / "out", capsys)
    assert plan.count("grid lr does not apply to tfidf (one run per seed)") == 1
    assert "epochs does not apply to tfidf (left out of its runs)" in plan
    assert "0 cached, 7 to run" in plan


def test_another_backbones_option_is_left_out_of_tfidf_runs(tmp_path):
    config = write_inputs(tmp_path, TFIDF_ONLY.replace("[tfidf]", "[tfidf, minilm]") + "  pooling: mean\n")
    plan = plan_of(config)
    assert "pooling" not in plan.step("ft-tfidf-s1").options
    assert plan.step("ft-minilm-s1").options["pooling"] == "mean"
    assert "pooling does not apply to tfidf (left out of its runs)" in plan.notes


def test_adding_a_grid_option_tfidf_does_not_use_reuses_its_run(tmp_path):
    config = write_inputs(tmp_path, TFIDF_ONLY)
    code, summary = run(config, tmp_path / "out")
    assert code == 0 and summary["ran"] == ["ft-tfidf-s1"]
    config.write_text(TFIDF_ONLY + "  grid: {lr: [0.001, 0.002]}\n  epochs: 4\n")
    code, summary = run(config, tmp_path / "out")
    assert code == 0 and summary["ran"] == [] and summary["reused"] == ["ft-tfidf-s1"]
