"""The Python API (`nlpft.finetune`, `nlpft.embed.train`, `nlpft.lm.train`, `nlpft.pretrain`,
`nlpft.load`): the same runs as the command line, bad input as `nlpft.UserInputError`, and
a process left as it was found, so a second call behaves like the first."""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

import nlpft
from nlpft.cli.main import main
from tests.test_finetune import data_csv, make_rows, tiny_bert, write_csv  # noqa: F401 (fixtures)
from tests.test_tagging import make_sentences, write_conll

REPO = Path(__file__).resolve().parents[1]
QUICK = {"quiet": True, "method": "standard", "max_steps": 4, "max_length": 32, "batch_size": 8}


def test_import_nlpft_loads_nothing_heavy_and_names_the_entry_points():
    script = ("import sys, nlpft\n"
              "entry = [nlpft.finetune, nlpft.embed.train, nlpft.lm.train, nlpft.pretrain, nlpft.load]\n"
              "assert all(map(callable, entry)), entry\n"
              "print(sorted(m for m in ('torch', 'numpy', 'transformers', 'gensim', 'sklearn') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_finetune_stays_callable_after_its_modules_are_imported():
    import nlpft.finetune.options  # importing a submodule rebinds nlpft.finetune to the package

    assert callable(nlpft.finetune)
    assert nlpft.finetune.options.FinetuneOptions is not None


# -- the process as the caller left it ---------------------------------------------------
def _process_state() -> dict:
    import numpy as np
    import torch
    from tqdm import tqdm

    loggers = {name: (logger.level, tuple(logger.handlers), logger.propagate, logger.disabled)
               for name, logger in logging.Logger.manager.loggerDict.items() if isinstance(logger, logging.Logger)}
    return {
        "torch threads": torch.get_num_threads(),
        "torch random": torch.get_rng_state().numpy().tobytes(),
        "numpy random": np.random.get_state()[1].tobytes(),
        "python random": random.getstate(),
        "grad mode": torch.is_grad_enabled(),
        "signal handlers": {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)},
        "root logger": (logging.root.level, tuple(logging.root.handlers)),
        "loggers": loggers,
        "logging disabled": logging.root.manager.disable,
        "warning filters": list(warnings.filters),
        "environment": dict(os.environ),
        "threads": sorted(thread.name for thread in threading.enumerate()),
        "progress bars": len(getattr(tqdm, "_instances", ())),
        "cwd": os.getcwd(),
    }


def _differences(before: dict, after: dict) -> list[str]:
    """What changed; loggers first made during the call (a library's first import) aside."""
    changed = [key for key in before if key != "loggers" and before[key] != after[key]]
    changed += [f"logger {name}" for name, settings in before["loggers"].items() if after["loggers"][name] != settings]
    return changed


@pytest.fixture
def unusual_process_state():
    """Process-wide settings no run would leave behind, so a run that changes them shows;
    the real ones are put back after the test."""
    import numpy as np
    import torch

    saved_threads = torch.get_num_threads()
    saved_signals = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    saved_level = logging.root.level

    def disturb(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed + 1)
        torch.manual_seed(seed + 2)
        torch.set_num_threads(1)
        for sig in saved_signals:
            signal.signal(sig, lambda signum, frame: None)
        logging.root.setLevel(17)

    yield disturb
    torch.set_num_threads(saved_threads)
    for sig, handler in saved_signals.items():
        signal.signal(sig, handler)
    logging.root.setLevel(saved_level)


@pytest.mark.parametrize("backbone", ["tfidf", "tiny-bert"])
def test_finetune_twice_in_one_process_gives_the_same_metrics_and_leaves_no_trace(
        backbone, data_csv, tiny_bert, tmp_path, unusual_process_state):  # noqa: F811
    """Each call sets torch's threads (threads=2), and the Trainer seeds every generator."""
    model = "tfidf" if backbone == "tfidf" else str(tiny_bert)
    results = []
    for run, seed in (("first", 11), ("second", 12)):
        unusual_process_state(seed)
        before = _process_state()
        results.append(nlpft.finetune(train=str(data_csv), model=model, out=str(tmp_path / run), threads=2,
                                      long_text="truncate", **QUICK))  # long_text: a task plug-in's option
        assert _differences(before, _process_state()) == [], f"the {run} call changed these"
    first, second = results
    assert first.metrics == second.metrics
    assert first.metrics["accuracy"] == json.loads((first.path / "metrics.json").read_text())["test"]["accuracy"]
    assert first.path == tmp_path / "first" and first.method == "standard"
    assert first.options.model == model and first.options.max_steps == 4 and first.options.threads == 2
    assert first.options.task_options["long_text"] == "truncate"


