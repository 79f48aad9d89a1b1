"""--long-text windows: texts longer than --max-length read in overlapping windows, trained on
with their text's label and pooled into one prediction per text. A tiny random BERT with
--max-length 16 makes every text of the data here span several windows; the label signal
(sentiment words) is spread over the whole text, so a few epochs learn it."""

from __future__ import annotations

import csv
import itertools
import json
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nlpft.cli.main import main
from tests.conftest import save_tiny_bert

POSITIVE = ["good", "great", "excellent", "lovely", "wonderful"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "dreadful"]
FILLER = ["the", "film", "meal", "hotel", "book", "concert", "phone", "game", "was", "and", "today", "again",
          "very", "quite", "really", "staff", "room", "price", "story", "music", "screen", "battery", "plot",
          "service", "night", "morning", "city", "river", "garden", "window", "table", "chair", "door", "car"]
MAX_LENGTH = 16
STRIDE = 4
# --method standard: small data on an encoder would otherwise be read frozen (--method auto)
WINDOWED = ["--method", "standard", "--max-length", str(MAX_LENGTH), "--stride", str(STRIDE), "--epochs", "4", "--lr", "3e-3",
            "--batch-size", "16", "--threads", "1", "--quiet", "--warmup", "0", "--precision", "fp32",
            "--valid-fraction", "0.1", "--test-fraction", "0.1"]


