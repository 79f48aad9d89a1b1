"""`nlpft experiment run | status`: config errors with key paths, caching by content, reruns
of exactly what changed, resume after SIGKILL, the lock. A tiny word2vec step (dim 8, one
epoch) and TF-IDF fine-tuning; one finished experiment is shared (copied per test)."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from nlpft.cli.main import main
from nlpft.experiments.executor import flock_held
from tests.conftest import Run

CONFIG = """\
name: tiny
data: {train: data.csv}
corpora: {domain: [corpus.txt]}
steps:
  w2v: {embed: {algo: word2vec, corpus: domain, dim: 8, epochs: 1, min_count: 1, threads: 1}}
finetune:
  backbones: [tfidf, w2v]
  seeds: [1]
  epochs: 2
report: {primary: macro_f1}
"""
STEPS = {"w2v", "ft-tfidf-s1", "ft-w2v-s1"}


def write_inputs(folder: Path, config: str = CONFIG) -> Path:
    """data.csv (160 labeled rows), corpus.txt (300 lines) and exp.yaml in `folder`."""
    rng = random.Random(0)
    positive, negative = ["great", "lovely", "excellent", "happy"], ["awful", "terrible", "bad", "sad"]
    filler = ["the", "film", "was", "a", "story", "about", "a", "man", "and", "his", "dog", "in", "the", "city"]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "data.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for i in range(160):
            label = "pos" if i % 2 else "neg"
            words = rng.sample(filler, 6) + rng.sample(positive if label == "pos" else negative, 2)
            rng.shuffle(words)
            writer.writerow([" ".join(words), label])
    (folder / "corpus.txt").write_text("".join(" ".join(rng.sample(filler + positive + negative, 9)) + "\n"
                                               for _ in range(300)))
    (folder / "exp.yaml").write_text(config)
    return folder / "exp.yaml"


def run(config: Path, out: Path, *extra: str) -> tuple[int, dict]:
    code = main(["experiment", "run", str(config), "--out", str(out), *extra])
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    return code, summary


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A folder with the inputs, exp.yaml and out/, the experiment run to the end."""
    folder = tmp_path_factory.mktemp("experiment")
    config = write_inputs(folder)
    code, summary = run(config, folder / "out")
    assert code == 0, summary
    assert set(summary["ran"]) == STEPS
    return folder


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    """A private copy of the finished experiment (moved: keys hash contents, not paths)."""
    target = tmp_path / "experiment"
    shutil.copytree(finished, target)
    return target


def statuses(out: Path) -> dict:
    from nlpft.experiments.executor import experiment_status

    return {row["name"]: row["status"] for row in experiment_status(out)}


def test_metrics(out: Path, step: str) -> dict:
    directory = next(d for d in (out / "steps").glob(f"{step}-*") if not d.name.endswith((".partial", ".lock")))
    return json.loads((directory / "metrics.json").read_text())["test"]


test_metrics.__test__ = False  # a helper, not a test