def test_a_failing_run_leaves_no_trace_either(monkeypatch, tmp_path, unusual_process_state):
    """A run that stops on bad input half-way (after setting threads, seeds, a signal
    handler, a logger level, an environment variable) gives all of them back."""
    import torch

    from nlpft.cli import finetune as finetune_cli

    def half_done(args):
        torch.set_num_threads(2)
        torch.manual_seed(0)
        random.seed(0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        logging.getLogger("nlpft").setLevel(logging.ERROR)
        os.environ["NLPFT_TEST_LEFT_OVER"] = "1"
        raise nlpft.UserInputError("bad row 3")

    monkeypatch.setattr(finetune_cli, "finetune_from_args", half_done)
    logging.getLogger("nlpft")  # exists before the call, as a library's logger would
    unusual_process_state(5)
    before = _process_state()
    with pytest.raises(nlpft.UserInputError, match="bad row 3"):
        nlpft.finetune(train="polarity", out=str(tmp_path / "out"))
    assert _differences(before, _process_state()) == []


def test_an_interrupted_run_raises_keyboard_interrupt_with_the_resume_hint(monkeypatch, tmp_path):
    from nlpft.cli import finetune as finetune_cli
    from nlpft.errors import Interrupted

    def interrupted(args):
        raise Interrupted("SIGTERM")

    monkeypatch.setattr(finetune_cli, "finetune_from_args", interrupted)
    with pytest.raises(KeyboardInterrupt, match="stopped by SIGTERM: checkpoint written; call again with resume=True"):
        nlpft.finetune(train="polarity", out=str(tmp_path / "out"))


# -- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize(("call", "options", "message"), [
    ("finetune", {"train": "polarity", "out": "o", "epoch": 3}, "unknown option(s) epoch (did you mean epochs?)"),
    ("finetune", {"train": "polarity", "out": "o", "batch_size": [8, 16]}, "batch_size: [8, 16] is not valid"),
    ("finetune", {"train": "polarity", "out": "o", "scheduler": "bogus"}, "invalid choice: 'bogus'"),
    ("finetune", {"train": "polarity", "out": "o", "quiet": "yes"}, "a switch takes true or false"),
    ("finetune", {"out": "o"}, "nlpft.finetune(): missing train=..."),
    ("finetune", {"train": "polarity", "out": "o", "help": True}, "unknown option(s) help"),
    ("finetune", {"train": "no-such.csv", "out": "o", "model": "tfidf"}, "no-such.csv: no such file"),
    ("finetune", {"train": "polarity", "out": "o", "long_text": "sideways"}, "invalid choice: 'sideways'"),
    ("finetune", {"train": "polarity", "out": "o", "model": "tfidf", "pooling": "mean"}, "--pooling applies to"),
    ("embed.train", {"corpus": "lee", "out": "o", "dim": 10.5}, "dim: 10.5 is not valid"),
    ("embed.train", {"corpus": "lee", "out": "o", "algo": "glove2"}, "invalid choice: 'glove2'"),
    ("lm.train", {"corpus": "lee", "out": "o", "layers": 2}, "unknown option(s) layers"),
    ("pretrain", {"corpus": "lee", "out": "o"}, "pass either --arch gpt2|bert"),
])
def test_bad_input_raises_user_input_error_never_system_exit(call, options, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    function = nlpft
    for name in call.split("."):
        function = getattr(function, name)
    with pytest.raises(nlpft.UserInputError) as caught:
        function(**options)
    assert message in str(caught.value)
    assert not (tmp_path / "o").exists()


# -- predictions: the predict and evaluate commands' code, any task -----------------------
@pytest.fixture(scope="module")
def tfidf_model(tmp_path_factory, data_csv) -> Path:  # noqa: F811
    return nlpft.finetune(train=str(data_csv), model="tfidf", quiet=True,
                          out=str(tmp_path_factory.mktemp("runs") / "tfidf")).path


def test_predictions_match_the_predict_command(tfidf_model, tmp_path):
    texts = ["the film was great and lovely", "the meal was awful and poor today", "the hotel was usual"]
    source = write_csv(tmp_path / "new.csv", [{"text": t} for t in texts], fields=("text",))
    assert main(["predict", "--model", str(tfidf_model), "--input", str(source), "--out", str(tmp_path / "p.csv")]) == 0
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as fh:
        expected = list(csv.DictReader(fh))

    clf = nlpft.load(tfidf_model)
    predictions = clf.predict(texts)
    assert [p.label for p in predictions] == [row["predicted"] for row in expected] == ["pos", "neg", "neutral"]
    for prediction, row in zip(predictions, expected, strict=True):
        assert set(prediction.scores) == set(clf.labels)
        assert all(abs(p - float(row[f"p_{label}"])) < 1e-6 for label, p in prediction.scores.items())
    assert clf.predict(texts[0]) == predictions[0]  # one text: one prediction
    assert clf.task == "single" and clf.path == tfidf_model


def test_evaluate_matches_the_evaluate_command(tfidf_model, tmp_path, capsys):
    test_file = write_csv(tmp_path / "test.csv", make_rows(60, 9))
    assert main(["evaluate", "--model", str(tfidf_model), "--input", str(test_file), "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert nlpft.load(tfidf_model).evaluate(test_file) == expected
    with pytest.raises(nlpft.UserInputError, match=re.escape("Predictor.evaluate(): unknown option(s) label_column "
                                                             "(did you mean label_col?)")):
        nlpft.load(tfidf_model).evaluate(test_file, label_column="label")


def test_bad_texts_are_named_by_position(tfidf_model):
    clf = nlpft.load(tfidf_model)
    with pytest.raises(nlpft.UserInputError, match=r"texts\[1\]: --text is empty"):
        clf.predict(["a good film", "  "])
    with pytest.raises(nlpft.UserInputError, match="as many of each"):
        clf.predict(["a good film"], text_pairs=["one", "two"])
    with pytest.raises(nlpft.UserInputError, match="as strings"):
        clf.predict([b"a good film"])
    with pytest.raises(nlpft.UserInputError, match="batch_size must be a whole number, at least 1, not 0"):
        clf.predict(["a good film"], batch_size=0)
    with pytest.raises(nlpft.UserInputError, match="no finetune.json here"):
        nlpft.load(tfidf_model.parent)


@pytest.mark.parametrize("task", ["multi", "regression"])
def test_multi_label_and_regression_predictions(task, tmp_path):
    rng = random.Random(4)
    phrases = {"good": "the film was good", "bad": "the meal was awful", "usual": "the hotel was usual"}
    rows = []
    for _ in range(150):
        tags = [t for t in phrases if rng.random() < 0.45] or ["good"]
        rows.append({"text": " and ".join(phrases[t] for t in tags), "label": ";".join(tags), "score": len(tags)})
    label_col = "label" if task == "multi" else "score"
    data = write_csv(tmp_path / "data.csv", rows, fields=("text", label_col))
    result = nlpft.finetune(train=str(data), task=task, label_col=label_col, model="tfidf", quiet=True,
                            out=str(tmp_path / task))
    (prediction,) = nlpft.load(result.path).predict(["the film was good and the meal was awful"])
    if task == "multi":
        assert isinstance(prediction.label, tuple) and {"bad", "good"} <= set(prediction.label)
        assert set(prediction.scores) == {"bad", "good", "usual"}
    else:
        assert isinstance(prediction.label, float) and 1.5 < prediction.label < 2.5
        assert prediction.scores == {}


def test_tagging_predictions_give_a_tag_per_word_and_the_entities(tiny_bert, tmp_path):  # noqa: F811
    train = write_conll(tmp_path / "train.conll", make_sentences(120, 0))
    result = nlpft.finetune(train=str(train), task="tag", model=str(tiny_bert), out=str(tmp_path / "ner"), **QUICK)
    tagger = nlpft.load(result.path)
    (prediction,) = tagger.predict(["we met John Smith in Paris today ."])
    assert tagger.task == "tag"
    assert prediction.words == ["we", "met", "John", "Smith", "in", "Paris", "today", "."]
    assert len(prediction.label) == len(prediction.scores) == len(prediction.words)
    assert set(prediction.label) <= set(tagger.labels) and all(0 <= score <= 1 for score in prediction.scores)
    assert isinstance(prediction.entities, list)


# -- the other training commands -----------------------------------------------------------
def test_embed_train_returns_the_vectors(small_corpus, tmp_path):
    result = nlpft.embed.train(corpus=str(small_corpus), dim=8, min_count=1, epochs=1, threads=1, quiet=True,
                               out=str(tmp_path / "w2v"))
    assert "sheep" in result.vectors.key_to_index and result.vectors.vector_size == 8
    assert {"vectors.bin", "vectors.txt", "metrics.json", "config.json"} <= set(result.files)
    assert result.metrics == json.loads((tmp_path / "w2v" / "metrics.json").read_text())


def test_lm_train_and_pretrain(small_corpus, tmp_path):
    lm = nlpft.lm.train(corpus=str(small_corpus), out=str(tmp_path / "lm"), max_steps=2, embedding_dim=16,
                        hidden_dim=16, num_layers=1, bptt=8, batch_size=4, threads=1, quiet=True)
    assert "model.safetensors" in lm.files and lm.metrics["steps"] == 2
    gpt = nlpft.pretrain(arch="gpt2", corpus=str(small_corpus), out=str(tmp_path / "gpt"), max_steps=2,
                         vocab_size=300, block_size=32, batch_size=4, threads=1, quiet=True)
    assert "model.safetensors" in gpt.files and "test" in json.dumps(gpt.metrics)


# -- the README's example ------------------------------------------------------------------
def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## From Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 (the README's own example)
    printed = capsys.readouterr().out
    assert (tmp_path / "runs" / "clf-py" / "metrics.json").is_file()
    assert "unknown option(s) epoch (did you mean epochs?)" in printed
