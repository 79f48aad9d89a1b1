"""`nlpft split` writes the split finetune makes; an experiment's `data:train` corpus is its
training text, and never holds a test row."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from nlpft.cli.main import main
from tests.test_experiment import run, write_inputs
from tests.test_tagging import make_sentences, write_conll


def texts_of(path: Path, column: str = "text") -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [row[column] for row in csv.DictReader(fh)]


def split_of(folder: Path, *extra: str) -> Path:
    assert main(["split", "--train", str(folder / "data.csv"), "--out", str(folder / "split"), *extra]) == 0
    return folder / "split"


def test_split_writes_the_rows_finetune_holds_out(tmp_path):
    write_inputs(tmp_path)
    split = split_of(tmp_path, "--seed", "7")
    info = json.loads((split / "split.json").read_text())
    assert info["rows"] == {"train": 108, "valid": 20, "test": 32} and info["seed"] == 7  # 40 rows at least: 0.2
    parts = {part: texts_of(split / f"{part}.csv") for part in ("train", "valid", "test")}
    assert sorted(sum(parts.values(), [])) == sorted(texts_of(tmp_path / "data.csv"))  # a partition of the file
    assert (split / "train.txt").read_text().splitlines() == parts["train"]  # the training text alone

    # finetune with the same seed holds out the same test rows, and so does a fixed --split-seed
    for seeds in (["--seed", "7"], ["--seed", "2", "--split-seed", "7"]):
        out = tmp_path / f"clf-{'-'.join(seeds)}"
        assert main(["finetune", "--train", str(tmp_path / "data.csv"), "--model", "tfidf", "--out", str(out),
                     "--quiet", *seeds]) == 0
        assert sorted(texts_of(out / "predictions.csv")) == sorted(parts["test"])
    other = split_of(tmp_path, "--seed", "8", "--overwrite")
    assert sorted(texts_of(other / "test.csv")) != sorted(parts["test"])  # the seed matters


def test_split_files_read_back_as_the_same_split(tmp_path):
    write_inputs(tmp_path)
    split = split_of(tmp_path, "--seed", "3")
    out = tmp_path / "from-files"
    assert main(["finetune", "--train", str(split / "train.csv"), "--valid", str(split / "valid.csv"), "--test",
                 str(split / "test.csv"), "--model", "tfidf", "--out", str(out), "--quiet"]) == 0
    assert texts_of(out / "predictions.csv") == texts_of(split / "test.csv")
    labels = {row["text"]: row["label"] for row in csv.DictReader(open(tmp_path / "data.csv", encoding="utf-8"))}
    assert all(labels[row["text"]] == row["gold"] for row in csv.DictReader(open(out / "predictions.csv")))


def test_a_tagged_file_splits_into_conll_files(tmp_path):
    sentences = make_sentences(100, 0)
    source = write_conll(tmp_path / "tags.conll", sentences)
    assert main(["split", "--task", "tag", "--train", str(source), "--out", str(tmp_path / "split")]) == 0
    from nlpft.data.tagged import read_tagged

    parts = {part: list(read_tagged(tmp_path / "split" / f"{part}.conll")) for part in ("train", "valid", "test")}
    assert sum(len(rows) for rows in parts.values()) == 100
    read = sorted((tuple(s.tokens), tuple(s.tags)) for rows in parts.values() for s in rows)
    assert read == sorted((tuple(tokens), tuple(tags)) for tokens, tags in sentences)
    corpus = (tmp_path / "split" / "train.txt").read_text().splitlines()
    assert corpus == [" ".join(s.tokens) for s in parts["train"]]


def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    write_inputs(tmp_path)
    code = main(["split", "--train", str(tmp_path / "data.csv"), "--label-col", "nope", "--out", str(tmp_path / "s")])
    assert code == 2 and "nope" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


DATA_TRAIN_CONFIG = """\
name: own-text
data: {train: data.csv, split_seed: 5}
corpora: {own: [corpus.txt, data:train]}
steps:
  w2v: {embed: {algo: word2vec, corpus: own, dim: 8, epochs: 1, min_count: 1, threads: 1}}
finetune:
  backbones: [tfidf, w2v]
  seeds: [1, 2]
  epochs: 1
"""


def test_data_train_is_the_fixed_splits_training_text_and_no_test_row(tmp_path):
    config = write_inputs(tmp_path, DATA_TRAIN_CONFIG)
    code, summary = run(config, tmp_path / "out")
    assert code == 0, summary
    assert set(summary["ran"]) == {"data-split", "w2v", "ft-tfidf-s1", "ft-tfidf-s2", "ft-w2v-s1", "ft-w2v-s2"}
    steps = tmp_path / "out" / "steps"
    split = next(steps.glob("data-split-*"))
    test_rows = set(texts_of(split / "test.csv"))
    for seed in (1, 2):  # every seed tests on the split's test rows...
        run_dir = next(steps.glob(f"ft-tfidf-s{seed}-*"))
        assert set(texts_of(run_dir / "predictions.csv")) == test_rows
    log = (tmp_path / "out" / "logs" / "w2v.log").read_text()
    assert f"{split / 'train.txt'}" in log and "corpus.txt" in log  # ...and the vectors read only its training text
    assert not test_rows & set((split / "train.txt").read_text().splitlines())


def test_data_train_keys_follow_the_split(tmp_path):
    from nlpft.experiments.config import load_experiment
    from nlpft.experiments.plan import build_plan

    def keys(config: str) -> dict:
        return {s.name: s.key for s in build_plan(load_experiment(write_inputs(tmp_path, config))).steps}

    before = keys(DATA_TRAIN_CONFIG)
    after = keys(DATA_TRAIN_CONFIG.replace("split_seed: 5", "split_seed: 6"))
    assert before.keys() == after.keys() and all(before[name] != after[name] for name in before)
    unchanged = keys(DATA_TRAIN_CONFIG.replace("epochs: 1\n", "epochs: 2\n"))  # the finetune section only
    # epochs are nothing to TF-IDF: only the word2vec runs change
    assert [name for name in before if before[name] != unchanged[name]] == ["ft-w2v-s1", "ft-w2v-s2"]


@pytest.mark.parametrize("edit, message", [
    (("split_seed: 5", "seed_of_split: 5"), "data.seed_of_split: unknown option of finetune"),
    (("{train: data.csv, split_seed: 5}", "{train: data.csv}"),
     "corpora.own: data:train needs one split for every seed, so that no test row reaches step w2v: set "
     "data.split_seed"),
    (("  w2v: {embed", "  data-split: {embed: {algo: word2vec, corpus: own}}\n  w2v: {embed"),
     "steps.data-split: the name is the plan's own"),
])
def test_data_train_errors_name_the_key(tmp_path, capsys, edit, message):
    config = write_inputs(tmp_path, DATA_TRAIN_CONFIG.replace(*edit))
    assert main(["experiment", "run", str(config), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
