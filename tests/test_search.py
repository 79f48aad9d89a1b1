"""`nlpft finetune --search N`: Optuna trials chosen on validation, the best one published,
the space from the backbone or the config file, pruning, resume after SIGKILL, torchrun.

Searches run the TF-IDF backbone on the installed `polarity` dataset (a trial takes about
a second); pruning is tested on the trainer's callback and the study directly."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nlpft.cli.main import main
from tests.conftest import Run
from tests.test_finetune import data_csv, tiny_bert  # noqa: F401  (fixtures)

pytest.importorskip("optuna")

SEARCH = ["finetune", "--train", "polarity", "--model", "tfidf", "--quiet"]


def read_trials(out: Path) -> list[dict]:
    with open(out / "trials.csv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("search") / "tuned"
    assert main([*SEARCH, "--search", "4", "--out", str(out)]) == 0
    return out


def test_search_publishes_the_best_validation_trial(searched):
    rows = read_trials(searched)
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3]
    assert {r["state"] for r in rows} == {"complete"}  # one fit each: nothing to prune
    assert len({r["head_c"] for r in rows}) == 4 and all(0.01 <= float(r["head_c"]) <= 100 for r in rows)
    scores = [float(r["valid_macro_f1"]) for r in rows]
    best = scores.index(max(scores))  # the first of equals
    meta = json.loads((searched / "finetune.json").read_text())
    assert meta["search"]["best_trial"] == best and meta["search"]["states"] == {"complete": 4}
    assert meta["options"]["head_c"] == pytest.approx(float(rows[best]["head_c"]))
    assert meta["options"]["out"] == str(searched) and meta["options"]["search"] == 4
    # the best trial's model is the output: the same weights, and predict works on it
    assert (searched / "tfidf.safetensors").is_file() and (searched / "metrics.json").is_file()
    assert "## Hyperparameter search" in (searched / "report.md").read_text()
    # the other trials kept their metrics only; no checkpoint, journal or hand-over file is left
    assert not list((searched / "trials").rglob("*.safetensors"))
    assert sorted(p.name for p in (searched / "trials" / f"{best:03d}").iterdir()) == ["metrics.json", "report.md"]
    assert not (searched / "checkpoint").exists() and not list(searched.rglob("*.params.json"))
    assert main(["predict", "--model", str(searched), "--text", "a wonderful, moving film"]) == 0


def test_config_file_overrides_the_space(tmp_path):
    config = tmp_path / "search.yaml"
    config.write_text("search: 3\nsearch_space:\n  head_c: [0.5, 2.0]\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main([*SEARCH, "--config", str(config), "--out", str(out)]) == 0
    rows = read_trials(out)
    assert len(rows) == 3 and all(0.5 <= float(r["head_c"]) <= 2.0 for r in rows)
    assert json.loads((out / "finetune.json").read_text())["search"]["space"] == {"head_c": [0.5, 2.0]}


@pytest.mark.parametrize("space, named", [
    ('{"lr": [1e-5, 1e-3, "log"]}', "search_space: 'lr' is not a searched parameter of --model tfidf"),
    ('{"head_c": [5, 1]}', "search_space: head_c: [5, 1] must have low below high"),
    ('{"head_c": [0, 1, "log"]}', "search_space: head_c: [0, 1, 'log'] holds 0, which must be above 0"),
    ('{"head_c": [-1, 1]}', "search_space: head_c: [-1, 1] holds -1"),
    ('{"head_c": "big"}', "search_space: head_c: 'big' is not a range"),
    ('[1, 2]', "argument --search-space: must map parameter names"),
])
def test_bad_space_is_exit_2_naming_the_key(tmp_path, capsys, space, named):
    out = tmp_path / "out"
    assert main([*SEARCH, "--search", "2", "--search-space", space, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert named in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not out.with_name("out.partial").exists()


def test_bad_space_in_config_file_names_the_key(tmp_path, capsys):
    config = tmp_path / "search.yaml"
    config.write_text("search_space:\n  batch_size: [16, 0]\n", encoding="utf-8")
    argv = ["finetune", "--train", "polarity", "--model", "minilm", "--method", "standard", "--search", "2", "--config", str(config),
            "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "search_space: batch_size" in err and "at least 1" in err, err


def test_search_space_without_search_is_refused(tmp_path, capsys):
    assert main([*SEARCH, "--search-space", '{"head_c": [1, 2]}', "--out", str(tmp_path / "out")]) == 2
    assert "--search N" in capsys.readouterr().err


def test_search_without_optuna_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    assert main([*SEARCH, "--search", "2", "--out", str(tmp_path / "out")]) == 2
    assert "pip install 'nlpft[search]'" in capsys.readouterr().err


# -- pruning ------------------------------------------------------------------------------
def _study(tmp_path: Path, n_trials: int = 8):
    from nlpft.finetune.search import Search
    from nlpft.finetune.search_space import Param

    return Search(tmp_path / "checkpoint", {"lr": Param(1e-5, 1e-3, log=True)}, n_trials, seed=1, maximize=True,
                  metric="macro_f1")


def _run_trial(search, scores: list[float]) -> tuple[str, int]:
    """One trial that scores `scores` at its evaluations until the observer stops it; its
    state and how many evaluations ran."""
    run = search.next_trial()
    observe = search.observer(run)
    ran = 0
    for evaluation, score in enumerate(scores, start=1):
        ran = evaluation
        if observe(score, evaluation, True):
            break
    return search.finish(run, seconds=1.0), ran


def test_median_pruner_stops_a_weak_trial_early(tmp_path):
    search = _study(tmp_path)
    for _ in range(2):  # the pruner's start-up: two finished trials
        assert _run_trial(search, [0.6, 0.8, 0.9]) == ("complete", 3)
    assert _run_trial(search, [0.2, 0.3, 0.3]) == ("pruned", 1)
    assert _run_trial(search, [0.7, 0.85, 0.95]) == ("complete", 3)
    rows = search.rows()
    assert [r["state"] for r in rows] == ["complete", "complete", "pruned", "complete"]
    assert rows[2]["valid_macro_f1"] == 0.2 and rows[2]["evaluations"] == 1
    assert search.best_trial().number == 3  # pruned trials never win
    assert "1 pruned" in search.report_section()


def test_report_validation_callback_stops_training_when_the_observer_says_so():
    from transformers import TrainerControl, TrainerState

    from nlpft.finetune.observers import observing_validation
    from nlpft.finetune.trainer import ReportValidation

    heard = []

    def observer(value, evaluation, can_stop):
        heard.append((value, evaluation))
        return value is not None and value < 0.5

    callback = ReportValidation("macro_f1")
    state, control = TrainerState(), TrainerControl()
    state.log_history = [{"eval_macro_f1": 0.7}]
    callback.on_evaluate(None, state, control, metrics={"eval_macro_f1": 0.7})  # no observer: nothing happens
    with observing_validation(observer):
        callback.on_evaluate(None, state, control, metrics={"eval_macro_f1": 0.7})
        assert not control.should_training_stop
        state.log_history.append({"eval_macro_f1": 0.4})
        callback.on_evaluate(None, state, control, metrics={"eval_macro_f1": 0.4})
        assert control.should_training_stop
        callback.on_evaluate(None, state, control, metrics={"eval_macro_f1": float("nan")})
    assert heard == [(0.7, 1), (0.4, 2), (None, 2)]


# -- resume and torchrun ------------------------------------------------------------------
def _nlpft(*args: str) -> list[str]:
    return [sys.executable, "-m", "nlpft", *args]


def test_resume_after_sigkill_runs_no_finished_trial_again_and_picks_the_same_model(searched, tmp_path):
    """Killed once trial 1 has begun (its parameters written), resumed: the finished trials
    are not run again, and the trials (parameters, scores) and the published model are those
    of the uninterrupted search with the same seed."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    out = tmp_path / "tuned"
    partial = out.with_name("tuned.partial")
    args = [*SEARCH, "--search", "4", "--out", str(out)]
    run = Run(_nlpft(*args))
    run.wait_until((partial / "trials" / "001.params.json").is_file)
    run.signal(signal.SIGKILL)
    code, stderr = run.finish()
    assert code == -signal.SIGKILL, stderr[-3000:]
    journal = JournalStorage(JournalFileBackend(str(partial / "checkpoint" / "search.journal")))
    finished = {t.number for t in optuna.load_study(study_name="nlpft-finetune", storage=journal).trials
                if t.state.is_finished()}
    assert 0 in finished and 3 not in finished

    proc = subprocess.run(_nlpft(*[a for a in args if a != "--quiet"], "--resume"), capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ran = {int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("trial ")}
    assert ran == {0, 1, 2, 3} - finished

    def comparable(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert comparable(read_trials(out)) == comparable(read_trials(searched))
    assert (out / "tfidf.safetensors").read_bytes() == (searched / "tfidf.safetensors").read_bytes()


@pytest.mark.skipif(not Path(sys.executable).with_name("torchrun").exists(), reason="torchrun not installed")
def test_torchrun_search_runs_once_with_rank_0_parameters(searched, tmp_path):
    """Two processes: rank 0 samples and runs the trials (TF-IDF trains in one process), the
    other follows the parameters it writes; the result is the single-process search's."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "nlpft", *SEARCH, "--search", "4", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [{k: v for k, v in r.items() if k != "seconds"} for r in read_trials(out)]
    assert rows == [{k: v for k, v in r.items() if k != "seconds"} for r in read_trials(searched)]
    assert not out.with_name("ddp.partial").exists()


def test_tfidf_regression_has_nothing_to_search(tmp_path, capsys):
    data = tmp_path / "scores.csv"
    data.write_text("text,label\n" + "".join(f"text number {i} is {'good' if i % 2 else 'bad'},{i % 2}.5\n"
                                             for i in range(40)), encoding="utf-8")
    assert main(["finetune", "--train", str(data), "--task", "regression", "--model", "tfidf", "--search", "2",
                 "--out", str(tmp_path / "out")]) == 2
    assert "nothing to search" in capsys.readouterr().err


def test_search_over_a_tiny_transformer_reports_every_evaluation(data_csv, tiny_bert, tmp_path):  # noqa: F811
    """The shared trainer's path: each trial reports one validation score per epoch to the
    study, and the best complete trial's Hugging Face model directory is the output."""
    out = tmp_path / "bert"
    space = '{"lr": [1e-3, 5e-3, "log"], "batch_size": [16], "epochs": [2, 3]}'
    assert main(["finetune", "--train", str(data_csv), "--model", str(tiny_bert), "--method", "standard", "--search", "3", "--search-space",
                 space, "--max-length", "32", "--threads", "1", "--warmup", "0", "--quiet", "--out", str(out)]) == 0
    rows = read_trials(out)
    assert len(rows) == 3 and all(int(r["evaluations"]) == int(r["epochs"]) for r in rows if r["state"] == "complete")
    complete = [r for r in rows if r["state"] == "complete"]
    best = max(complete, key=lambda r: float(r["valid_macro_f1"]))
    meta = json.loads((out / "finetune.json").read_text())
    assert meta["search"]["best_trial"] == int(best["number"])
    assert meta["options"]["lr"] == pytest.approx(float(best["lr"]))
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert json.loads((out / "metrics.json").read_text())["test"]["accuracy"] >= 0.8


def test_frozen_method_searches_the_heads_c(tmp_path):
    """--method frozen trains no encoder weight: its space is the head's C alone, and the
    best trial's C is the one saved with its head."""
    out = tmp_path / "frozen"
    assert main(["finetune", "--train", "polarity", "--method", "frozen", "--search", "2", "--quiet",
                 "--out", str(out)]) == 0
    rows = read_trials(out)
    assert len(rows) == 2 and {r["state"] for r in rows} == {"complete"}
    assert set(json.loads((out / "finetune.json").read_text())["search"]["space"]) == {"head_c"}
    best = json.loads((out / "finetune.json").read_text())["search"]["best_trial"]
    saved_c = json.loads((out / "frozen_head.json").read_text())["C"]
    assert saved_c == pytest.approx(float(rows[best]["head_c"]))
