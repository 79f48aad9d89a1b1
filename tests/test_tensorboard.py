"""`--report-to tensorboard`: the curves of `lm train`, `pretrain` and `finetune`, read back
from OUT/runs/ with TensorBoard's own reader and checked against the run's metrics.json.

Tiny models and --max-steps keep each run to seconds; the tests that read event files skip
when the optional `tensorboard` package is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from nlpft.cli.main import main
from tests.conftest import save_tiny_bert
from tests.test_finetune import make_rows, write_csv

TRAIN_TAGS = ("train/loss", "train/learning_rate", "train/throughput")
needs_tensorboard = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                                       reason="tensorboard is not installed (pip install 'nlpft[tensorboard]')")


def curves(out: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} of every scalar in `out`/runs, as TensorBoard shows them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "runs"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def check_curves(found: dict, train_steps: list[int], eval_steps: list[int], eval_names: tuple[str, ...]) -> None:
    expected = {*TRAIN_TAGS, *(f"eval/{name}" for name in eval_names)}
    assert set(found) == expected, sorted(found)
    for tag in TRAIN_TAGS:
        assert [step for step, _ in found[tag]] == train_steps, (tag, found[tag])
    for name in eval_names:
        assert [step for step, _ in found[f"eval/{name}"]] == eval_steps, (name, found[f"eval/{name}"])
    for tag, points in found.items():
        assert all(math.isfinite(value) for _, value in points), (tag, points)
    assert all(value > 0 for tag in TRAIN_TAGS for _, value in found[tag])


@needs_tensorboard
def test_lm_train_curves(tmp_path, lee_path):
    corpus = tmp_path / "lee.txt"
    corpus.write_text("\n".join(lee_path.read_text(encoding="utf-8").splitlines()[:50]) + "\n", encoding="utf-8")
    out = tmp_path / "lm"
    assert main(["lm", "train", "--corpus", str(corpus), "--out", str(out), "--embedding-dim", "16",
                 "--hidden-dim", "24", "--batch-size", "4", "--bptt", "8", "--quiet", "--threads", "1",
                 "--max-steps", "60", "--report-to", "tensorboard"]) == 0
    found = curves(out)
    # a point every 50 steps and one at the evaluation that --max-steps ends with
    check_curves(found, train_steps=[50, 60], eval_steps=[60], eval_names=("loss", "perplexity"))
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert found["eval/loss"][0][1] == pytest.approx(history[0]["valid_loss"], rel=1e-6)
    assert found["eval/perplexity"][0][1] == pytest.approx(history[0]["valid_ppl"], rel=1e-6)
    assert found["train/learning_rate"][0][1] == pytest.approx(2e-3)


@needs_tensorboard
def test_pretrain_curves(tmp_path):
    corpus = tmp_path / "story.txt"
    corpus.write_text("\n".join(f"the {a} {v} the {o} in the morning." for a in ("cat", "dog", "king", "girl")
                                for v in ("sees", "finds", "paints", "follows") for o in ("river", "letter", "boat"))
                      * 12 + "\n", encoding="utf-8")
    out = tmp_path / "gpt"
    assert main(["pretrain", "--arch", "gpt2", "--corpus", str(corpus), "--out", str(out), "--size", "tiny",
                 "--block-size", "32", "--batch-size", "4", "--vocab-size", "300", "--max-eval-blocks", "8",
                 "--quiet", "--threads", "1", "--max-steps", "10", "--eval-every", "5",
                 "--report-to", "tensorboard"]) == 0
    found = curves(out)
    check_curves(found, train_steps=[5, 10], eval_steps=[5, 10], eval_names=("loss", "perplexity"))
    metrics = json.loads((out / "metrics.json").read_text())
    during_training = metrics["eval_history"][:2]  # then the runner's final validation and test scores
    assert [(h["step"], h["eval_loss"]) for h in during_training] == [
        (step, pytest.approx(value, rel=1e-6)) for step, value in found["eval/loss"]]
    assert [value for _, value in found["train/loss"]] == pytest.approx(
        [h["loss"] for h in metrics["train_loss_history"]], rel=1e-6)


@needs_tensorboard
def test_finetune_curves(tmp_path):
    from nlpft.tokenization.subword import train_subword_tokenizer

    data = write_csv(tmp_path / "reviews.csv", make_rows(300, 0))
    tokenizer = train_subword_tokenizer([row["text"] for row in make_rows(300, 1)], "wordpiece", 200,
                                        model_max_length=64)
    bert = save_tiny_bert(tmp_path / "tiny-bert", tokenizer)
    out = tmp_path / "clf"
    # 240 training rows in batches of 16: 15 steps an epoch, a logging step every 15 // 4 = 3
    assert main(["finetune", "--train", str(data), "--model", str(bert), "--out", str(out), "--method", "standard",
                 "--valid-fraction", "0.1", "--test-fraction", "0.1", "--max-length", "32", "--threads", "1",
                 "--quiet", "--max-steps", "6", "--eval-every", "3", "--report-to", "tensorboard"]) == 0
    found = curves(out)
    check_curves(found, train_steps=[3, 6], eval_steps=[3, 6], eval_names=("loss", "accuracy", "macro_f1"))
    valid_history = json.loads((out / "metrics.json").read_text())["valid_history"]
    assert [value for _, value in found["eval/accuracy"]] == pytest.approx(
        [h["eval_accuracy"] for h in valid_history], rel=1e-6)


@needs_tensorboard
def test_a_resumed_run_continues_the_curves_after_its_checkpoint(tmp_path):
    """The points an interrupted run wrote after its last checkpoint are hidden once a
    resumed run writes from the step after it: one value per step, the newest."""
    from nlpft.training.reporting import ScalarReport

    interrupted = ScalarReport(tmp_path)
    for step in range(1, 9):
        interrupted.train(step, loss=10.0 + step, learning_rate=1e-3, throughput=100.0)
    interrupted.close()
    resumed = ScalarReport(tmp_path, first_step=6)  # its checkpoint was at step 5
    for step in range(6, 11):
        resumed.train(step, loss=float(step), learning_rate=1e-3, throughput=100.0)
    resumed.close()
    assert len(list((tmp_path / "runs").iterdir())) == 2  # appended: the earlier file stays
    assert curves(tmp_path)["train/loss"] == [(1, 11.0), (2, 12.0), (3, 13.0), (4, 14.0), (5, 15.0),
                                              (6, 6.0), (7, 7.0), (8, 8.0), (9, 9.0), (10, 10.0)]


@pytest.mark.parametrize("command", [
    ["lm", "train", "--corpus", "CORPUS"],
    ["pretrain", "--arch", "gpt2", "--corpus", "CORPUS"],
    ["finetune", "--train", "CORPUS", "--model", "no-such-model"],
])
def test_missing_package_is_one_line_before_anything_loads(command, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now fails
    corpus = tmp_path / "in.txt"
    corpus.write_text("text,label\nsome words,a\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = [str(corpus) if arg == "CORPUS" else arg for arg in command]
    assert main([*argv, "--out", str(out), "--report-to", "tensorboard"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("pip install 'nlpft[tensorboard]'"), err
    assert not out.exists() and not out.with_name("out.partial").exists()


@needs_tensorboard
def test_backbone_without_steps_says_nothing_was_reported(tmp_path, capsys):
    data = write_csv(tmp_path / "reviews.csv", make_rows(120, 0))
    out = tmp_path / "tfidf"
    assert main(["finetune", "--train", str(data), "--model", "tfidf", "--out", str(out), "--quiet",
                 "--report-to", "tensorboard"]) == 0
    assert "nothing was written to runs/" in capsys.readouterr().err
    assert not (out / "runs").exists()
