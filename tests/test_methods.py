"""`nlpft finetune --method`: the frozen encoder + linear head, the auto rule, the
examples each method needs, and the bootstrap intervals of small test sets."""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from nlpft.cli.main import main
from tests.conftest import save_tiny_bert
from tests.test_finetune import make_rows, write_csv

QUICK = ["--max-length", "32", "--threads", "1", "--valid-fraction", "0.1", "--test-fraction", "0.1"]


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "reviews.csv", make_rows(300, 0))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    from nlpft.tokenization.subword import train_subword_tokenizer

    tok = train_subword_tokenizer([row["text"] for row in make_rows(300, 1)], "wordpiece", 200, model_max_length=64)
    return save_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert", tok)


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory, data_csv, tiny_bert) -> tuple[Path, str]:
    """A --method frozen run on 300 rows (240 train, 30 test) and what it printed."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("runs") / "frozen"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["finetune", "--train", str(data_csv), "--model", str(tiny_bert), "--method", "frozen",
                     "--out", str(out), *QUICK])
    assert code == 0, err.getvalue()[-3000:]
    return out, err.getvalue()


def read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_frozen_method_trains_a_linear_head_and_reports_intervals(frozen_run):
    out, printed = frozen_run
    metrics = json.loads((out / "metrics.json").read_text())
    meta = json.loads((out / "finetune.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.8, metrics["test"]  # a random encoder's mean still carries the words
    assert (metrics["method"], metrics["backbone"]) == ("frozen", "frozen-encoder")
    assert (meta["method"], meta["backbone"], meta["method_reason"]) == ("frozen", "frozen-encoder", "--method frozen")
    assert "method frozen (--method frozen)" in printed
    intervals = metrics["test"]["confidence_intervals"]
    assert intervals["rows"] == 30 and intervals["resamples"] == 1000 and intervals["level"] == 0.95
    for name in ("accuracy", "macro_f1"):
        low, high = intervals[name]
        assert 0 <= low <= metrics["test"][name] <= high <= 1 and high - low > 0.05, (name, intervals)
    low, high = intervals["accuracy"]
    assert f"accuracy {metrics['test']['accuracy']:.4f} (95% CI {low:.2f}–{high:.2f}, 30 rows)" in printed
    assert "(95% CI" in (out / "report.md").read_text() and "- method: frozen (--method frozen)" in \
        (out / "report.md").read_text()


def test_frozen_output_is_a_stock_encoder_plus_a_pickle_free_head(frozen_run):
    from safetensors.numpy import load_file
    from transformers import AutoModel

    out, _ = frozen_run
    assert not [p for p in out.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".joblib"}]
    assert type(AutoModel.from_pretrained(out)).__name__ == "BertModel"
    head = load_file(str(out / "frozen_head.safetensors"))
    assert head["coef"].shape == (3, 64) and head["intercept"].shape == (3,)
    assert json.loads((out / "frozen_head.json").read_text())["features"] == 64


def test_frozen_output_predicts_and_evaluates_as_trained(frozen_run, tmp_path, capsys):
    out, _ = frozen_run
    trained = read_csv(out / "predictions.csv")
    source = write_csv(tmp_path / "test-again.csv", trained)
    again = tmp_path / "again.csv"
    assert main(["predict", "--model", str(out), "--input", str(source), "--out", str(again)]) == 0
    predicted = read_csv(again)
    probabilities = [k for k in trained[0] if k.startswith("p_")]
    assert len(probabilities) == 3 and [r["predicted"] for r in predicted] == [r["predicted"] for r in trained]
    assert max(abs(float(a[k]) - float(b[k])) for a, b in zip(predicted, trained, strict=True)
               for k in probabilities) <= 1e-5
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "--text", "the game was awful and dreadful again"]) == 0
    assert capsys.readouterr().out.splitlines()[0] in {"pos", "neg", "neutral"}
    labeled = write_csv(tmp_path / "labeled.csv", make_rows(60, 6))
    assert main(["evaluate", "--model", str(out), "--input", str(labeled), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] >= 0.8 and result["confidence_intervals"]["rows"] == 60


def test_frozen_pairs_read_both_texts_as_u_v_and_their_distance(tiny_bert, tmp_path, capsys):
    first, second = make_rows(120, 11), make_rows(120, 12)
    rows = [{"text": a["text"], "second": b["text"], "label": b["label"]} for a, b in zip(first, second, strict=True)]
    data = write_csv(tmp_path / "pairs.csv", rows, fields=("text", "second", "label"))
    out = tmp_path / "pairs"
    assert main(["finetune", "--train", str(data), "--text-pair-col", "second", "--model", str(tiny_bert),
                 "--method", "frozen", "--out", str(out), "--quiet", *QUICK]) == 0
    assert json.loads((out / "frozen_head.json").read_text())["features"] == 3 * 64
    assert main(["predict", "--model", str(out), "--text", "the film was lovely"]) == 2
    assert "--text-pair" in capsys.readouterr().err
    assert main(["predict", "--model", str(out), "--text", "the film was lovely",
                 "--text-pair", "the meal was awful and dreadful"]) == 0


def test_auto_picks_contrastive_on_small_data_and_says_why(data_csv, tiny_bert, tmp_path, capsys):
    out = tmp_path / "auto"
    assert main(["finetune", "--train", str(data_csv), "--model", str(tiny_bert), "--out", str(out), *QUICK]) == 0
    printed = capsys.readouterr().err
    reason = "auto: 80 training examples in the smallest class ('neg'), fewer than 100"
    assert f"method contrastive ({reason}" in printed
    for name in ("metrics.json", "finetune.json"):
        saved = json.loads((out / name).read_text())
        assert saved["method"] == "contrastive" and saved["method_reason"].startswith(reason), name
    assert json.loads((out / "finetune.json").read_text())["options"]["method"] == "contrastive"


def _rows(counts: dict[str, int]) -> list:
    from nlpft.data.labeled import LabeledExample

    return [LabeledExample(text=f"text {i}", label=label, row=i)
            for i, label in enumerate(label for label, n in counts.items() for _ in range(n))]


@pytest.mark.parametrize("model, counts, task, pair_col, expected", [
    ("bert", {"a": 99, "b": 500}, "single", None,
     ("contrastive", "99 training examples in the smallest class ('a'), fewer")),
    ("bert", {"a": 5, "b": 5}, "multi", None, ("contrastive", "5 training examples")),
    ("bert", {"a": 99, "b": 500}, "single", "second",
     ("frozen", "fewer than 100; not contrastive, which needs a BERT-style Hugging Face encoder (such as minilm), --task single "
                "or multi, and single texts")),
    ("bert", {"a": 100, "b": 500}, "single", None,
     ("standard", "100 training examples in the smallest class ('a'), 100 or")),
    ("tfidf", {"a": 5, "b": 5}, "single", None, ("standard", "need a BERT-style encoder, and --model tfidf is tfidf")),
    ("bert", {}, "regression", None, ("standard", "--task regression has no classes to count")),
])
def test_auto_rule(tiny_bert, model, counts, task, pair_col, expected):
    from nlpft.data.labeled import build_label_map
    from nlpft.finetune.backbones import detect_backbone
    from nlpft.finetune.methods import choose_method
    from nlpft.finetune import plugin_options
    from nlpft.finetune.options import FinetuneOptions
    from nlpft.finetune.tasks import task_class

    spec = str(tiny_bert) if model == "bert" else model
    backbone = detect_backbone(spec)
    opts = FinetuneOptions(  # resolved as `finetune` resolves them: each plug-in's options at their defaults
        train="unused.csv", out="unused", task=task, method="auto", model=spec, text_pair_col=pair_col,
        task_options=plugin_options.resolve(plugin_options.TASK, task_class(task), None, selected=task),
        backbone_options=plugin_options.resolve(plugin_options.BACKBONE, type(backbone), None, selected=spec))
    the_task = task_class(task).from_options(opts)
    rows = _rows(counts)
    if task != "regression":
        the_task.label_map = build_label_map(rows)
    choice = choose_method(opts, backbone, the_task, rows)
    assert choice.method.name == expected[0] and expected[1] in choice.reason, choice.reason


def test_too_few_examples_name_the_class_and_count_before_any_model_loads(tiny_bert, tmp_path, capsys,
                                                                             monkeypatch):
    from nlpft.pretrained import loading

    def no_loading(*_, **__):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(loading, "load_model", no_loading)
    rows = make_rows(90, 0) + [{"text": "the film was strange and odd", "label": "mixed"}]
    data = write_csv(tmp_path / "rare.csv", rows)
    out = tmp_path / "out"
    assert main(["finetune", "--train", str(data), "--model", str(tiny_bert), "--out", str(out), *QUICK]) == 2
    err = capsys.readouterr().err
    assert "--method contrastive needs at least 2 training examples per class" in err and "'mixed' has 1" in err, err
    assert not out.exists() and not out.with_name("out.partial").exists()


def test_frozen_needs_an_encoder(data_csv, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["finetune", "--train", str(data_csv), "--model", "tfidf", "--method", "frozen",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--method frozen needs a BERT-style Hugging Face encoder" in err and "--model tfidf" in err, err
    assert not out.exists() and not out.with_name("out.partial").exists()


def test_help_lists_the_methods_and_the_auto_rule(capsys):
    from nlpft.finetune.methods import AUTO_RULE

    assert main(["finetune", "--help"]) == 0
    printed = "".join(capsys.readouterr().out.split())  # without the line breaks of wrapping
    assert "--method{standard,frozen,contrastive,auto}" in printed
    assert "".join(AUTO_RULE.split()) in printed and "fewerthan100trainingexamples" in printed


# -- bootstrap intervals ---------------------------------------------------------------------
def _intervals(gold, decided, seed=1, labels=2):
    from nlpft.finetune.metrics import (
        accuracy_per_draw,
        bootstrap_intervals,
        macro_f1_per_draw,
    )

    return bootstrap_intervals(np.asarray(gold), np.asarray(decided),
                               {"accuracy": accuracy_per_draw, "macro_f1": macro_f1_per_draw(labels)}, seed=seed)


def _known_proportion(n: int, right: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    """`n` rows, half of each class, exactly `right` of them predicted correctly."""
    gold = np.arange(n) % 2
    decided = gold.copy()
    wrong = random.Random(0).sample(range(n), round(n * (1 - right)))
    decided[wrong] = 1 - decided[wrong]
    return gold, decided


def test_all_correct_gives_a_point_interval():
    gold = np.array([0, 1, 2, 1, 0, 2, 2])
    intervals = _intervals(gold, gold, labels=3)
    assert intervals["accuracy"] == [1.0, 1.0] and intervals["macro_f1"] == [1.0, 1.0]


def test_interval_of_a_known_proportion_matches_the_binomial_and_shrinks_with_n():
    small = _intervals(*_known_proportion(20))["accuracy"]
    large = _intervals(*_known_proportion(1000))["accuracy"]
    assert small[0] < 0.7 < small[1] and large[0] < 0.7 < large[1]
    assert small[1] - small[0] > 3 * (large[1] - large[0])
    binomial = 2 * 1.96 * (0.7 * 0.3 / 1000) ** 0.5  # the normal approximation's width, 0.057
    assert abs((large[1] - large[0]) - binomial) < 0.01, large


def test_intervals_are_seeded():
    gold, decided = _known_proportion(40)
    assert _intervals(gold, decided, seed=3) == _intervals(gold, decided, seed=3)
    assert _intervals(gold, decided, seed=3) != _intervals(gold, decided, seed=4)


def test_per_draw_macro_f1_is_the_reported_macro_f1():
    """The statistic resampled is the macro F1 the metrics report, for classes and for label
    sets, whenever each label is in the gold rows or the predictions (a label predicted but
    never true scores 0); a label in neither is left out of the draw's average."""
    from sklearn.metrics import f1_score

    from nlpft.finetune.metrics import macro_f1_per_draw

    rng = np.random.default_rng(0)
    gold, decided = rng.integers(0, 3, 50), rng.integers(0, 4, 50)  # label 3 never in gold
    expected = f1_score(gold, decided, labels=[0, 1, 2, 3], average="macro", zero_division=0)
    assert macro_f1_per_draw(4)(gold[None], decided[None])[0] == pytest.approx(expected)
    gold_sets, decided_sets = rng.integers(0, 2, (50, 4)), rng.integers(0, 2, (50, 4))
    expected = f1_score(gold_sets, decided_sets, average="macro", zero_division=0)
    assert macro_f1_per_draw(4)(gold_sets[None], decided_sets[None])[0] == pytest.approx(expected)
    gold_sets[:, 2] = decided_sets[:, 2] = 0  # a label in neither: left out, not scored 0
    expected = f1_score(gold_sets[:, [0, 1, 3]], decided_sets[:, [0, 1, 3]], average="macro", zero_division=0)
    assert macro_f1_per_draw(4)(gold_sets[None], decided_sets[None])[0] == pytest.approx(expected)