def long_rows(n: int, seed: int, words: tuple[int, int] = (30, 60)) -> list[dict]:
    """Texts of random filler words with a sentiment word every few words (the label's),
    so any window of a text carries its label."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label, sentiment = [("pos", POSITIVE), ("neg", NEGATIVE)][i % 2]
        text = [rng.choice(sentiment) if k % 5 == 0 else rng.choice(FILLER) for k in range(rng.randint(*words))]
        rows.append({"text": " ".join(text), "label": label})
    return rows


def write_csv(path: Path, rows: list[dict], fields=("text", "label")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def tokenizer():
    from nlpft.tokenization.subword import train_subword_tokenizer

    lines = [row["text"] for row in long_rows(200, 1)]
    return train_subword_tokenizer(lines, "wordpiece", 200, model_max_length=64)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, tokenizer) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert", tokenizer, hidden_size=32, layers=1,
                          heads=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("long")
    return {"train": write_csv(folder / "train.csv", long_rows(120, 2)),
            "valid": write_csv(folder / "valid.csv", long_rows(20, 3)),
            "test": write_csv(folder / "test.csv", long_rows(20, 4))}


@pytest.fixture(scope="module")
def windowed_run(tmp_path_factory, data, tiny_bert) -> Path:
    out = tmp_path_factory.mktemp("runs") / "windows"
    assert main(["finetune", "--train", str(data["train"]), "--valid", str(data["valid"]), "--test",
                 str(data["test"]), "--model", str(tiny_bert), "--out", str(out), "--long-text", "windows",
                 "--max-windows", "4", *WINDOWED]) == 0
    return out


def content(tokenizer, ids: list[int]) -> list[int]:
    special = set(tokenizer.all_special_ids)
    return [i for i in ids if i not in special]


# -- windows -----------------------------------------------------------------------------------
def test_windows_cover_every_token_and_overlap_by_stride(tokenizer):
    from nlpft.finetune.data import encode_windows

    texts = [row["text"] for row in long_rows(5, 9)] + ["short"]
    encoded = encode_windows(tokenizer, texts, None, MAX_LENGTH, STRIDE)
    assert encoded.truncated == 0 and encoded.windows_made[-1] == 1
    for text_index, text in enumerate(texts):
        tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
        windows = [ids for ids, doc in zip(encoded.input_ids, encoded.documents, strict=True) if doc == text_index]
        assert all(len(ids) <= MAX_LENGTH for ids in windows)
        assert all(ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id for ids in windows)
        parts = [content(tokenizer, ids) for ids in windows]
        rebuilt = parts[0] + [t for part in parts[1:] for t in part[STRIDE:]]
        assert rebuilt == tokens  # every token read, in order, none twice but the overlaps
        for before, after in itertools.pairwise(parts):
            assert after[:STRIDE] == before[-STRIDE:]  # consecutive windows share `stride` tokens
        assert len(windows) == encoded.windows_made[text_index] > (1 if text != "short" else 0)


def test_training_cap_keeps_evenly_spaced_windows_first_and_last(tokenizer):
    from nlpft.finetune.data import encode_windows, spaced_windows, window_counts

    assert spaced_windows(list(range(10)), 4) == [0, 3, 6, 9]
    assert spaced_windows(list(range(3)), 8) == [0, 1, 2]
    assert spaced_windows(list(range(5)), 1) == [0]
    text = " ".join(long_rows(1, 5, words=(80, 80))[0]["text"].split())
    every = encode_windows(tokenizer, [text], None, MAX_LENGTH, STRIDE)
    capped = encode_windows(tokenizer, [text], None, MAX_LENGTH, STRIDE, max_windows=3)
    assert every.windows_made[0] > 3 and capped.windows_made == every.windows_made and capped.windows_kept == [3]
    last = len(every.input_ids) - 1
    assert capped.input_ids == [every.input_ids[0], every.input_ids[round(last / 2)], every.input_ids[last]]
    counts = window_counts(capped)
    assert counts["texts_capped"] == 1 and counts["windows_left_out"] == every.windows_made[0] - 3


def test_pair_windows_run_over_the_second_text_and_repeat_the_first(tokenizer):
    from nlpft.finetune.data import encode_windows

    question = "was the film good"
    passage = long_rows(1, 6)[0]["text"]
    encoded = encode_windows(tokenizer, [question], [passage], MAX_LENGTH, STRIDE)
    first = tokenizer(question, add_special_tokens=False)["input_ids"]
    second = tokenizer(passage, add_special_tokens=False)["input_ids"]
    assert len(encoded.input_ids) > 1 and encoded.truncated == 0
    parts = []
    for ids, types in zip(encoded.input_ids, encoded.token_type_ids, strict=True):
        assert len(ids) <= MAX_LENGTH
        assert content(tokenizer, [i for i, t in zip(ids, types, strict=True) if t == 0]) == first
        parts.append(content(tokenizer, [i for i, t in zip(ids, types, strict=True) if t == 1]))
    assert parts[0] + [t for part in parts[1:] for t in part[STRIDE:]] == second
    # a first text that would leave the second no room is cut, and counted as cut
    long_question = " ".join(["film"] * 40)
    encoded = encode_windows(tokenizer, [long_question], [passage], MAX_LENGTH, STRIDE)
    assert encoded.truncated == 1 and all(len(ids) <= MAX_LENGTH for ids in encoded.input_ids)
    parts = [[i for i, t in zip(ids, types, strict=True) if t == 1][:-1]
             for ids, types in zip(encoded.input_ids, encoded.token_type_ids, strict=True)]
    assert parts[0] + [t for part in parts[1:] for t in part[STRIDE:]] == second


def test_pooling_gives_one_row_per_text():
    from nlpft.finetune.data import first_windows, pool_windows

    logits = np.array([[1.0, 0.0], [3.0, -2.0], [0.0, 5.0], [2.0, 2.0]])
    documents = [0, 0, 1, 1]
    assert pool_windows(logits, documents, 2, "mean").tolist() == [[2.0, -1.0], [1.0, 3.5]]
    assert pool_windows(logits, documents, 2, "max").tolist() == [[3.0, 0.0], [2.0, 5.0]]
    assert first_windows([0, 0, 1, 2, 2], 3) == [0, 2, 3]


def test_validation_metrics_are_per_text(tokenizer):
    from nlpft.finetune.data import Encoded, EncodedDataset
    from nlpft.finetune.tasks.single import SingleLabelTask

    task = SingleLabelTask({"text_col": "text", "label_col": "label"}, long_text={"mode": "windows", "stride": 4})
    # text 0 (label 0): two windows lean to 0, one to 1; text 1 (label 1): one window, to 1
    encoded = Encoded([[1], [1], [1], [1]], None, 0, documents=[0, 0, 0, 1], windows_made=[3, 1],
                      windows_kept=[3, 1])
    logits, labels = task.per_document(np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]]),
                                       np.array([0, 0, 0, 1]), EncodedDataset(encoded))
    assert labels.tolist() == [0, 1] and logits.argmax(axis=1).tolist() == [0, 1]


# -- the auto rule -------------------------------------------------------------------------------
def test_auto_reads_in_windows_when_more_than_a_tenth_of_training_texts_are_too_long(tokenizer):
    from nlpft.data.labeled import LabeledExample
    from nlpft.finetune.tasks.single import SingleLabelTask
    from nlpft.pretrained.tokenizer import HFTokenizer

    encoder = SimpleNamespace(tokenizer=HFTokenizer(tokenizer), max_length=MAX_LENGTH, prefix_ids=(), suffix_ids=())
    short = [LabeledExample(text="the film was good", label="pos", row=i) for i in range(18)]
    long = [LabeledExample(text=long_rows(1, 7)[0]["text"], label="pos", row=i) for i in range(3)]

    def decide(rows):
        task = SingleLabelTask({"text_col": "text", "label_col": "label"},
                               long_text={"mode": "auto", "stride": None, "pooling": "mean", "max_windows": 8})
        return task, task.plan_encoding(encoder, rows)

    task, line = decide(short[:18] + long[:2])  # 2 of 20: exactly 10%, not more
    assert task.long_text["mode"] == "truncate"
    assert line == "long texts: 2 of 20 training texts exceed 16 tokens -> truncate (auto: windows when more than 10%)"
    task, line = decide(short[:17] + long[:3])  # 3 of 20
    assert task.long_text == {"mode": "windows", "stride": MAX_LENGTH // 4, "pooling": "mean",
                                         "max_windows": 8}
    assert "3 of 20 training texts exceed 16 tokens -> windows" in line


def test_word_level_backbones_ignore_long_text():
    from nlpft.finetune.tasks.single import SingleLabelTask

    task = SingleLabelTask({"text_col": "text", "label_col": "label"}, long_text={"mode": "windows", "stride": 4})
    words = SimpleNamespace(tokenizer=object(), max_length=MAX_LENGTH)
    assert "applies to transformers" in task.plan_encoding(words, [])
    assert task.long_text["mode"] == "truncate"


# -- end to end ----------------------------------------------------------------------------------
def test_windowed_run_reports_windows_and_scores_per_text(windowed_run, data):
    metrics = json.loads((windowed_run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.85, metrics["test"]
    assert metrics["test_examples"] == 20 and metrics["truncated"] == {"train": 0, "valid": 0, "test": 0}
    splits = metrics["long_text"]["splits"]
    assert metrics["long_text"]["mode"] == "windows" and metrics["long_text"]["stride"] == STRIDE
    assert splits["test"]["texts"] == 20 and splits["test"]["texts_split"] == 20
    assert splits["test"]["windows"] > 40 and splits["train"]["max_windows"] == 4
    assert splits["train"]["texts_capped"] > 0 and splits["test"]["texts_capped"] == 0  # the cap is for training
    assert "long texts:" in (windowed_run / "report.md").read_text()
    predictions = read_csv(windowed_run / "predictions.csv")
    assert [r["text"] for r in predictions] == [r["text"] for r in read_csv(data["test"])]  # one row per text
    meta = json.loads((windowed_run / "finetune.json").read_text())
    assert meta["task"]["long_text"] == {"mode": "windows", "stride": STRIDE, "pooling": "mean", "max_windows": 4}


def test_predict_reads_windows_as_training_did(windowed_run, data, tmp_path, capsys):
    out = tmp_path / "again.csv"
    assert main(["predict", "--model", str(windowed_run), "--input", str(data["test"]), "--out", str(out)]) == 0
    predicted, written = read_csv(out), read_csv(windowed_run / "predictions.csv")
    assert len(predicted) == 20 and [r["predicted"] for r in predicted] == [r["predicted"] for r in written]
    assert max(abs(float(a[k]) - float(b[k])) for a, b in zip(predicted, written, strict=True)
               for k in ("p_pos", "p_neg")) <= 1e-5
    assert main(["evaluate", "--model", str(windowed_run), "--input", str(data["test"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert sum(map(sum, result["confusion_matrix"])) == 20  # per text, not per window
    assert result["accuracy"] == json.loads((windowed_run / "metrics.json").read_text())["test"]["accuracy"]
    assert main(["predict", "--model", str(windowed_run), "--text", long_rows(1, 8)[0]["text"]]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "pos"


def test_windows_never_leak_across_splits(data, tiny_bert, tmp_path, monkeypatch, tokenizer):
    """Every window trained on comes from a training text, never from a validation or test
    one (the split is over texts, made before windowing); texts of random words make a
    window's text identify the one text it comes from."""
    import nlpft.finetune.data as data_module

    datasets = []
    original = data_module.EncodedDataset.__init__

    def remember(self, encoded, labels=None):
        original(self, encoded, labels)
        datasets.append(self)

    monkeypatch.setattr(data_module.EncodedDataset, "__init__", remember)
    out = tmp_path / "split"
    assert main(["finetune", "--train", str(data["train"]), "--model", str(tiny_bert), "--out", str(out),
                 "--long-text", "windows", *WINDOWED, "--max-steps", "1"]) == 0
    train, valid, test = datasets[:3]
    every_text = {r["text"] for r in read_csv(data["train"])}
    test_texts = {r["text"] for r in read_csv(out / "predictions.csv")}

    def sources(window: list[int]) -> set[str]:
        """The texts that hold this window's words."""
        words = tokenizer.decode(content(tokenizer, window)).replace("##", "")
        return {text for text in every_text if words in text}

    train_sources = set().union(*(sources(ids) for ids in train.encoded.input_ids))
    valid_sources = set().union(*(sources(ids) for ids in valid.encoded.input_ids))
    assert train_sources and not train_sources & test_texts and not train_sources & valid_sources
    assert {t for ids in test.encoded.input_ids for t in sources(ids)} == test_texts
    assert len(test.encoded.windows_made) == len(test_texts) == 12


