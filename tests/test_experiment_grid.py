"""`nlpft experiment`: grids meet backbones. An option a backbone does not use gives it one
run per seed and stays out of its key; a backbone entry's own grid; `search: {trials: N}`;
the dry run's cost estimates. TF-IDF and a tiny word2vec step, as in test_experiment."""

from __future__ import annotations

import json

import pytest

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
    assert plan.splitlines()[-1] == "estimated: nothing yet (no step like the 7 steps to run has finished)"


def test_the_plan_notes_an_lr_far_from_a_backbones_defaults(tmp_path, capsys):
    # one transformer grid for every backbone: word2vec (default 2e-3) gets 2e-5 and 5e-5
    config = write_inputs(tmp_path, CONFIG.replace("backbones: [tfidf, w2v]", "backbones: [tfidf, w2v, minilm, "
                                                   "{name: hot, model: minilm, lr: 0.05}]\n  grid: {lr: [2e-5, 5e-5]}"))
    notes = [line for line in dry_run(config, tmp_path / "out", capsys).splitlines() if "default of" in line]
    assert notes == [
        "  note: lr 2e-05 is over 10x below the default of w2v (0.002): its runs may barely learn; give w2v an lr of "
        "its own in its backbones entry",
        "  note: lr 5e-05 is over 10x below the default of w2v (0.002): its runs may barely learn; give w2v an lr of "
        "its own in its backbones entry",
        "  note: lr 0.05 is over 10x above the default of hot (2e-05 to 0.0005): its runs may diverge"]


def test_the_run_prints_the_plans_notes_too(tmp_path, capsys):
    config = write_inputs(tmp_path, TFIDF_ONLY + "  grid: {lr: [0.001, 0.002]}\n")
    code, summary = run(config, tmp_path / "out")
    assert code == 0 and summary["ran"] == ["ft-tfidf-s1"]
    assert "note: grid lr does not apply to tfidf (one run per seed)" in capsys.readouterr().err


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


# -- a backbone entry's own grid --------------------------------------------------------------
ENTRY_GRID = CONFIG.replace("backbones: [tfidf, w2v]", "backbones: [tfidf, {name: w2v-g, model: w2v, grid: "
                                                       "{lr: [0.001, 0.002]}}]")


def test_a_backbone_entry_carries_its_own_grid(tmp_path):
    steps = finetune_steps(plan_of(write_inputs(tmp_path, ENTRY_GRID)))
    assert sorted(steps) == ["ft-tfidf-s1", "ft-w2v-g-lr0.001-s1", "ft-w2v-g-lr0.002-s1"]
    assert steps["ft-w2v-g-lr0.002-s1"].options["lr"] == 0.002 and steps["ft-w2v-g-lr0.002-s1"].depends_on == ["w2v"]


def test_an_entrys_grid_and_options_win_over_the_finetune_grid(tmp_path):
    config = ENTRY_GRID.replace("[tfidf, {", "[tfidf, {name: w2v-fixed, model: w2v, lr: 0.005}, {").replace(
        "seeds: [1]", "seeds: [1]\n  grid: {lr: [0.1, 0.2], batch_size: [8, 16]}")
    steps = finetune_steps(plan_of(write_inputs(tmp_path, config)))
    assert {s for s in steps if s.startswith("ft-w2v-g-")} == {
        f"ft-w2v-g-batch_size{b}-lr{lr}-s1" for b in (8, 16) for lr in (0.001, 0.002)}
    assert {s for s in steps if s.startswith("ft-w2v-fixed")} == {"ft-w2v-fixed-batch_size8-s1",
                                                                  "ft-w2v-fixed-batch_size16-s1"}
    assert {s.options["lr"] for n, s in steps.items() if n.startswith("ft-w2v-fixed")} == {0.005}