def test_large_test_sets_get_no_interval():
    from nlpft.data.labeled import build_label_map
    from nlpft.finetune.tasks.single import SingleLabelTask

    task = SingleLabelTask({"text_col": "text", "label_col": "label"})
    rows = _rows({"a": 100, "b": 100})
    task.label_map = build_label_map(rows)
    scores = np.tile([0.9, 0.1], (200, 1))
    assert task.confidence_intervals(rows, scores, seed=1) is None
    assert task.confidence_intervals(rows[:199], scores[:199], seed=1) is not None


def test_headline_shows_the_interval():
    from nlpft.finetune.tasks.single import SingleLabelTask

    metrics = {"accuracy": 0.7, "macro_f1": 0.69, "mcc": 0.4,
               "confidence_intervals": {"level": 0.95, "rows": 20, "accuracy": [0.5, 0.9], "macro_f1": [0.47, 0.89]}}
    line = SingleLabelTask({}).headline(metrics)
    assert re.fullmatch(r"accuracy 0\.7000 \(95% CI 0\.50–0\.90, 20 rows\), macro F1 0\.6900 \(95% CI 0\.47–0\.89, "
                        r"20 rows\), MCC 0\.4000", line), line


def test_readme_step_one_with_defaults_picks_contrastive_minilm(tmp_path, capsys):
    """README set-up step 1: `nlpft finetune --train polarity --out runs/clf`, defaults only
    (the installed MiniLM, tuned on 1,280 pairs of its 140 training sentences: about a minute)."""
    out = tmp_path / "clf"
    assert main(["finetune", "--train", "polarity", "--out", str(out)]) == 0
    assert "method contrastive (auto: 70 training examples in the smallest class" in capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    # seeds 0-4 of this split give 0.70-0.85 (frozen embeddings alone: 0.65-0.825); chance is 0.5
    assert metrics["test"]["accuracy"] >= 0.65, metrics["test"]
    assert metrics["test"]["confidence_intervals"]["rows"] == 40  # a small file holds out 40 test rows


