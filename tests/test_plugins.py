"""Tasks and backbones are plug-ins: a backbone and a task defined in this file, registered,
run through the public entry points (`nlpft finetune | predict | evaluate`) with no change
to nlpft, and `--help` lists what is registered."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from torch import nn

from nlpft.cli.main import main
from nlpft.finetune import backbones, tasks
from nlpft.finetune.backbones import Backbone, Prepared
from nlpft.finetune.tasks.single import SingleLabelTask

ALPHABET = 128  # characters are ids 1..127 (by code point, folded); 0 pads


class CharTokenizer:
    """Each character is a token: enough of nlpft's word-level tokenizer interface for
    `encode_examples`."""

    unk_id = None
    vocab_size = ALPHABET

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [[1 + ord(ch) % (ALPHABET - 1) for ch in text] for text in texts]


class CharBagModel(nn.Module):
    """Counts of each character, divided by the text's length, into one linear layer."""

    def __init__(self, outputs: int):
        super().__init__()
        self.outputs = outputs
        self.bag = nn.EmbeddingBag(ALPHABET, outputs, mode="mean", padding_idx=0)

    def forward(self, input_ids, attention_mask=None, **_):
        return {"logits": self.bag(input_ids)}

    def save_pretrained(self, directory: str) -> None:
        from nlpft.training.weights import save_model

        save_model(self, str(Path(directory) / "model.safetensors"))
        (Path(directory) / "char_bag.json").write_text(json.dumps({"outputs": self.outputs}))


class CharBag(Backbone):
    name = "char-bag"
    summary = "char-bag: characters counted, then one linear layer (a plug-in defined by a test)"
    default_epochs = 15
    uses_precision = False

    @classmethod
    def detect(cls, spec: str) -> bool:
        return spec == "char-bag"

    def prepare(self, opts) -> Prepared:
        return Prepared(tokenizer=CharTokenizer(), pad_id=0, max_length=opts.max_length,
                        build_model=lambda task: CharBagModel(task.num_outputs))

    def default_lr(self, parameters: int) -> float:
        return 0.5

    def load(self, model_dir: Path, meta: dict, task) -> Prepared:
        from safetensors.torch import load_model

        outputs = json.loads((Path(model_dir) / "char_bag.json").read_text())["outputs"]
        model = CharBagModel(outputs)
        load_model(model, str(Path(model_dir) / "model.safetensors"))
        return Prepared(tokenizer=CharTokenizer(), pad_id=0, max_length=int(meta["max_length"]), model=model.eval())


class ShortLabelTask(SingleLabelTask):
    """One label per text, printed by `predict --text` as its first letter only."""

    name = "short-label"
    summary = "one label per text, printed by its first letter (a plug-in defined by a test)"

    def describe_prediction(self, scores) -> list[str]:
        return [self.label_names[int(scores.argmax())][0]]


@pytest.fixture
def plugins():
    backbones.register(CharBag)
    tasks.register(ShortLabelTask)
    yield
    backbones.unregister(CharBag.name)
    tasks.unregister(ShortLabelTask.name)


def _write(path: Path, n: int, seed: int) -> Path:
    """Positive texts are full of z and x, negative ones of q and w: a bag of characters
    separates them, so the assertions below can fail only if the plumbing is wrong."""
    rng = random.Random(seed)
    words = {"pos": ["zax", "zixx", "xoz", "zaxx"], "neg": ["qaw", "wiq", "woq", "qawq"]}
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for i in range(n):
            label = ("pos", "neg")[i % 2]
            writer.writerow([" ".join(rng.choice(words[label] + ["the", "and"]) for _ in range(6)), label])
    return path


def test_a_backbone_and_a_task_defined_outside_nlpft_train_predict_and_evaluate(plugins, tmp_path, capsys):
    data, test = _write(tmp_path / "train.csv", 160, 0), _write(tmp_path / "test.csv", 40, 1)
    out = tmp_path / "run"
    assert main(["finetune", "--train", str(data), "--model", "char-bag", "--task", "short-label", "--out", str(out),
                 "--batch-size", "8", "--epochs", "6", "--threads", "1", "--quiet", "--warmup", "0"]) == 0
    meta = json.loads((out / "finetune.json").read_text())
    assert meta["backbone"] == "char-bag" and meta["task"]["task"] == "short-label"
    assert meta["options"]["model"] == "char-bag" and meta["options"]["precision"] == "fp32"  # resolved, saved
    assert json.loads((out / "metrics.json").read_text())["test"]["accuracy"] >= 0.9
    assert (out / "predictions.csv").is_file() and (out / "confusion_matrix.png").is_file()
    capsys.readouterr()

    assert main(["predict", "--model", str(out), "--text", "zax zixx xoz the zaxx"]) == 0
    assert capsys.readouterr().out.strip() == "p"  # the task's own printout
    predictions = tmp_path / "predictions.csv"
    assert main(["predict", "--model", str(out), "--input", str(test), "--out", str(predictions)]) == 0
    with open(predictions, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 40 and sum(r["predicted"] == ("pos", "neg")[i % 2] for i, r in enumerate(rows)) >= 36
    capsys.readouterr()

    assert main(["evaluate", "--model", str(out), "--input", str(test), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] >= 0.9


def test_help_lists_what_is_registered(plugins, capsys):
    assert main(["finetune", "--help"]) == 0
    text = capsys.readouterr().out
    assert "char-bag" in text and "characters counted" in text  # --model: the registered backbones
    assert "short-label" in text and "printed by its first letter" in text  # --task: the registered tasks
    for name in ("tfidf", "rnn-lm", "static", "hf-encoder", "hf-decoder"):
        assert name in text


def test_unregistered_plugins_are_gone(capsys):
    assert main(["finetune", "--help"]) == 0
    text = capsys.readouterr().out
    assert "char-bag" not in text and "short-label" not in text
