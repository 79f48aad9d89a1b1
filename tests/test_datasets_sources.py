"""Labeled data and corpora read through `datasets`: Parquet files, save_to_disk directories
(a Dataset or a DatasetDict) and `hf:NAME[:CONFIG][@SPLIT]`.

Every test runs offline with a Hugging Face cache of its own (HF_HOME in a temporary
folder, HF_HUB_OFFLINE=1, for this process and for subprocesses), so nothing reaches the
network and the user's cache is never touched. `hf:` is tested through what `load_dataset`
takes offline (a local folder laid out as a Hub dataset repo), and against the Hub on
127.0.0.1 that tests/hub_server.py serves.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nlpft.cli.main import main
from nlpft.errors import UserInputError

POSITIVE = ["good", "great", "excellent", "lovely", "wonderful"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "dreadful"]
NOUNS = ["film", "meal", "hotel", "book", "concert"]
FINETUNE_FAST = ["--model", "tfidf", "--quiet"]


@pytest.fixture(autouse=True)
def offline_cache(tmp_path, monkeypatch) -> Path:
    """A Hugging Face home of the test's own, offline, here and in subprocesses."""
    import datasets

    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    # what `datasets` read from the environment when it was first imported
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return home


def reviews(n: int, offset: int = 0) -> dict:
    """Texts with a plain signal and their labels as ids (1 = pos), in alternation."""
    texts, labels = [], []
    for i in range(offset, offset + n):
        words = POSITIVE if i % 2 else NEGATIVE
        texts.append(f"the {NOUNS[i % 5]} was {words[i % 5]} and {words[(i // 5) % 5]}")
        labels.append(i % 2)
    return {"text": texts, "label": labels}


def class_label_features(names=("neg", "pos")):
    from datasets import ClassLabel, Features, Value

    return Features({"text": Value("string"), "label": ClassLabel(names=list(names))})


def dataset(columns: dict, features=None):
    from datasets import Dataset

    return Dataset.from_dict(columns, features=features)


def write_parquet(path: Path, columns: dict, features=None) -> Path:
    dataset(columns, features).to_parquet(str(path))
    return path


def hub_layout(folder: Path, splits: dict[str, dict], features=None) -> Path:
    """A folder laid out as a Hub dataset repo (data/SPLIT-00000-of-00001.parquet): what
    `load_dataset(folder)` reads offline, as it reads a downloaded repo."""
    (folder / "data").mkdir(parents=True)
    for split, columns in splits.items():
        write_parquet(folder / "data" / f"{split}-00000-of-00001.parquet", columns, features)
    return folder


def read(spec, **kwargs):
    from nlpft.data.labeled import read_labeled

    return read_labeled(str(spec), **kwargs)


def error_of(spec, **kwargs) -> str:
    with pytest.raises(UserInputError) as caught:
        read(spec, **kwargs)
    return str(caught.value)


# -- labeled data ------------------------------------------------------------------------------
def test_parquet_rows_are_numbered_by_their_index(tmp_path):
    columns = {"text": ["a good film", "a bad film", "a great meal"], "label": ["pos", "neg", "pos"]}
    data = read(write_parquet(tmp_path / "train.parquet", columns))
    assert [ex.row for ex in data] == [0, 1, 2]
    assert data.texts() == columns["text"] and data.labels() == ["pos", "neg", "pos"]


def test_bad_parquet_rows_are_reported_by_index_and_skipped(tmp_path):
    columns = reviews(8)
    columns["text"][3] = None
    columns["label"] = [str(label) for label in columns["label"]]
    columns["label"][5] = " "
    path = write_parquet(tmp_path / "train.parquet", columns)
    message = error_of(path)
    assert message.splitlines()[0] == (f"{path}: 2 problems found (row numbers are the dataset's row indices, "
                                       "from 0):")
    assert "empty text (1 row): row 3;" in message and "empty label (1 row): row 5;" in message
    assert "--skip-bad-rows" in message

    data = read(path, skip_bad_rows=True)
    assert [s.row for s in data.skipped_rows] == [3, 5] and len(data) == 6
    assert data.bad_rows_file == tmp_path / "train.parquet.bad-rows.txt"
    assert "3\tempty text" in data.bad_rows_file.read_text()


