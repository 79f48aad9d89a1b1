"""Bad option values, config files and model metadata: one line naming what to fix, exit 2,
never a traceback after the model has loaded. Config values pass the same checks as flags."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nlpft.cli.main import _parse_with_config, build_parser, main
from nlpft.errors import UserInputError


def _labeled_csv(path: Path, n: int = 30) -> Path:
    words = {"pos": ["good", "great", "lovely"], "neg": ["bad", "awful", "dreadful"]}
    rows = ["text,label"]
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        rows.append(f"the film was {words[label][i % 3]} indeed {i},{label}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def train_csv(tmp_path_factory) -> Path:
    return _labeled_csv(tmp_path_factory.mktemp("data") / "train.csv")


@pytest.fixture(scope="module")
def tfidf_run(tmp_path_factory, train_csv) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tfidf"
    assert main(["finetune", "--train", str(train_csv), "--model", "tfidf", "--out", str(out), "--quiet"]) == 0
    return out


def _fails_cleanly(argv: list[str], capsys) -> str:
    """Run the CLI, expect exit 2 and no traceback; the error text."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err
    return err


# -- numeric ranges on the command line ---------------------------------------------------
@pytest.mark.parametrize("flags, named", [
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**32)], "--seed"),
    (["--threads", "-1"], "--threads"),
])
def test_finetune_flags_out_of_range(flags, named, train_csv, tmp_path, capsys):
    err = _fails_cleanly(["finetune", "--train", str(train_csv), "--model", "tfidf", "--out", str(tmp_path / "o"),
                          "--quiet", *flags], capsys)
    assert named in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_predict_and_evaluate_batch_size_zero(command, tfidf_run, train_csv, tmp_path, capsys):
    source = ["--text", "a good film"] if command == "predict" else ["--input", str(train_csv)]
    err = _fails_cleanly([command, "--model", str(tfidf_run), *source, "--batch-size", "0"], capsys)
    assert "--batch-size" in err and "at least 1" in err


@pytest.mark.parametrize("argv", [
    ["embed", "train", "--corpus", "lee", "--out", "OUT", "--dim", "0"],
    ["embed", "train", "--corpus", "lee", "--out", "OUT", "--threads", "0"],
    ["lm", "train", "--corpus", "lee", "--out", "OUT", "--hidden-dim", "-3"],
    ["lm", "generate", "--model", "OUT", "--seed", "-1"],
    ["pretrain", "--arch", "gpt2", "--corpus", "lee", "--out", "OUT", "--batch-size", "0"],
    ["encode", "--input", "OUT.txt", "--out", "OUT.npy", "--batch-size", "0"],
])
def test_other_commands_check_ranges_while_parsing(argv, tmp_path, capsys):
    out = str(tmp_path / "o")
    err = _fails_cleanly([arg.replace("OUT", out) for arg in argv], capsys)
    assert "argument --" in err  # argparse named the flag before anything was read or loaded
    assert not list(tmp_path.iterdir())


def test_python_api_rejects_bad_seed_threads_and_batch_size(tfidf_run, train_csv, tmp_path):
    from nlpft.embeddings.config import EmbeddingConfig
    from nlpft.lm.trainer import LMTrainConfig
    from nlpft.runners.finetune import FinetuneOptions, finetune
    from nlpft.runners.predict import evaluate, predict

    with pytest.raises(UserInputError, match="--seed"):
        finetune(FinetuneOptions(train=str(train_csv), out=str(tmp_path / "o"), model="tfidf", seed=-1))
    with pytest.raises(UserInputError, match="--threads"):
        finetune(FinetuneOptions(train=str(train_csv), out=str(tmp_path / "o"), model="tfidf", threads=-1))
    with pytest.raises(UserInputError, match="--batch-size"):
        predict(str(tfidf_run), None, "a good film", None, batch_size=0)
    with pytest.raises(UserInputError, match="--batch-size"):
        evaluate(str(tfidf_run), str(train_csv), batch_size=0)
    with pytest.raises(UserInputError, match="--seed"):
        EmbeddingConfig(seed=-1).resolved()
    with pytest.raises(UserInputError, match="--seed"):
        LMTrainConfig(seed=2**32).validate()