@pytest.mark.parametrize("entry, message", [
    ("grid: {lrr: [0.1]}", "finetune.backbones[1].grid.lrr: unknown option of finetune (did you mean lr?)"),
    ("grid: {lr: 0.1}", "finetune.backbones[1].grid.lr: must be a list of values to try"),
    ("grid: {lr: [0.1, -1]}", "finetune.backbones[1].grid.lr[1]: must be above 0"),
    ("lr: 0.1, grid: {lr: [0.1]}", "finetune.backbones[1].lr: also in finetune.backbones[1].grid; give it in one"),
    ("grid: [lr]", "finetune.backbones[1].grid: must be a mapping"),
])
def test_errors_in_an_entrys_grid_name_its_key_path(tmp_path, capsys, entry, message):
    config = write_inputs(tmp_path, CONFIG.replace("[tfidf, w2v]", "[tfidf, {model: w2v, " + entry + "}]"))
    assert main(["experiment", "run", str(config), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


# -- search: {trials: N} --------------------------------------------------------------------
def test_search_makes_each_run_a_search_and_the_report_reads_its_best_model(tmp_path):
    config = write_inputs(tmp_path, TFIDF_ONLY + "  search: {trials: 2, space: {head_c: [0.1, 10.0, log]}}\n")
    step = plan_of(config).step("ft-tfidf-s1")
    assert step.options["search"] == 2 and json.loads(step.options["search_space"]) == {"head_c": [0.1, 10.0, "log"]}
    code, summary = run(config, tmp_path / "out")
    assert code == 0 and summary["ran"] == ["ft-tfidf-s1"]
    [directory] = (tmp_path / "out" / "steps").glob("ft-tfidf-s1-*[0-9a-f]")
    trials = (directory / "trials.csv").read_text().splitlines()
    assert len(trials) == 1 + 2
    best = json.loads((directory / "metrics.json").read_text())["test"]
    report = json.loads((tmp_path / "out" / "report" / "report.json").read_text())
    assert json.dumps(best["macro_f1"]) in json.dumps(report)


@pytest.mark.parametrize("search, message", [
    ("search: 5", "finetune.search: must be a mapping"),
    ("search: {trials: 0}", "finetune.search.trials: must be a whole number of at least 1, not 0"),
    ("search: {trialz: 2}", "finetune.search.trialz: unknown key (did you mean trials?)"),
    ("search: {trials: 2, space: {lrr: [0.1, 1]}}",
     "finetune.search.space.lrr: unknown parameter, which no backbone searches (did you mean lr?)"),
    ("search: {trials: 2, space: {lr: [1, 0.1]}}", "finetune.search.space.lr: [1, 0.1] must have low below high"),
    ("search: {trials: 2, space: {lr: [0.1, 1]}}\n  grid: {lr: [0.1]}",
     "finetune.grid.lr: also in finetune.search.space; grid it or search it, not both"),
    ("search: {trials: 2}\n  grid: {head_c: [1, 2]}",
     "finetune.grid.head_c: the search of tfidf may tune head_c (finetune.search); grid it or search it, not both"),
    ("search_space: {lr: [0.1, 1]}", "finetune.search_space: unknown option of finetune (did you mean search?)"),
])
def test_search_errors_name_the_key_path(tmp_path, capsys, search, message):
    config = write_inputs(tmp_path, TFIDF_ONLY + "  " + search + "\n")
    assert main(["experiment", "run", str(config), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_a_grid_option_the_search_does_not_tune_combines_with_it(tmp_path):
    config = write_inputs(tmp_path, TFIDF_ONLY.replace("[tfidf]", "[tfidf, minilm]") +
                          "  search: {trials: 3}\n  grid: {max_length: [64, 128]}\n")
    steps = finetune_steps(plan_of(config))
    assert sorted(steps) == ["ft-minilm-max_length128-s1", "ft-minilm-max_length64-s1", "ft-tfidf-s1"]
    assert all(step.options["search"] == 3 for step in steps.values())



def test_a_search_space_is_cut_to_what_each_backbone_searches(tmp_path):
    config = write_inputs(tmp_path, TFIDF_ONLY.replace("[tfidf]", "[tfidf, minilm]") +
                          "  search: {trials: 3, space: {lr: [0.00001, 0.0001, log], head_c: [0.1, 10]}}\n")
    plan = plan_of(config)
    assert json.loads(plan.step("ft-tfidf-s1").options["search_space"]) == {"head_c": [0.1, 10]}
    assert json.loads(plan.step("ft-minilm-s1").options["search_space"]) == {"lr": [0.00001, 0.0001, "log"],
                                                                            "head_c": [0.1, 10]}
    assert "search.space lr does not apply to tfidf (its search tunes head_c)" in plan.notes


# -- the dry run's estimates ------------------------------------------------------------------
def test_the_dry_run_estimates_never_run_steps_from_finished_ones_alike(tmp_path, capsys):
    from nlpft.experiments.executor import MARKER_FILE, step_directory

    config = write_inputs(tmp_path, CONFIG.replace("seeds: [1]", "seeds: [1, 2, 3]\n  grid: {lr: [0.001, 0.002]}"))
    plan, out = plan_of(config), tmp_path / "out"
    cached = step_directory(out, plan.step("ft-tfidf-s1"))
    cached.mkdir(parents=True)
    (cached / MARKER_FILE).write_text("{}")
    state = {"ft-tfidf-s1": {"status": "done", "seconds": 240.0},
             "ft-tfidf-s2": {"status": "failed", "seconds": 3.0},       # a failed run times nothing
             "ft-w2v-lr0.001-s1": {"status": "done", "seconds": 30.0},  # the same backbone, another grid point
             "ft-w2v-lr0.002-s1": {"status": "done", "seconds": 50.0, "key": "changed-options"}}
    (out / "state.json").write_text(json.dumps(state))
    lines = {line.split()[0]: line for line in dry_run(config, out, capsys).splitlines()[1:] if line.startswith("  ft")}
    assert lines["ft-tfidf-s1"].endswith("cached")
    assert lines["ft-tfidf-s2"].endswith("~4.0 min (like ft-tfidf-s1)")
    assert lines["ft-w2v-lr0.002-s1"].endswith("~50 s (last run)")
    assert lines["ft-w2v-lr0.001-s3"].endswith("~40 s (like ft-w2v-lr0.001-s1 and 1 other)")
    text = dry_run(config, out, capsys)
    assert "  w2v " in text and text.split("  w2v ")[1].splitlines()[0].endswith("no estimate")
    # TF-IDF 2 x 240 s; word2vec 30 s + 50 s (their last runs) + 4 x 40 s
    assert text.splitlines()[-1] == "estimated: 12.0 min for 8 steps, 1 step without an estimate"


def test_what_a_backbone_uses_depends_on_the_method_it_trains_by(tmp_path):
    config = write_inputs(tmp_path, TFIDF_ONLY.replace("[tfidf]", "[minilm]") +
                          "  grid: {lr: [0.00002, 0.00005], method: [standard, frozen]}\n")
    plan = plan_of(config)
    assert sorted(finetune_steps(plan)) == ["ft-minilm-lr2e-05-methodstandard-s1", "ft-minilm-lr5e-05-methodstandard-s1",
                                            "ft-minilm-methodfrozen-s1"]
    assert plan.notes == ["grid lr does not apply to minilm with method frozen (one run per seed and value of method)"]