def test_finetune_skips_a_bad_parquet_row_and_records_the_file(tmp_path, capsys):
    columns = reviews(60)
    columns["text"][7] = ""
    train = write_parquet(tmp_path / "reviews.parquet", columns, class_label_features())
    out = tmp_path / "clf"
    args = ["finetune", "--train", str(train), "--out", str(out), "--model", "tfidf"]  # not --quiet: it says what
    assert main(args) == 2                                                             # was skipped
    assert "empty text (1 row): row 7;" in capsys.readouterr().err
    assert main([*args, "--skip-bad-rows"]) == 0
    assert "reviews.parquet: skipped 1 row (empty text: 1)" in capsys.readouterr().err
    meta = json.loads((out / "finetune.json").read_text())
    assert meta["options"]["train"] == str(train)
    assert meta["label_map"]["label2id"] == {"neg": 0, "pos": 1}


def test_save_to_disk_dataset_and_dataset_dict(tmp_path):
    from datasets import DatasetDict

    single = tmp_path / "single"
    dataset(reviews(6), class_label_features()).save_to_disk(str(single))
    assert read(single).labels() == ["neg", "pos"] * 3

    splits = tmp_path / "splits"
    DatasetDict(train=dataset(reviews(6)), validation=dataset(reviews(4, offset=100)),
                test=dataset(reviews(2, offset=200))).save_to_disk(str(splits))
    train = read(splits)
    assert len(train) == 6
    assert train.note == (f"{splits}: reading split 'train' (it has train, validation, test); name another with "
                          f"{splits}@SPLIT")
    assert len(read(splits, role="valid", training=False)) == 4
    assert len(read(f"{splits}@test", training=False)) == 2
    assert error_of(f"{splits}@dev") == (f"{splits}: no split 'dev'; it has train, validation, test: pass "
                                         f"{splits}@SPLIT with one of them")


def test_missing_split_lists_the_splits_there_are(tmp_path):
    from datasets import DatasetDict

    folder = tmp_path / "no-test"
    DatasetDict(train=dataset(reviews(4)), validation=dataset(reviews(4))).save_to_disk(str(folder))
    assert error_of(folder, role="test", training=False) == (
        f"{folder}: no test split; it has train, validation: pass {folder}@SPLIT with one of them")


def test_class_label_columns_give_label_names(tmp_path):
    from datasets import ClassLabel, Features, Sequence, Value

    path = write_parquet(tmp_path / "single.parquet", reviews(4), class_label_features(("negative", "positive")))
    assert read(path).labels() == ["negative", "positive"] * 2

    topics = Features({"text": Value("string"), "label": Sequence(ClassLabel(names=["art", "food", "sport"]))})
    columns = {"text": ["a painted dish", "a match", "a meal"], "label": [[0, 1], [2], [1]]}
    path = write_parquet(tmp_path / "multi.parquet", columns, topics)
    assert read(path, task="multi").labels() == [("art", "food"), ("sport",), ("food",)]

    unlabeled = reviews(4)
    unlabeled["label"][2] = -1  # ClassLabel's "no label"
    path = write_parquet(tmp_path / "unlabeled.parquet", unlabeled, class_label_features())
    assert "empty label (1 row): row 2;" in error_of(path)