def test_contrastive_tunes_the_encoder_then_predicts_as_trained(data_csv, tiny_bert, tmp_path, capsys):
    """--method contrastive: the encoder's weights change (frozen's do not), the output
    predicts what training wrote for its test rows, and it loads as a sentence-transformers
    model too."""
    from safetensors.torch import load_file

    out = tmp_path / "contrastive"
    assert main(["finetune", "--train", str(data_csv), "--model", str(tiny_bert), "--method", "contrastive",
                 "--out", str(out), "--lr", "1e-3", *QUICK]) == 0
    meta = json.loads((out / "finetune.json").read_text())
    assert meta["backbone"] == "contrastive-encoder" and meta["method"] == "contrastive"
    before, after = load_file(tiny_bert / "model.safetensors"), load_file(out / "model.safetensors")
    shared = [k for k in after if k in before and before[k].shape == after[k].shape]
    assert shared and any(not before[k].equal(after[k]) for k in shared)
    assert json.loads((out / "metrics.json").read_text())["test"]["accuracy"] >= 0.8
    trained = read_csv(out / "predictions.csv")
    again = tmp_path / "again.csv"
    assert main(["predict", "--model", str(out), "--input", str(write_csv(tmp_path / "t.csv", trained)),
                 "--out", str(again)]) == 0
    probabilities = [k for k in trained[0] if k.startswith("p_")]
    assert max(abs(float(a[k]) - float(b[k])) for a, b in zip(read_csv(again), trained, strict=True)
               for k in probabilities) <= 1e-5
    assert (out / "modules.json").is_file() and (out / "1_Pooling" / "config.json").is_file()


def test_contrastive_refuses_text_pairs_before_any_model_loads(tiny_bert, tmp_path, capsys):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("text,other,label\n" + "".join(f"a {i},b {i},{'yes' if i % 2 else 'no'}\n" for i in range(40)),
                     encoding="utf-8")
    assert main(["finetune", "--train", str(pairs), "--text-pair-col", "other", "--model", str(tiny_bert),
                 "--method", "contrastive", "--out", str(tmp_path / "out"), *QUICK]) == 2
    err = capsys.readouterr().err
    assert "--method contrastive needs" in err and "single texts (for text pairs use --method frozen" in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