def test_stride_must_leave_room_for_new_tokens(data, tiny_bert, tmp_path, capsys):
    assert main(["finetune", "--train", str(data["train"]), "--model", str(tiny_bert), "--out", str(tmp_path / "x"),
                 "--long-text", "windows", *WINDOWED, "--stride", "14"]) == 2
    assert "--stride 14 leaves a window no new tokens" in capsys.readouterr().err


def test_pairs_and_decoders_read_windows_end_to_end(tmp_path, tiny_bert, capsys):
    """Windows over the second text of a pair (the first repeated), and over a GPT-style
    decoder's input: trained, then predicted with one row per input row."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from nlpft.tokenization.subword import train_subword_tokenizer

    rows = [{"question": "was it good", "text": r["text"], "label": r["label"]} for r in long_rows(40, 10)]
    pairs = write_csv(tmp_path / "pairs.csv", rows, fields=("question", "text", "label"))
    out = tmp_path / "pairs"
    assert main(["finetune", "--train", str(pairs), "--text-col", "question", "--text-pair-col", "text",
                 "--model", str(tiny_bert), "--out", str(out), *WINDOWED, "--max-steps", "2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["long_text"]["mode"] == "windows"  # auto: every text is longer than 16 tokens
    assert metrics["long_text"]["splits"]["test"]["windows"] > metrics["test_examples"] == 4
    predictions = tmp_path / "pairs-predicted.csv"
    assert main(["predict", "--model", str(out), "--input", str(pairs), "--out", str(predictions)]) == 0
    assert len(read_csv(predictions)) == 40

    lines = [row["text"] for row in long_rows(200, 1)]
    tokenizer = train_subword_tokenizer(lines, "byte-bpe", 300, model_max_length=64)
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    gpt = tmp_path / "tiny-gpt"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                               bos_token_id=eos, eos_token_id=eos)).save_pretrained(gpt)
    tokenizer.save_pretrained(gpt)
    data = write_csv(tmp_path / "single.csv", long_rows(40, 11))
    out = tmp_path / "gpt"
    assert main(["finetune", "--train", str(data), "--model", str(gpt), "--out", str(out), "--long-text", "windows",
                 *WINDOWED, "--max-steps", "2"]) == 0
    assert json.loads((out / "metrics.json").read_text())["long_text"]["splits"]["train"]["texts_split"] == 32
    predictions = tmp_path / "gpt-predicted.csv"
    assert main(["predict", "--model", str(out), "--input", str(data), "--out", str(predictions)]) == 0
    assert len(read_csv(predictions)) == 40


def test_stride_default_is_the_tasks_own():
    from nlpft.finetune.options import FinetuneOptions
    from nlpft.finetune.tasks import task_class

    def task(name: str, **options):
        return task_class(name).from_options(FinetuneOptions(train="x.csv", out="out", task=name, **options))

    assert task("tag").stride == 16 and task("tag", stride=3).stride == 3  # words
    assert task("single").long_text["stride"] is None  # tokens: a quarter of --max-length, once it is known
    assert task("single", stride=3).long_text["stride"] == 3


def test_a_huge_text_is_cut_at_a_bounded_number_of_windows(tokenizer, monkeypatch):
    """One enormous cell cannot become millions of windows: past MAX_TEXT_WINDOWS windows'
    worth of characters the text is cut (and counted as truncated), for plain texts and for
    the second text of a pair."""
    import nlpft.finetune.data as data_module
    from nlpft.finetune.data import CHARS_PER_TOKEN, encode_windows

    monkeypatch.setattr(data_module, "MAX_TEXT_WINDOWS", 3)
    room = MAX_LENGTH - tokenizer.num_special_tokens_to_add(pair=False)
    limit = 3 * (room - STRIDE) * CHARS_PER_TOKEN
    huge = " ".join(row["text"] for row in long_rows(400, 5))
    assert len(huge) > 10 * limit
    encoded = encode_windows(tokenizer, [huge], None, MAX_LENGTH, STRIDE)
    at_limit = encode_windows(tokenizer, [huge[:limit]], None, MAX_LENGTH, STRIDE)
    assert encoded.truncated == 1 and encoded.input_ids == at_limit.input_ids
    uncut = encode_windows(tokenizer, [huge[: limit // 2]], None, MAX_LENGTH, STRIDE)
    assert uncut.truncated == 0
    pair_room = MAX_LENGTH - tokenizer.num_special_tokens_to_add(pair=True)
    pair_limit = 3 * (pair_room - STRIDE) * CHARS_PER_TOKEN
    pairs = encode_windows(tokenizer, ["a question"], [huge], MAX_LENGTH, STRIDE)
    pairs_at_limit = encode_windows(tokenizer, ["a question"], [huge[:pair_limit]], MAX_LENGTH, STRIDE)
    assert pairs.truncated == 1 and pairs.input_ids == pairs_at_limit.input_ids


# -- --method frozen and contrastive -------------------------------------------------------------
#: the same opening for every text, longer than one window: read truncated, every text looks alike
SHARED_OPENING = " ".join(FILLER[:20])
SMALL_DATA = ["--max-length", str(MAX_LENGTH), "--stride", str(STRIDE), "--threads", "1", "--quiet",
              "--precision", "fp32"]


def late_cue_rows(n: int, seed: int) -> list[dict]:
    """Texts whose label shows only after the first --max-length tokens: a shared opening,
    then filler with the label's sentiment words every other word."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label, sentiment = [("pos", POSITIVE), ("neg", NEGATIVE)][i % 2]
        cue = [rng.choice(sentiment) if k % 2 == 0 else rng.choice(FILLER) for k in range(30)]
        rows.append({"text": f"{SHARED_OPENING} {' '.join(cue)}", "label": label})
    return rows