def test_missing_column_names_the_dataset_and_the_flag(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", {"review": ["good", "bad"], "label": ["pos", "neg"]})
    message = error_of(path)
    assert ("missing column 'text'; the dataset has columns 'review', 'label'; pass --text-col NAME to use "
            "another") in message
    assert read(path, text_col="review").texts() == ["good", "bad"]


# -- hf:NAME -----------------------------------------------------------------------------------
def test_hf_reads_a_local_repo_folder_by_split(tmp_path):
    repo = hub_layout(tmp_path / "repo", {"train": reviews(6), "test": reviews(2, offset=50)}, class_label_features())
    train = read(f"hf:{repo}")
    assert train.labels() == ["neg", "pos"] * 3 and train.note.startswith(f"hf:{repo}: reading split 'train'")
    assert len(read(f"hf:{repo}", role="test", training=False)) == 2
    assert len(read(f"hf:{repo}@test", training=False)) == 2
    assert error_of(f"hf:{repo}", role="valid", training=False) == (
        f"hf:{repo}: no validation split; it has train, test: pass hf:{repo}@SPLIT with one of them")
    assert error_of(f"hf:{repo}@validation") == (
        f"hf:{repo}: no split 'validation'; it has train, test: pass hf:{repo}@SPLIT with one of them")
    assert error_of(f"hf:{repo}:sst2") == (
        f"hf:{repo}:sst2: no configuration 'sst2'; it has default: pass hf:{repo}:CONFIG with one of them")


def test_hf_configurations_are_named_after_the_colon(tmp_path):
    repo = tmp_path / "repo"
    for config, offset in (("short", 0), ("long", 100)):
        (repo / config).mkdir(parents=True)
        write_parquet(repo / config / "train.parquet", reviews(4, offset=offset))
    (repo / "README.md").write_text("---\nconfigs:\n- config_name: short\n  data_files: short/*.parquet\n"
                                    "- config_name: long\n  data_files: long/*.parquet\n---\n")
    assert read(f"hf:{repo}:long").texts() == reviews(4, offset=100)["text"]
    assert error_of(f"hf:{repo}") == (f"hf:{repo}: the dataset has several configurations (short, long); name one "
                                      f"with hf:{repo}:CONFIG")
    assert error_of(f"hf:{repo}:medium@train") == (
        f"hf:{repo}:medium@train: no configuration 'medium'; it has short, long: pass hf:{repo}:CONFIG with one of "
        "them")


def test_a_dataset_with_a_loading_script_is_refused(tmp_path):
    scripted = tmp_path / "scripted"
    scripted.mkdir()
    (scripted / "scripted.py").write_text("raise SystemExit('dataset code ran')\n")
    message = error_of(f"hf:{scripted}")
    assert message.startswith(f"hf:{scripted}: the dataset needs a loading script, and nlpft never runs")
    assert "\n" not in message


def test_hf_name_offline_and_not_cached_is_one_line(tmp_path):
    train = "hf:tiny-org/not-in-the-cache"
    proc = subprocess.run([sys.executable, "-m", "nlpft", "finetune", "--train", train, "--out",
                           str(tmp_path / "clf"), *FINETUNE_FAST], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {train}: not in the local cache, and the Hub cannot be reached (Couldn't reach "
        "'tiny-org/not-in-the-cache' on the Hub (OfflineModeIsEnabled)); connect to the network (and unset "
        "HF_HUB_OFFLINE), or pass a Parquet file or a save_to_disk directory"]
    assert not (tmp_path / "clf").exists()


def test_finetune_on_hf_splits_records_the_spec_as_given(tmp_path, capsys):
    repo = hub_layout(tmp_path / "repo", {"train": reviews(60), "validation": reviews(20, offset=100),
                                          "test": reviews(20, offset=200)}, class_label_features())
    spec = f"hf:{repo}"
    out = tmp_path / "clf"
    assert main(["finetune", "--train", spec, "--valid", spec, "--test", f"{spec}@test", "--out", str(out),
                 *FINETUNE_FAST]) == 0
    err = capsys.readouterr().err
    assert f"{spec}: reading split 'validation'" in err  # said even with --quiet: the user named no split
    meta = json.loads((out / "finetune.json").read_text())
    assert (meta["options"]["train"], meta["options"]["valid"], meta["options"]["test"]) == (spec, spec,
                                                                                             f"{spec}@test")
    assert meta["label_map"]["id2label"] == {"0": "neg", "1": "pos"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == 1.0  # the words give the label away: a working read learns it
    predictions = (out / "predictions.csv").read_text().splitlines()
    assert predictions[1].split(",")[:2] == ["0", reviews(1, offset=200)["text"][0]]  # row = the row index


def test_hub_dataset_through_the_loopback_hub(hub_env, tmp_path):
    """Against tests/hub_server.py, the Hub on 127.0.0.1: its Parquet dataset repo
    tiny-org/tiny-sentiment trains a classifier, and then, offline, the cached copy does."""
    from tests import hub_server

    spec = "hf:tiny-org/tiny-sentiment"
    command = [sys.executable, "-m", "nlpft", "finetune", "--train", spec, "--test", spec, *FINETUNE_FAST]
    online = hub_server.subprocess_env(HF_HUB_OFFLINE=None, HF_UPDATE_DOWNLOAD_COUNTS="0")
    proc = subprocess.run([*command, "--out", str(tmp_path / "online")], env=online, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "online" / "finetune.json").read_text())
    assert meta["options"]["train"] == spec and meta["label_map"]["id2label"] == {"0": "neg", "1": "pos"}
    offline = hub_server.subprocess_env(HF_HUB_OFFLINE="1")
    proc = subprocess.run([*command, "--out", str(tmp_path / "offline")], env=offline, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    missing = [sys.executable, "-m", "nlpft", "finetune", "--train", "hf:tiny-org/no-such-dataset", "--out",
               str(tmp_path / "missing"), *FINETUNE_FAST]
    proc = subprocess.run(missing, env=online, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "hf:tiny-org/no-such-dataset: no such dataset on the Hugging Face Hub" in proc.stderr


def test_datasets_is_imported_only_for_a_dataset_source(tmp_path):
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("text,label\ngood,pos\nbad,neg\n")
    script = ("import sys\n"
              "from nlpft.cli.main import main\n"
              "from nlpft.data.labeled import read_labeled\n"
              "for argv in (['--help'], ['finetune', '--help'], ['embed', 'train', '--help']):\n"
              "    try:\n"
              "        main(argv)\n"
              "    except SystemExit:\n"
              "        pass\n"
              f"read_labeled({str(csv_file)!r})\n"
              "print('datasets' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"


# -- corpora -----------------------------------------------------------------------------------
def documents(n: int) -> list[str]:
    """Documents of three lines each, the words repeating so that min-count keeps some."""
    animals, places = ["cat", "dog", "horse", "cow"], ["house", "barn", "field", "garden"]
    return ["\n".join(f"the {animals[(i + k) % 4]} sleeps in the {places[(i * 3 + k) % 4]}" for k in range(3))
            for i in range(n)]


@pytest.fixture
def corpus_parquet(tmp_path) -> Path:
    return write_parquet(tmp_path / "docs.parquet", {"id": list(range(300)), "body": documents(300)})


def test_embed_train_reads_a_parquet_corpus(corpus_parquet, tmp_path, capsys):
    out = tmp_path / "vectors"
    args = ["embed", "train", "--corpus", str(corpus_parquet), "--out", str(out), "--dim", "8", "--min-count", "1",
            "--epochs", "1", "--threads", "1", "--quiet"]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == (f"error: {corpus_parquet}: no column 'text'; it has id, body: pass "
                                               "--text-col NAME (its text columns: body)")
    assert main([*args, "--text-col", "id"]) == 2
    assert "column 'id' holds Value('int64'), not text" in capsys.readouterr().err
    assert main([*args, "--text-col", "body"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["corpus"]["lines"] == 900  # every line of every document
    assert metrics["corpus"]["tokens"] == 900 * 6
    assert json.loads((out / "config.json").read_text())["corpus"] == [str(corpus_parquet)]


def test_corpus_stats_counts_a_dataset_column(corpus_parquet, capsys):
    assert main(["corpus", "stats", str(corpus_parquet), "--text-col", "body", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["lines"], stats["tokens"]) == (900, 900 * 6)


def test_pretrain_reads_a_parquet_corpus_with_max_steps(corpus_parquet, tmp_path):
    out = tmp_path / "gpt"
    assert main(["pretrain", "--arch", "gpt2", "--corpus", str(corpus_parquet), "--text-col", "body", "--out",
                 str(out), "--block-size", "16", "--batch-size", "4", "--vocab-size", "300", "--max-steps", "2",
                 "--eval-every", "2", "--max-eval-blocks", "2", "--quiet", "--threads", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and sum(metrics["splits_tokens"].values()) >= 900 * 6
    assert json.loads((out / "nlpft_pretrain.json").read_text())["corpus"] == [str(corpus_parquet)]


@pytest.mark.parametrize("command", [["pretrain", "--arch", "gpt2"], ["lm", "train"]])
def test_streaming_without_max_steps_is_refused_before_anything_loads(command, tmp_path, monkeypatch, capsys):
    from nlpft.data import sources

    def no_loading(*args, **kwargs):
        raise AssertionError("a dataset was opened")

    monkeypatch.setattr(sources, "open_dataset", no_loading)
    out = tmp_path / "run"
    assert main([*command, "--corpus", "hf:tiny-org/tiny-corpus", "--streaming", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --streaming reads a corpus of unknown length, so it needs --max-steps N: how many steps to train "
        "(and so how much of the stream to read)")
    assert not out.exists() and not out.with_name("run.partial").exists()


def test_streaming_a_plain_text_corpus_is_refused(tmp_path, capsys):
    text = tmp_path / "a.txt"
    text.write_text("the cat sat\n" * 20)
    assert main(["embed", "train", "--corpus", str(text), "--streaming", "--out", str(tmp_path / "v")]) == 2
    assert "--streaming reads hf: sources and Parquet files, and --corpus names none" in capsys.readouterr().err


def test_a_streamed_corpus_is_read_once_up_to_what_training_needs(corpus_parquet, tmp_path, monkeypatch):
    from nlpft.data.corpus import DatasetLines
    from nlpft.data.registry import resolve_corpus

    corpus = resolve_corpus([str(corpus_parquet)], text_col="body", streaming=True)
    assert corpus.streamed
    corpus.validate()
    corpus.fetch_streams(tmp_path, max_words=100, min_lines=30)
    kept = (tmp_path / "stream-0.txt").read_text().splitlines()
    assert len(kept) == 30 and sum(len(line.split()) for line in kept) >= 100  # 6 words a line: lines decide

    def no_second_stream(self):
        raise AssertionError("the stream was read again")

    monkeypatch.setattr(DatasetLines, "_texts", no_second_stream)
    assert list(corpus) == kept and list(corpus) == kept  # every later pass reads the kept file


def test_lm_train_streams_only_what_max_steps_needs(tmp_path):
    corpus = write_parquet(tmp_path / "big.parquet", {"text": documents(2000)})  # 6,000 lines
    out = tmp_path / "lm"
    assert main(["lm", "train", "--corpus", str(corpus), "--streaming", "--max-steps", "2", "--out", str(out),
                 "--batch-size", "4", "--bptt", "10", "--hidden-dim", "16", "--embedding-dim", "16", "--layers", "1",
                 "--quiet", "--threads", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # 2 steps of 4 x 10 tokens want little: the 600 lines the split needs at least, 6 words and [EOS] each
    assert sum(metrics["splits"].values()) == 600 * 7
    assert not list(out.rglob("stream-*.txt"))  # the kept part of the stream goes with the run's data


def test_embed_train_streams_a_corpus_once(corpus_parquet, tmp_path):
    out = tmp_path / "vectors"
    assert main(["embed", "train", "--corpus", str(corpus_parquet), "--text-col", "body", "--streaming",
                 "--out", str(out), "--dim", "8", "--min-count", "1", "--epochs", "1", "--threads", "1",
                 "--quiet"]) == 0
    assert json.loads((out / "metrics.json").read_text())["corpus"]["lines"] == 900


def test_resume_accepts_the_same_hf_spec_and_refuses_another(tmp_path, monkeypatch, capsys):
    from nlpft.embeddings import word2vec
    from nlpft.errors import Interrupted

    first = hub_layout(tmp_path / "first", {"train": {"text": documents(200)}})
    second = hub_layout(tmp_path / "second", {"train": {"text": list(reversed(documents(200)))}})
    out = tmp_path / "vectors"
    args = ["embed", "train", "--out", str(out), "--dim", "8", "--min-count", "1", "--epochs", "3",
            "--threads", "1", "--quiet"]
    original = word2vec.save_checkpoint

    def save_then_stop(*a, **kw):
        original(*a, **kw)
        raise Interrupted("SIGTERM")

    with monkeypatch.context() as patch:
        patch.setattr(word2vec, "save_checkpoint", save_then_stop)
        assert main([*args, "--corpus", f"hf:{first}"]) != 0
    capsys.readouterr()
    assert main([*args, "--corpus", f"hf:{second}", "--resume"]) == 2
    assert f"--corpus differs from the checkpoint's (hf:{first} vs hf:{second})" in capsys.readouterr().err
    assert main([*args, "--corpus", f"hf:{first}", "--resume"]) == 0
    assert json.loads((out / "config.json").read_text())["corpus"] == [f"hf:{first}"]


def test_fingerprint_of_a_save_to_disk_directory_follows_its_data(tmp_path):
    from datasets import DatasetDict

    from nlpft.data.fingerprint import input_sha256

    folder = tmp_path / "splits"
    DatasetDict(train=dataset(reviews(4)), test=dataset(reviews(2))).save_to_disk(str(folder))
    before = input_sha256(str(folder))
    assert input_sha256(f"{folder}@test") not in (before, input_sha256(f"{folder}@train"))
    DatasetDict(train=dataset(reviews(4, offset=1)), test=dataset(reviews(2))).save_to_disk(str(folder))
    assert input_sha256(str(folder)) != before  # a split's data is in a folder below the top one


def test_document_ends_fall_after_each_file_and_each_dataset_row(tmp_path):
    """What `pretrain --objective mlm+nsp` reads: a NotNext segment must come from another
    document, so a dataset row is a document of its own, as a file is."""
    from nlpft.data.registry import resolve_corpus

    text = tmp_path / "a.txt"
    text.write_text("file one\nfile two\n", encoding="utf-8")
    rows = write_parquet(tmp_path / "rows.parquet", {"text": ["row a1\nrow a2", "row b1"]})
    marked = list(resolve_corpus([str(text), str(rows)]).lines_and_document_ends())
    assert marked == ["file one", "file two", None, "row a1", "row a2", None, "row b1", None], marked