@pytest.mark.parametrize("field, value, flag, message", [
    ("scheduler", "bogus", "--scheduler", "invalid choice: 'bogus'"),
    ("warmup", -1.0, "--warmup", "must be 0 or more"),
    ("weight_decay", -0.5, "--weight-decay", "must be 0 or more"),
    ("checkpoint_every", 0, "--checkpoint-every", "must be at least 1"),
    ("lr", float("nan"), "--lr", "is not a finite number"),
])
def test_python_api_checks_every_option_as_the_cli_does(field, value, flag, message, train_csv, tmp_path, capsys):
    """Each option's type and choices run on FinetuneOptions built in Python too, so a value
    the command line refuses never reaches training (where TF-IDF ignored it silently)."""
    from nlpft.runners.finetune import FinetuneOptions, finetune

    cli_value = str(value)
    err = _fails_cleanly(["finetune", "--train", str(train_csv), "--model", "tfidf", "--out", str(tmp_path / "o"),
                          flag, cli_value], capsys)
    assert flag in err and message in err
    with pytest.raises(UserInputError, match=f"^{flag}:? .*{re.escape(message)}"):
        finetune(FinetuneOptions(train=str(train_csv), out=str(tmp_path / "o"), model="tfidf", **{field: value}))
    assert not (tmp_path / "o").exists()


def test_finetune_saves_resolved_options_and_leaves_the_callers_alone(train_csv, tmp_path):
    from nlpft.runners.finetune import FinetuneOptions, finetune

    opts = FinetuneOptions(train="polarity", out=str(tmp_path / "o"), model="tfidf", quiet=True)
    finetune(opts)
    assert opts.train == "polarity" and opts.precision == "auto"  # resolved into a new object
    saved = json.loads((tmp_path / "o" / "finetune.json").read_text())["options"]
    assert saved["train"].endswith(".csv") and saved["precision"] == "fp32" and saved["model"] == "tfidf"


# -- config values pass the flags' checks -------------------------------------------------
@pytest.mark.parametrize("text, key, value", [
    ("batch_size: [8, 16]\n", "batch_size", "[8, 16]"),
    ("scheduler: bogus\n", "scheduler", "bogus"),
    ("seed: -1\n", "seed", "-1"),
    ("quiet: 'yes'\n", "quiet", "yes"),
    ("epochs: 2.5\n", "epochs", "2.5"),
    ("text_col: {a: 1}\n", "text_col", "{'a': 1}"),
])
def test_finetune_config_values_checked_like_flags(text, key, value, train_csv, tmp_path, capsys):
    config = tmp_path / "opts.yaml"
    config.write_text(text)
    err = _fails_cleanly(["finetune", "--train", str(train_csv), "--model", "tfidf", "--out", str(tmp_path / "o"),
                          "--config", str(config)], capsys)
    assert f"{config}: {key}: " in err and value in err and "expected" in err
    assert not (tmp_path / "o").exists()


def test_embed_config_dim_must_be_whole(small_corpus, tmp_path, capsys):
    config = tmp_path / "opts.json"
    config.write_text(json.dumps({"dim": 10.7, "corpus": [str(small_corpus)]}))
    err = _fails_cleanly(["embed", "train", "--out", str(tmp_path / "o"), "--config", str(config)], capsys)
    assert f"{config}: dim: 10.7 is not valid" in err and "whole number" in err