@pytest.fixture(scope="module")
def late_cue_data(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("late-cue")
    return {"train": write_csv(folder / "train.csv", late_cue_rows(60, 12)),
            "valid": write_csv(folder / "valid.csv", late_cue_rows(20, 13)),
            "test": write_csv(folder / "test.csv", late_cue_rows(20, 14))}


def small_data_run(data: dict, model: Path, out: Path, method: str, long_text: str, *extra: str) -> dict:
    assert main(["finetune", "--train", str(data["train"]), "--valid", str(data["valid"]), "--test",
                 str(data["test"]), "--model", str(model), "--method", method, "--long-text", long_text,
                 "--out", str(out), *SMALL_DATA, *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def frozen_windows_run(tmp_path_factory, late_cue_data, tiny_bert) -> Path:
    out = tmp_path_factory.mktemp("runs") / "frozen-windows"
    small_data_run(late_cue_data, tiny_bert, out, "frozen", "windows")
    return out


def test_frozen_reads_a_cue_after_the_first_window_only_with_windows(frozen_windows_run, late_cue_data, tiny_bert,
                                                                     tmp_path):
    windowed = json.loads((frozen_windows_run / "metrics.json").read_text())
    truncated = small_data_run(late_cue_data, tiny_bert, tmp_path / "truncate", "frozen", "truncate")
    assert windowed["test"]["accuracy"] >= 0.9, windowed["test"]
    assert truncated["test"]["accuracy"] <= 0.6, truncated["test"]  # every opening alike: chance
    splits = windowed["long_text"]["splits"]
    assert splits["test"]["texts"] == 20 and splits["test"]["texts_split"] == 20 and splits["test"]["windows"] > 40
    assert windowed["truncated"] == {"train": 0, "valid": 0, "test": 0}
    assert "long texts: windows" in (frozen_windows_run / "report.md").read_text()
    meta = json.loads((frozen_windows_run / "finetune.json").read_text())
    assert meta["task"]["long_text"] == {"mode": "windows", "stride": STRIDE, "pooling": "mean", "max_windows": 8}
    assert "long_text" not in truncated and \
        json.loads((tmp_path / "truncate" / "finetune.json").read_text())["task"]["long_text"]["mode"] == "truncate"


def test_a_frozen_text_is_the_renormalised_mean_of_its_windows(frozen_windows_run, late_cue_data):
    """The features of a windowed text: its windows' unit vectors averaged, back to unit length."""
    from nlpft.finetune.data import encode_windows
    from nlpft.finetune.frozen import FrozenEncoderClassifier

    model = FrozenEncoderClassifier.load(frozen_windows_run, max_length=MAX_LENGTH)
    text = read_csv(late_cue_data["test"])[0]["text"]
    encoded = encode_windows(model.encoder.tokenizer.hf, [text], None, MAX_LENGTH, STRIDE)
    windows = model.encoder.encode_ids(encoded.input_ids, pooling="mean", normalize=True)
    mean = windows.mean(axis=0)
    assert len(windows) > 2
    np.testing.assert_allclose(model.document_features(encoded)[0], mean / np.linalg.norm(mean), atol=1e-6)


def test_frozen_windows_predict_evaluate_and_load_as_trained(frozen_windows_run, late_cue_data, tmp_path, capsys):
    import nlpft

    out = tmp_path / "again.csv"
    assert main(["predict", "--model", str(frozen_windows_run), "--input", str(late_cue_data["test"]),
                 "--out", str(out)]) == 0
    predicted, written = read_csv(out), read_csv(frozen_windows_run / "predictions.csv")
    assert [r["predicted"] for r in predicted] == [r["predicted"] for r in written]
    assert max(abs(float(a[k]) - float(b[k])) for a, b in zip(predicted, written, strict=True)
               for k in ("p_pos", "p_neg")) <= 1e-5
    assert main(["evaluate", "--model", str(frozen_windows_run), "--input", str(late_cue_data["test"]),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == json.loads((frozen_windows_run / "metrics.json").read_text())["test"]["accuracy"]
    assert result["accuracy"] >= 0.9  # read in windows: the cue after the opening counts
    assert sum(map(sum, result["confusion_matrix"])) == 20  # per text, not per window
    texts = [r["text"] for r in written]
    api = nlpft.load(frozen_windows_run).predict(texts)
    assert [p.label for p in api] == [r["predicted"] for r in written]


@pytest.mark.parametrize("older", ["no task.long_text", "head fitted on cut texts"])
def test_older_frozen_models_keep_truncating(frozen_windows_run, late_cue_data, tmp_path, older):
    """Models saved before frozen read windows were fitted on texts cut at --max-length: those
    whose finetune.json has no task.long_text, and those whose head JSON does not say windows
    (a run given --long-text windows then saved that setting, yet cut its texts). They read
    the first --max-length tokens, as they were trained (here every test text then looks alike)."""
    import shutil

    old = tmp_path / "old-format"
    shutil.copytree(frozen_windows_run, old)
    name, field = ("finetune.json", "task") if older == "no task.long_text" else ("frozen_head.json", None)
    saved = json.loads((old / name).read_text())
    if field:
        del saved[field]["long_text"]
    else:
        assert saved.pop("windows")
    (old / name).write_text(json.dumps(saved), encoding="utf-8")
    out = tmp_path / "old.csv"
    assert main(["predict", "--model", str(old), "--input", str(late_cue_data["test"]), "--out", str(out)]) == 0
    assert len({r["p_pos"] for r in read_csv(out)}) == 1  # the same opening, the same features


def test_contrastive_tunes_on_windows_and_predicts_as_trained(late_cue_data, tiny_bert, tmp_path):
    out = tmp_path / "contrastive"
    metrics = small_data_run(late_cue_data, tiny_bert, out, "contrastive", "windows", "--lr", "1e-3")
    assert metrics["test"]["accuracy"] >= 0.9, metrics["test"]
    assert metrics["long_text"]["splits"]["train"]["texts_split"] == 60 and metrics["steps"] > 0
    again = tmp_path / "again.csv"
    assert main(["predict", "--model", str(out), "--input", str(late_cue_data["test"]), "--out", str(again)]) == 0
    written = read_csv(out / "predictions.csv")
    assert max(abs(float(a[k]) - float(b[k])) for a, b in zip(read_csv(again), written, strict=True)
               for k in ("p_pos", "p_neg")) <= 1e-5


def test_contrastive_pairs_read_drawn_windows_of_each_row(tiny_bert):
    """With windows, each side of a pair is one of its row's windows, drawn with the seed:
    over the steps every window of a row is read, and nothing else is."""
    import torch

    from nlpft.finetune import contrastive
    from nlpft.pretrained.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(str(tiny_bert))
    cls, sep = tokenizer.hf.cls_token_id, tokenizer.hf.sep_token_id
    windows = [[[cls, 10 + row * 3 + k, sep] for k in range(3)] for row in range(8)]  # 3 windows a row
    read: set[int] = set()
    original = contrastive._padded

    def remember(sequences, pad_id, device):
        read.update(seq[1] for seq in sequences)
        return original(sequences, pad_id, device)

    texts = [f"row {row}" for row in range(8)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(contrastive, "_padded", remember)
        contrastive.tune_encoder(load_model(str(tiny_bert), head="base", quiet=True), tokenizer, texts,
                                 [("a",), ("b",)] * 4, batch_size=4, max_pairs=64, progress=False, windows=windows)
    assert read == {ids[1] for row in windows for ids in row}
    with pytest.raises(ValueError, match="rows of windows"):
        contrastive.tune_encoder(torch.nn.Linear(1, 1), tokenizer, texts, [("a",), ("b",)] * 4, windows=windows[:2])


def test_small_data_methods_refuse_windows_for_pairs_and_max_pooling(late_cue_data, tiny_bert, tmp_path, capsys):
    rows = [{"question": "was it good", "text": r["text"], "label": r["label"]} for r in late_cue_rows(40, 15)]
    pairs = write_csv(tmp_path / "pairs.csv", rows, fields=("question", "text", "label"))
    common = ["--model", str(tiny_bert), "--method", "frozen", *SMALL_DATA]
    assert main(["finetune", "--train", str(pairs), "--text-col", "question", "--text-pair-col", "text",
                 "--long-text", "windows", "--out", str(tmp_path / "pairs"), *common]) == 2
    assert "windows are for single texts" in capsys.readouterr().err
    assert not (tmp_path / "pairs").exists()
    assert main(["finetune", "--train", str(late_cue_data["train"]), "--long-text", "windows", "--window-pooling",
                 "max", "--out", str(tmp_path / "max"), *common]) == 2
    assert "--window-pooling max and --method frozen" in capsys.readouterr().err
    # auto on pairs reads them truncated, and says so
    assert main(["finetune", "--train", str(pairs), "--text-col", "question", "--text-pair-col", "text",
                 "--out", str(tmp_path / "auto"), *[a for a in common if a != "--quiet"]]) == 0
    assert "each text of a pair is read up to 16 tokens" in capsys.readouterr().err
    assert json.loads((tmp_path / "auto" / "finetune.json").read_text())["task"]["long_text"]["mode"] == "truncate"