@pytest.mark.parametrize("edit, message", [
    (("dim: 8", "dimm: 8"), "steps.w2v.embed.dimm: unknown option of embed train (did you mean dim?)"),
    (("dim: 8", "dim: -3"), "steps.w2v.embed.dim: must be at least 1, not -3"),
    (("[tfidf, w2v]", "[tfidf, w2vv]"), "finetune.backbones[1]: 'w2vv' is no step (w2v)"),
    (("corpus: domain,", "corpus: dom,"), "steps.w2v.embed.corpus: 'dom' is no entry of corpora (domain)"),
    (("epochs: 2\n", "epochs: 2\n  lrr: 1\n"), "finetune.lrr: unknown option of finetune (did you mean lr?)"),
    (("seeds: [1]", "seeds: [1, -2]"), "finetune.seeds[1]: must be from 0 to"),
    (("name: tiny", "name: tiny\nrepot: {}"), "repot: unknown top-level key (did you mean report?)"),
    (("w2v: {embed", ("lm1: {lm: {corpus: domain, init_vectors: lm2}}\n  lm2: {lm: {corpus: domain, "
                      "init_vectors: lm1}}\n  w2v: {embed")), "steps: cycle lm1 -> lm2 -> lm1"),
])
def test_config_errors_name_the_key_path_before_anything_runs(tmp_path, capsys, edit, message):
    config = write_inputs(tmp_path, CONFIG.replace(*edit))
    assert main(["experiment", "run", str(config), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_registry_corpus_missing_here_is_an_error_of_the_plan(tmp_path, capsys, monkeypatch):
    from nlpft.data.registry import CorpusEntry

    monkeypatch.setattr(CorpusEntry, "path", lambda entry: None)  # as on a machine without the shared corpora
    config = write_inputs(tmp_path, CONFIG.replace("train: data.csv", "train: bbc-news"))
    assert "bbc-news" in config.read_text()
    assert main(["experiment", "run", str(config), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "step ft-tfidf-s1, train: 'bbc-news' is not on this machine; to get it: download" in error
    assert error.count("\n") == 1 and not (tmp_path / "out").exists()


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    config = write_inputs(tmp_path)
    assert main(["experiment", "run", str(config), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "0 cached, 3 to run" in plan and "ft-w2v-s1" in plan and "after w2v" in plan
    assert not (tmp_path / "out").exists()


def test_second_run_reruns_nothing_within_10_seconds(copy, capsys):
    started = time.monotonic()
    code, summary = run(copy / "exp.yaml", copy / "out")
    assert code == 0
    assert time.monotonic() - started < 10
    assert summary["ran"] == [] and set(summary["reused"]) == STEPS
    capsys.readouterr()
    assert main(["experiment", "status", str(copy / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[:2][0] for line in lines) == sorted(STEPS)
    assert all(line.split()[1] == "done" and line.endswith(" s") for line in lines)


def test_changing_one_finetune_option_reruns_exactly_the_runs_it_applies_to(copy):
    (copy / "exp.yaml").write_text(CONFIG.replace("epochs: 2", "epochs: 3"))
    code, summary = run(copy / "exp.yaml", copy / "out")
    assert code == 0
    # TF-IDF trains no epochs: its run keeps its key
    assert summary["ran"] == ["ft-w2v-s1"] and sorted(summary["reused"]) == ["ft-tfidf-s1", "w2v"]


def test_edited_csv_makes_the_finetune_runs_stale_not_the_vectors(copy, capsys):
    with open(copy / "data.csv", "a") as fh:
        fh.write("the dog was happy and lovely,pos\n")
    assert statuses(copy / "out") == {"w2v": "done", "ft-tfidf-s1": "stale", "ft-w2v-s1": "stale"}
    assert main(["experiment", "run", str(copy / "exp.yaml"), "--out", str(copy / "out"), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "1 cached, 2 to run" in plan


def test_edited_corpus_reruns_the_vectors_and_what_uses_them(copy):
    with open(copy / "corpus.txt", "a") as fh:
        fh.write("a new line about the happy dog\n")
    assert statuses(copy / "out") == {"w2v": "stale", "ft-tfidf-s1": "done", "ft-w2v-s1": "stale"}
    code, summary = run(copy / "exp.yaml", copy / "out")
    assert code == 0
    assert sorted(summary["ran"]) == ["ft-w2v-s1", "w2v"] and summary["reused"] == ["ft-tfidf-s1"]


def test_sigkill_mid_step_then_rerun_gives_the_uninterrupted_results(finished, copy):
    out = copy / "out"
    for directory in (out / "steps").glob("ft-tfidf-s1-*"):
        shutil.rmtree(directory)
    experiment = Run([sys.executable, "-m", "nlpft", "experiment", "run", str(copy / "exp.yaml"), "--out", str(out)],
                     timeout=120)
    experiment.wait_until(lambda: any((out / "steps").glob("ft-tfidf-s1-*.partial")))
    experiment.signal(signal.SIGKILL)
    experiment.finish()
    deadline = time.monotonic() + 120
    partial = next((out / "steps").glob("ft-tfidf-s1-*.partial"))
    lock = partial.with_name(partial.name + ".lock")
    while flock_held(lock):  # the step's process dies with the experiment (PR_SET_PDEATHSIG)
        assert time.monotonic() < deadline, "the step's process outlived the experiment"
        time.sleep(0.05)
    assert statuses(out)["ft-tfidf-s1"] == "interrupted"
    code, summary = run(copy / "exp.yaml", out)
    assert code == 0 and summary["ran"] == ["ft-tfidf-s1"]
    assert test_metrics(out, "ft-tfidf-s1") == test_metrics(finished / "out", "ft-tfidf-s1")


def test_a_second_experiment_on_the_same_out_exits_2_naming_the_holder(copy, capsys):
    from nlpft.experiments.executor import experiment_locked

    with experiment_locked(copy / "out", "experiment run other.yaml"):
        code, _ = run(copy / "exp.yaml", copy / "out")
    assert code == 2
    error = capsys.readouterr().err
    assert f"pid {os.getpid()}" in error and "experiment run other.yaml" in error


def test_a_failed_step_names_its_log_and_keep_going_runs_the_rest(tmp_path, capsys):
    config = write_inputs(tmp_path, "corpora: {empty: [empty.txt], domain: [corpus.txt]}\nsteps:\n"
                                    "  bad: {embed: {corpus: empty, dim: 8, epochs: 1}}\n"
                                    "  good: {embed: {corpus: domain, dim: 8, epochs: 1, min_count: 1}}\n")
    (tmp_path / "empty.txt").write_text("")
    code, summary = run(config, tmp_path / "out", "--keep-going")
    assert code == 1
    assert summary["ran"] == ["good"] and list(summary["failed"]) == ["bad"]
    assert Path(summary["failed"]["bad"]).is_file() and summary["failed"]["bad"] in capsys.readouterr().err
    assert statuses(tmp_path / "out") == {"bad": "failed", "good": "done"}


def test_torchrun_launcher_builds_the_torchrun_command(tmp_path):
    from nlpft.experiments.config import load_experiment
    from nlpft.experiments.plan import build_plan, launcher_argv, step_argv

    config = write_inputs(tmp_path, "corpora: {domain: [corpus.txt]}\nsteps:\n  gpt: {pretrain: {arch: gpt2, "
                                    "corpus: domain, max_steps: 5, launcher: torchrun, nproc_per_node: 2}}\n")
    step = build_plan(load_experiment(config)).step("gpt")
    argv = launcher_argv(step, sys.executable) + step_argv(step, {}, tmp_path / "o", threads=1, resume=False)
    assert argv[:7] == ["torchrun", "--nproc-per-node", "2", "--nnodes", "1", "-m", "nlpft"]
    assert argv[7] == "pretrain" and "--arch" in argv and str(tmp_path / "corpus.txt") in argv


def test_per_backbone_settings_and_plugin_options_reach_the_command_line(tmp_path):
    from nlpft.experiments.config import load_experiment
    from nlpft.experiments.plan import build_plan, step_argv

    config = write_inputs(tmp_path, CONFIG.replace("backbones: [tfidf, w2v]", "backbones: [tfidf, {name: w2v-frozen, "
                                                   "model: w2v, freeze_embeddings: true, batch_size: 8}]"))
    plan = build_plan(load_experiment(config))
    step = plan.step("ft-w2v-frozen-s1")
    argv = step_argv(step, {"w2v": tmp_path / "vectors"}, tmp_path / "o", threads=1, resume=False)
    assert "--freeze-embeddings" in argv and argv[argv.index("--batch-size") + 1] == "8"
    assert argv[argv.index("--model") + 1] == str(tmp_path / "vectors") and step.depends_on == ["w2v"]
    assert "--freeze-embeddings" not in step_argv(plan.step("ft-tfidf-s1"), {}, tmp_path / "o", 1, False)


def test_the_bbc_benchmark_config_plans_every_backbone_and_seed(monkeypatch):
    from nlpft.data.registry import CorpusEntry
    from nlpft.experiments.config import load_experiment
    from nlpft.experiments.plan import build_plan

    monkeypatch.setattr(CorpusEntry, "path", lambda entry: Path(entry.location.get("shared", "here")))  # installed or not

    plan = build_plan(load_experiment(Path(__file__).parents[1] / "benchmarks" / "finetune" / "bbc.yaml"))
    finetune = [s for s in plan.steps if s.kind == "finetune"]
    assert len(finetune) == 8 * 3 and {s.seed for s in finetune} == {13, 14, 15}
    assert plan.step("ft-minilm-mean-s13").options["pooling"] == "mean"


def test_the_tagging_benchmark_config_plans_its_split_corpus_and_crf_runs():
    from nlpft.experiments.config import load_experiment
    from nlpft.experiments.plan import build_plan

    config = Path(__file__).parents[1] / "benchmarks" / "tagging" / "wnut16.yaml"
    corpus = Path(__file__).parents[2] / "shared" / "corpora" / "wnut16_ner.conll"
    if not corpus.is_file():
        pytest.skip(f"{corpus} is not on this machine")
    plan = build_plan(load_experiment(config))
    finetune = [s for s in plan.steps if s.kind == "finetune"]
    assert len(finetune) == 4 * 3 and all(s.options["task"] == "tag" for s in finetune)
    assert plan.step("data-split").options["split_seed"] == 13
    assert plan.step("w2v").depends_on == ["data-split"] and plan.step("lm").depends_on == ["data-split"]
    assert [plan.step(f"ft-{name}-s13").options.get("crf") for name in ("minilm", "minilm-crf", "rnn-lm")] == \
        [None, True, True]


def test_jobs_share_the_cores(monkeypatch):
    from nlpft.experiments import executor

    monkeypatch.setattr(executor, "available_cores", lambda: 2)
    assert [executor.thread_budget(jobs) for jobs in (1, 2, 3)] == [2, 1, 1]


def test_the_report_gets_every_finetune_run_and_upstream_step(tmp_path, monkeypatch):
    """Where nlpft.report is installed, a finished experiment hands it its runs."""
    import types
    from dataclasses import dataclass

    from nlpft.experiments import _build_report
    from nlpft.experiments.config import load_experiment
    from nlpft.experiments.plan import build_plan

    @dataclass(frozen=True)
    class Ref:
        path: Path
        model: str = ""
        seed: int | None = None
        name: str = ""
        kind: str = ""

    calls = []

    def build_report(runs, out, primary=None, upstream=()):
        calls.append((runs, out, primary, upstream))
        out.mkdir(parents=True)
        (out / "report.html").write_text("<html></html>")
        return out / "report.html"

    monkeypatch.setitem(sys.modules, "nlpft.report",
                        types.SimpleNamespace(RunRef=Ref, UpstreamRef=Ref, build_report=build_report))
    plan = build_plan(load_experiment(write_inputs(tmp_path)))
    _build_report(plan, tmp_path / "out")
    [(runs, out, primary, upstream)] = calls
    assert [(r.model, r.seed) for r in runs] == [("tfidf", 1), ("w2v", 1)]
    assert primary == "macro_f1"
    assert [(u.name, u.kind) for u in upstream] == [("w2v", "embed")]
    # built aside, then swapped in whole; the same step outputs again: not rebuilt
    assert (tmp_path / "out" / "report" / "report.html").is_file() and not out.exists()
    _build_report(plan, tmp_path / "out")
    assert len(calls) == 1


# a stand-in step: says it started, waits (up to 60 s) until every step of the test has,
# then publishes its output as nlpft does (a .partial directory renamed into place)
CONCURRENT_STEP = """
import json, pathlib, sys, time
out = pathlib.Path(sys.argv[1])
started = out.parent / ("started-" + out.name.rsplit("-", 1)[0])
started.write_text(sys.argv[2])
deadline = time.monotonic() + 60
while len(list(out.parent.glob("started-*"))) < int(sys.argv[3]) and time.monotonic() < deadline:
    time.sleep(0.01)
partial = out.with_name(out.name + ".partial")
partial.mkdir()
(partial / ".nlpft-output.json").write_text("{}")
partial.rename(out)
"""


def test_jobs_run_independent_steps_side_by_side_with_a_thread_budget(tmp_path, monkeypatch):
    from nlpft.experiments import executor

    config = write_inputs(tmp_path, "corpora: {domain: [corpus.txt]}\nsteps:\n"
                                    "  one: {embed: {corpus: domain}}\n  two: {embed: {corpus: domain, dim: 9}}\n")
    monkeypatch.setattr(executor, "available_cores", lambda: 4)
    monkeypatch.setattr(executor, "launcher_argv", lambda step, python: [python, "-c", CONCURRENT_STEP])
    monkeypatch.setattr(executor, "step_argv", lambda step, directories, out, threads, resume: [
        str(out), str(threads), "2"])
    started = time.monotonic()
    code, summary = run(config, tmp_path / "out", "--jobs", "2")
    assert code == 0 and sorted(summary["ran"]) == ["one", "two"]
    assert time.monotonic() - started < 50  # neither step waited out its 60 s: they ran together
    assert [p.read_text() for p in sorted((tmp_path / "out" / "steps").glob("started-*"))] == ["2", "2"]


def test_a_step_with_a_checkpoint_is_resumed(copy, capsys):
    from nlpft.experiments.config import load_experiment
    from nlpft.experiments.executor import step_directory
    from nlpft.experiments.plan import build_plan, step_argv

    plan = build_plan(load_experiment(copy / "exp.yaml"))
    step = plan.step("ft-tfidf-s1")
    directory = step_directory(copy / "out", step)
    partial = directory.with_name(directory.name + ".partial")
    shutil.move(directory, partial)
    (partial / "checkpoint").mkdir()
    (partial / "checkpoint" / "state.json").write_text("{}")
    assert main(["experiment", "run", str(copy / "exp.yaml"), "--out", str(copy / "out"), "--dry-run"]) == 0
    assert "ft-tfidf-s1" in (line := next(x for x in capsys.readouterr().out.splitlines() if "ft-tfidf-s1" in x))
    assert "will resume" in line
    assert step_argv(step, {}, directory, 1, resume=True)[-1] == "--resume"