def test_config_values_are_converted_and_flags_still_win(tmp_path):
    config = tmp_path / "opts.yaml"
    config.write_text("corpus: austen.txt\ndim: 16\nalpha: '0.01'\nlowercase: false\narchitecture: cbow\n"
                      "quiet: true\nmax_steps: null\n")
    args = _parse_with_config(build_parser(), ["embed", "train", "--out", "o", "--config", str(config)])
    assert args.corpus == ["austen.txt"] and args.dim == 16 and args.alpha == 0.01
    assert args.lowercase is False and args.quiet is True and args.architecture == "cbow"
    assert args.max_steps is None  # null keeps the default
    args = _parse_with_config(build_parser(), ["embed", "train", "--out", "o", "--config", str(config),
                                               "--dim", "8", "--corpus", "a", "b"])
    assert args.dim == 8 and args.corpus == ["a", "b"]


def test_config_file_too_big(tmp_path, capsys):
    config = tmp_path / "big.yaml"
    config.write_text("# padding\n" * 200_000)
    err = _fails_cleanly(["embed", "train", "--corpus", "lee", "--out", str(tmp_path / "o"), "--config", str(config)],
                         capsys)
    assert str(config) in err and "too big" in err


BILLION_LAUGHS = textwrap.dedent("""\
    corpus:
      - &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]
      - &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
      - &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
      - &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
      - &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
      - &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
      - &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
      - &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
      - &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
    """)


def test_yaml_billion_laughs_is_refused_quickly(tmp_path):
    """Run in a child with 2 GiB of address space and a timeout, so a regression fails
    here instead of eating the machine."""
    config = tmp_path / "laughs.yaml"
    config.write_text(BILLION_LAUGHS)
    child = textwrap.dedent(f"""\
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
        from nlpft.cli.main import main
        sys.exit(main(["embed", "train", "--out", {str(tmp_path / "o")!r}, "--config", {str(config)!r}]))
        """)
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        pytest.fail("a YAML alias bomb in --config ran for over 60 s")
    assert done.returncode == 2, done.stderr[-2000:]
    assert str(config) in done.stderr and "alias" in done.stderr
    assert time.monotonic() - started < 30


# -- damaged model metadata ---------------------------------------------------------------
def _copy_run(run: Path, to: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, to))


@pytest.mark.parametrize("meta, problem", [
    ({}, "missing field 'backbone'"),
    ([], "a JSON list, not an object"),
    ("keep-but-drop:task", "missing field 'task'"),
    ("keep-but-set:task=single", "field 'task' is a string, expected an object"),
    ("keep-but-set:label_map=null", "missing field 'label_map'"),
])
def test_damaged_finetune_json(meta, problem, tfidf_run, train_csv, tmp_path, capsys):
    run = _copy_run(tfidf_run, tmp_path / "run")
    original = json.loads((run / "finetune.json").read_text())
    if isinstance(meta, str):
        action, _, field = meta.partition(":")
        if action == "keep-but-drop":
            original.pop(field)
        else:
            name, _, value = field.partition("=")
            original[name] = None if value == "null" else value
        meta = original
    (run / "finetune.json").write_text(json.dumps(meta))
    for argv in (["predict", "--model", str(run), "--text", "a good film"],
                 ["evaluate", "--model", str(run), "--input", str(train_csv)]):
        err = _fails_cleanly(argv, capsys)
        assert f"{run / 'finetune.json'}: {problem}" in err and "retrain" in err


def test_tokenizer_json_with_a_string_vocab(tmp_path):
    from nlpft.pretrained.loading import load_tokenizer
    from nlpft.tokenization.subword import train_subword_tokenizer

    folder = tmp_path / "tok"
    train_subword_tokenizer(["the film was good", "the meal was bad"] * 10, "wordpiece", 100,
                            model_max_length=32).save_pretrained(folder)
    state = json.loads((folder / "tokenizer.json").read_text())
    state["model"]["vocab"] = "oops"
    (folder / "tokenizer.json").write_text(json.dumps(state))
    with pytest.raises(UserInputError, match="cannot load the tokenizer.*tokenizer.json"):
        load_tokenizer(str(folder))
