"""Tasks and backbones are plug-ins: a backbone and a task defined in this file, registered,
run through the public entry points (`nlpft finetune | predict | evaluate`) with no change
to nlpft, and `--help` lists what is registered. A plug-in declares its own options: their
flags, --help section and config keys come with its registration, and giving one to
another plug-in is refused, naming its owner."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from torch import nn

from nlpft.cli.main import main
from nlpft.errors import UserInputError
from nlpft.finetune import backbones, tasks
from nlpft.finetune.backbones import Backbone, Prepared
from nlpft.finetune.tasks.single import SingleLabelTask
from nlpft.options import option, positive_int

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


@dataclass(frozen=True)
class ShortLabelOptions:
    label_letters: int = option(1, "how many letters of the label predict --text prints (default: %(default)s)",
                                type=positive_int, fingerprinted=True)


class ShortLabelTask(SingleLabelTask):
    """One label per text, printed by `predict --text` as its first letters only (an option
    of its own says how many)."""

    name = "short-label"
    summary = "one label per text, printed by its first letter (a plug-in defined by a test)"
    options = ShortLabelOptions

    def describe_prediction(self, scores) -> list[str]:
        return [self.label_names[int(scores.argmax())][:self.task_options.label_letters]]


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
    # each plug-in's own options in a section titled by their owner
    assert "--task short-label:\n  --label-letters LABEL_LETTERS\n" in text
    assert "how many letters of the label predict --text prints (default: 1)" in " ".join(text.split())
    assert "--task tag:\n  --tag-col N" in text and "--model: BERT-style encoders:\n  --pooling" in text


def test_unregistered_plugins_are_gone(capsys):
    assert main(["finetune", "--help"]) == 0
    text = capsys.readouterr().out
    assert "char-bag" not in text and "short-label" not in text and "--label-letters" not in text


def test_a_plugin_option_from_the_config_file_reaches_the_task_and_is_saved(plugins, tmp_path, capsys):
    data = _write(tmp_path / "train.csv", 160, 0)
    config = tmp_path / "run.yaml"
    config.write_text("task: short-label\nlabel_letters: 3\n", encoding="utf-8")
    out = tmp_path / "run"
    assert main(["finetune", "--train", str(data), "--model", "char-bag", "--config", str(config), "--out", str(out),
                 "--batch-size", "8", "--epochs", "6", "--threads", "1", "--quiet", "--warmup", "0"]) == 0
    options = json.loads((out / "finetune.json").read_text())["options"]
    assert options["task_options"] == {"label_letters": 3} and options["backbone_options"] is None
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "--text", "zax zixx xoz the zaxx"]) == 0
    assert capsys.readouterr().out.strip() == "pos"  # read back from finetune.json by the task


@pytest.mark.parametrize("how", ["flag", "config"])
def test_a_plugin_option_given_to_another_task_is_refused_naming_its_owner(plugins, how, tmp_path, capsys):
    data = _write(tmp_path / "train.csv", 40, 0)
    config = tmp_path / "run.yaml"
    config.write_text("label_letters: 2\n", encoding="utf-8")
    given = ["--label-letters", "2"] if how == "flag" else ["--config", str(config)]
    out = tmp_path / "run"
    assert main(["finetune", "--train", str(data), "--model", "tfidf", "--out", str(out), *given]) == 2
    assert "error: --label-letters applies to --task short-label, not to --task single" in capsys.readouterr().err
    assert not out.exists()


def _vectors_file(path: Path) -> Path:
    path.write_text("2 3\nthe 0.1 0.2 0.3\nand 0.3 0.2 0.1\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("extra, message", [
    (["--tag-scheme", "bioes"], "--tag-scheme applies to --task tag, not to --task single"),
    (["--crf", "--task", "multi"], "--crf applies to --task tag, not to --task multi"),
    (["--pooling", "mean", "--model", "VECTORS"],
     "--pooling applies to BERT-style encoders (--model minilm, ...), not to --model VECTORS"),
    (["--freeze-embeddings", "--model", "tfidf"],
     "--freeze-embeddings applies to the RNN LM (--model an `nlpft lm train` directory) or static vectors "
     "(--model an `nlpft embed train` directory or a word2vec file), not to --model tfidf"),
    (["--layer-lr-factor", "1", "--model", "VECTORS"], "--layer-lr-factor applies to the RNN LM"),
])
def test_a_real_plugin_option_given_to_another_plugin_is_refused(extra, message, tmp_path, capsys):
    vectors = str(_vectors_file(tmp_path / "w2v.vec"))
    extra = [vectors if arg == "VECTORS" else arg for arg in extra]
    out = tmp_path / "run"
    assert main(["finetune", "--train", str(_write(tmp_path / "train.csv", 40, 0)), "--out", str(out), *extra]) == 2
    assert message.replace("VECTORS", vectors) in capsys.readouterr().err
    assert not out.exists() and not out.with_name("run.partial").exists()


def test_the_python_api_takes_plugin_options_as_a_dict_or_their_dataclass(plugins, tmp_path):
    from nlpft.finetune.backbones.hf_encoder import EncoderOptions
    from nlpft.finetune.tasks.tag import TagOptions
    from nlpft.runners.finetune import FinetuneOptions, finetune

    data = str(_write(tmp_path / "train.csv", 40, 0))
    with pytest.raises(UserInputError, match=r"^--label-letters must be at least 1, not 0$"):
        finetune(FinetuneOptions(train=data, out=str(tmp_path / "a"), task="short-label", model="tfidf",
                                 task_options={"label_letters": 0}))
    with pytest.raises(UserInputError, match=r"^--pooling applies to BERT-style encoders .*, not to --task single$"):
        finetune(FinetuneOptions(train=data, out=str(tmp_path / "b"), task_options={"pooling": "mean"}))
    with pytest.raises(UserInputError, match=r"^--tag-col applies to --task tag, not to --task single$"):
        finetune(FinetuneOptions(train=data, out=str(tmp_path / "c"), task_options=TagOptions(tag_scheme="bioes")))
    with pytest.raises(UserInputError, match=r"^--pooling applies to BERT-style encoders .*, not to --model tfidf$"):
        finetune(FinetuneOptions(train=data, out=str(tmp_path / "d"), model="tfidf",
                                 backbone_options=EncoderOptions(pooling="cls")))
    opts = FinetuneOptions(train=data, out=str(tmp_path / "e"), task="short-label", model="tfidf", quiet=True,
                           task_options={"label_letters": 2})
    finetune(opts)
    assert opts.task_options == {"label_letters": 2}  # the caller's object is left alone
    saved = json.loads((tmp_path / "e" / "finetune.json").read_text())["options"]
    assert saved["task_options"] == {"label_letters": 2}


def test_a_plugin_option_is_part_of_the_resume_fingerprint(plugins, tmp_path):
    from nlpft.finetune.tasks.tag import TagOptions
    from nlpft.runners.finetune import FinetuneOptions, _fingerprint

    opts = FinetuneOptions(train="t.csv", out="o", task="tag", task_options=TagOptions(tag_scheme="bioes"))
    options = _fingerprint(opts)["options"]
    assert options["--tag-scheme"] == "bioes" and options["--crf"] is False and "--max-length" in options


def test_a_clashing_option_fails_at_registration():
    from nlpft.finetune.backbones.word_common import WordOptions

    @dataclass(frozen=True)
    class Clashing:
        tag_scheme: str = option("iob2", "a second --tag-scheme")

    @dataclass(frozen=True)
    class Core:
        max_length: int = option(8, "a second --max-length")

    @dataclass(frozen=True)
    class SharedWithABackbone(WordOptions):
        pass

    for options, already in ((Clashing, "TagTask declares"), (Core, "a core option"),
                             (SharedWithABackbone, "which RNNLMBackbone declares already")):
        clashing = type("ClashingTask", (ShortLabelTask,), {"name": "clashing", "options": options})
        with pytest.raises(ValueError, match=already):
            tasks.register(clashing)
        assert "clashing" not in tasks.task_names()
    shared = type("MoreVectors", (CharBag,), {"name": "more-vectors", "options": WordOptions})
    backbones.register(shared)  # the very field the word-level backbones declare: fine
    try:
        assert "more-vectors" in backbones.backbone_names()
    finally:
        backbones.unregister("more-vectors")


def test_a_plugin_checks_its_own_options_rules():
    from nlpft.finetune import plugin_options
    from nlpft.finetune.backbones.rnn_lm import RNNLMBackbone, RNNLMOptions

    resolved = plugin_options.resolve(plugin_options.BACKBONE, RNNLMBackbone, {"layer_lr_factor": 1}, "--model lm")
    assert resolved == RNNLMOptions(layer_lr_factor=1.0)
    with pytest.raises(UserInputError, match="--layer-lr-factor must be 1"):
        plugin_options.resolve(plugin_options.BACKBONE, RNNLMBackbone, {"layer_lr_factor": 0.5}, "--model lm")


def test_a_backbone_option_reaches_the_model_and_is_saved(tmp_path):
    """--freeze-embeddings, declared once for the word-level backbones, reaches the static-vectors
    classifier's config and finetune.json's backbone options."""
    words = ["zax", "zixx", "xoz", "zaxx", "qaw", "wiq", "woq", "qawq", "the", "and"]
    vectors = tmp_path / "w2v.vec"
    vectors.write_text(f"{len(words)} 3\n" + "".join(f"{w} {i / 10:.1f} 0.5 -0.5\n" for i, w in enumerate(words)),
                       encoding="utf-8")
    out = tmp_path / "run"
    assert main(["finetune", "--train", str(_write(tmp_path / "train.csv", 40, 0)), "--model", str(vectors),
                 "--freeze-embeddings", "--out", str(out), "--max-steps", "2", "--threads", "1", "--quiet"]) == 0
    assert json.loads((out / "classifier.json").read_text())["freeze_embeddings"] is True
    options = json.loads((out / "finetune.json").read_text())["options"]
    assert options["backbone_options"] == {"freeze_embeddings": True}
    assert options["task_options"] == {"long_text": "auto", "window_pooling": "mean", "max_windows": 8}


def test_plugin_options_read_back_from_finetune_json_old_and_new():
    from nlpft.finetune.backbones.hf_encoder import EncoderOptions, HFEncoder
    from nlpft.finetune.tasks.tag import TagOptions, TagTask

    flat = {"options": {"tag_scheme": "bioes", "crf": True, "pooling": "mean", "max_length": 32}}  # the first format
    assert TagTask.saved_options(flat) == TagOptions(tag_scheme="bioes", crf=True)
    assert HFEncoder.saved_options(flat) == EncoderOptions(pooling="mean")
    nested = {"options": {"task_options": {"tag_scheme": "iob1"}, "backbone_options": {"pooling": "bogus"}}}
    assert TagTask.saved_options(nested) == TagOptions(tag_scheme="iob1")
    with pytest.raises(UserInputError, match="options.backbone_options.*--pooling: invalid choice: 'bogus'"):
        HFEncoder.saved_options(nested)
