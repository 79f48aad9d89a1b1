"""`nlpft finetune --task tag` end to end: CoNLL/JSONL/CSV, a tiny random BERT built in the
test, static vectors and the RNN LM under a BiLSTM(-CRF), predict (raw text, .txt, CoNLL),
evaluate, resume after SIGKILL, and the stock token-classification pipeline. The data is
synthetic with a plain signal (a capitalised name after "met" is a person, a capitalised
word after "in" a place), so a few dozen steps must learn it: the assertions can fail."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from nlpft.cli.main import main
from tests.conftest import kill_after_first_checkpoint, save_tiny_bert

FIRST = ["John", "Mary", "Alice", "Peter", "Susan", "David", "Laura", "Mark"]
LAST = ["Smith", "Jones", "Brown", "Taylor", "Wilson"]
PLACES = ["Paris", "London", "Berlin", "Madrid", "Rome", "Vienna"]
FILLER = ["yesterday", "today", "again", "briefly", "at noon", "for lunch", "twice"]


def make_sentences(n: int, seed: int) -> list[tuple[list[str], list[str]]]:
    """Sentences such as "we met John Smith in Paris today" with IOB2 tags."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        tokens, tags = rng.choice([["we", "met"], ["I", "met"], ["they", "met"]]), []
        tags = ["O"] * len(tokens)
        name = [rng.choice(FIRST)] + ([rng.choice(LAST)] if rng.random() < 0.5 else [])
        tokens += name
        tags += ["B-PER"] + ["I-PER"] * (len(name) - 1)
        if rng.random() < 0.7:
            tokens += ["in", rng.choice(PLACES)]
            tags += ["O", "B-LOC"]
        filler = rng.choice(FILLER).split()
        tokens += filler + ["."]
        tags += ["O"] * (len(filler) + 1)
        sentences.append((tokens, tags))
    return sentences


def write_conll(path: Path, sentences) -> Path:
    path.write_text("\n\n".join("\n".join(f"{t}\t{g}" for t, g in zip(*s)) for s in sentences) + "\n",
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("tagged")
    return {"train": write_conll(folder / "train.conll", make_sentences(240, 0)),
            "test": write_conll(folder / "test.conll", make_sentences(40, 1)),
            "folder": folder}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A random 2-layer BERT with a cased WordPiece vocabulary trained on the tagging text."""
    from nlpft.tokenization.subword import train_subword_tokenizer

    lines = [" ".join(tokens) for tokens, _ in make_sentences(400, 5)]
    tok = train_subword_tokenizer(lines, "wordpiece", 120, model_max_length=64, lowercase=False)
    return save_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert", tok)


FAST = ["--lr", "3e-3", "--batch-size", "16", "--max-length", "32", "--threads", "1", "--quiet", "--warmup", "0",
        "--precision", "fp32"]


@pytest.fixture(scope="module")
def bert_tagger(tmp_path_factory, data, tiny_bert) -> Path:
    out = tmp_path_factory.mktemp("runs") / "bert-ner"
    assert main(["finetune", "--task", "tag", "--train", str(data["train"]), "--model", str(tiny_bert),
                 "--out", str(out), "--epochs", "12", *FAST]) == 0
    return out


def test_bert_tagger_learns_and_writes_everything(bert_tagger):
    metrics = json.loads((bert_tagger / "metrics.json").read_text())
    test = metrics["test"]
    assert test["micro_f1"] >= 0.9, test
    assert {"PER", "LOC"} == set(test["per_type"]) and test["token_accuracy"] >= 0.9
    assert test["confusion"]["labels"] == ["LOC", "PER", "O"]
    for name in ("config.json", "model.safetensors", "report.md", "type_f1.png", "predictions.conll",
                 "finetune.json"):
        assert (bert_tagger / name).is_file(), name
    config = json.loads((bert_tagger / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"]
    assert sorted(config["id2label"].values()) == ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"]
    report = (bert_tagger / "report.md").read_text()
    assert "| PER |" in report and "gold \\ predicted" in report
    first = (bert_tagger / "predictions.conll").read_text().split("\n\n")[0].splitlines()
    assert all(len(line.split("\t")) == 3 for line in first)  # token, gold, predicted
    assert any(h.get("eval_micro_f1") is not None for h in metrics["valid_history"])


def test_predict_text_prints_entity_spans_with_offsets(bert_tagger, capsys):
    text = "we met Peter Jones in Rome today ."
    assert main(["predict", "--model", str(bert_tagger), "--text", text]) == 0
    found = json.loads(capsys.readouterr().out.strip())
    assert [(e["type"], e["text"]) for e in found] == [("PER", "Peter Jones"), ("LOC", "Rome")]
    for entity in found:
        assert text[entity["start"]:entity["end"]] == entity["text"] and 0 < entity["score"] <= 1


def test_predict_txt_to_jsonl_and_conll_to_conll(bert_tagger, data, tmp_path):
    texts = tmp_path / "new.txt"
    texts.write_text("I met Mary in Berlin.\n\nthey met David Wilson twice\n", encoding="utf-8")
    out = tmp_path / "entities.jsonl"
    assert main(["predict", "--model", str(bert_tagger), "--input", str(texts), "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in lines] == [1, 3]  # the empty line is skipped
    assert [(e["type"], e["text"], e["start"]) for e in lines[0]["entities"]] == [("PER", "Mary", 6),
                                                                                 ("LOC", "Berlin", 14)]
    tokens_only = tmp_path / "tokens.conll"
    tokens_only.write_text("we\nmet\nLaura\n\nI\nmet\nMark\nin\nMadrid\n", encoding="utf-8")
    conll_out = tmp_path / "tagged.conll"
    assert main(["predict", "--model", str(bert_tagger), "--input", str(tokens_only), "--out", str(conll_out)]) == 0
    sentences = [s.splitlines() for s in conll_out.read_text().strip().split("\n\n")]
    assert sentences[1] == ["I\tO", "met\tO", "Mark\tB-PER", "in\tO", "Madrid\tB-LOC"]


def test_evaluate_gives_entity_metrics_and_refuses_unseen_tags(bert_tagger, data, tmp_path, capsys):
    assert main(["evaluate", "--model", str(bert_tagger), "--input", str(data["test"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["micro_f1"] >= 0.9 and result["gold_entities"] > 40
    unseen = tmp_path / "unseen.conll"
    unseen.write_text("we\tO\nmet\tO\nAcme\tB-ORG\n", encoding="utf-8")
    assert main(["evaluate", "--model", str(bert_tagger), "--input", str(unseen)]) == 2
    assert "'B-ORG' (1 token, first at line 3)" in capsys.readouterr().err


def write_jsonl(path: Path, sentences) -> Path:
    path.write_text("".join(json.dumps({"tokens": t, "tags": g}) + "\n" for t, g in sentences), encoding="utf-8")
    return path


def write_tag_csv(path: Path, sentences) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["tokens", "tags"])
        writer.writerows([" ".join(t), " ".join(g)] for t, g in sentences)
    return path


@pytest.fixture(scope="module")
def vectors(tmp_path_factory) -> Path:
    """word2vec trained by `nlpft embed train` on the tagging text."""
    folder = tmp_path_factory.mktemp("w2v")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(" ".join(t) for t, _ in make_sentences(600, 7)) + "\n", encoding="utf-8")
    out = folder / "w2v"
    assert main(["embed", "train", "--algo", "word2vec", "--corpus", str(corpus), "--out", str(out), "--dim", "16",
                 "--min-count", "1", "--epochs", "2", "--threads", "1", "--quiet"]) == 0
    return out


WORD_FAST = ["--lr", "1e-2", "--batch-size", "16", "--threads", "1", "--quiet", "--warmup", "0"]


@pytest.mark.parametrize("layout", ["jsonl", "csv"])
def test_bilstm_crf_over_static_vectors_on_jsonl_and_csv(vectors, tmp_path, layout, capsys):
    write = write_jsonl if layout == "jsonl" else write_tag_csv
    files = {name: write(tmp_path / f"{name}.{layout}", make_sentences(n, seed))
             for name, n, seed in (("train", 200, 0), ("valid", 30, 2), ("test", 40, 1))}
    out = tmp_path / "bilstm-crf"
    assert main(["finetune", "--task", "tag", "--train", str(files["train"]), "--valid", str(files["valid"]),
                 "--test", str(files["test"]), "--model", str(vectors), "--crf", "--out", str(out), "--epochs", "6",
                 *WORD_FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backbone"] == "static" and metrics["test_examples"] == 40
    assert metrics["test"]["micro_f1"] >= 0.9, metrics["test"]
    tagger = json.loads((out / "tagger.json").read_text())
    assert tagger["crf"] is True and sorted(tagger["labels"]) == ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"]
    assert main(["predict", "--model", str(out), "--text", "they met Susan Brown in Vienna at noon"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [(e["type"], e["text"]) for e in found] == [("PER", "Susan Brown"), ("LOC", "Vienna")]


def test_bilstm_over_the_rnn_lm(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(t) for t, _ in make_sentences(600, 7)) + "\n", encoding="utf-8")
    lm = tmp_path / "lm"
    assert main(["lm", "train", "--corpus", str(corpus), "--out", str(lm), "--max-steps", "60", "--hidden-dim", "32",
                 "--embedding-dim", "16", "--batch-size", "8", "--bptt", "16", "--min-count", "1", "--threads", "1",
                 "--quiet"]) == 0
    train = write_conll(tmp_path / "train.conll", make_sentences(200, 0))
    out = tmp_path / "rnn-tagger"
    assert main(["finetune", "--task", "tag", "--train", str(train), "--model", str(lm), "--out", str(out),
                 "--epochs", "8", "--no-gradual-unfreeze", *WORD_FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backbone"] == "rnn-lm" and metrics["test"]["micro_f1"] >= 0.8, metrics["test"]


@pytest.mark.parametrize("content, expected", [
    ("we\tO\nmet\tI-PER\n", "invalid tag sequence"),
    ("we\tO\nmet\n", "malformed line"),
    ("we\tO\nmet\tPER\n", "tag outside the scheme"),
])
def test_bad_tagged_files_exit_2_before_any_model_loads(tmp_path, capsys, content, expected):
    bad = tmp_path / "bad.conll"
    bad.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    # a model that does not exist: the file is reported, so the data was checked first
    assert main(["finetune", "--task", "tag", "--train", str(bad), "--model", "no-such-model",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "line 2" in err and "Traceback" not in err
    assert not out.exists() and not out.with_name("out.partial").exists()


@pytest.mark.parametrize("extra, expected", [
    (["--task", "tag", "--model", "tfidf"], "cannot do --task tag"),
    (["--task", "tag", "--pooling", "mean"], "--pooling applies to one decision per text"),
    (["--task", "single", "--crf"], "--crf applies to --task tag"),
])
def test_what_tagging_cannot_do_is_refused_with_exit_2(data, tmp_path, capsys, extra, expected):
    out = tmp_path / "out"
    assert main(["finetune", "--train", str(data["train"]), *extra, "--out", str(out)]) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists() and not out.with_name("out.partial").exists()


def test_bf16_autocast_trains_a_tagger(data, tiny_bert, tmp_path):
    out = tmp_path / "bf16"
    assert main(["finetune", "--task", "tag", "--train", str(data["train"]), "--model", str(tiny_bert),
                 "--out", str(out), "--epochs", "8", *FAST[:-1], "bf16"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["precision"] == "bf16" and metrics["test"]["micro_f1"] >= 0.8, metrics["test"]


def test_keep_best_and_early_stopping_follow_validation_entity_f1(data, tiny_bert, tmp_path, monkeypatch):
    """The real trainer with the real tag task, the entity F1 it reports made to peak at the
    2nd evaluation (of one every 5 steps) and fall after while the loss goes on improving:
    training stops after --patience 2 evaluations without a better F1 (at step 20) and ends
    with the 2nd evaluation's weights. Following the loss or token accuracy would do neither."""
    from safetensors.torch import load_file

    from nlpft.finetune.tasks.tag import TagTask
    from nlpft.finetune.trainer import KeepBest

    reported_f1 = [0.5, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    evaluations, kept = [], {}
    real_eval_metrics, real_save = TagTask.eval_metrics, KeepBest._save

    def eval_metrics(self, logits, label_ids):
        evaluations.append(real_eval_metrics(self, logits, label_ids))
        return {**evaluations[-1], "micro_f1": reported_f1[min(len(evaluations), len(reported_f1)) - 1]}

    def save(self, model):
        real_save(self, model)
        kept[len(evaluations)] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    monkeypatch.setattr(TagTask, "eval_metrics", eval_metrics)
    monkeypatch.setattr(KeepBest, "_save", save)
    out = tmp_path / "early"
    assert main(["finetune", "--task", "tag", "--train", str(data["train"]), "--model", str(tiny_bert),
                 "--out", str(out), "--epochs", "8", "--eval-every", "5", "--patience", "2", *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    history = metrics["valid_history"]
    assert [h["eval_micro_f1"] for h in history] == reported_f1[:4] and metrics["steps"] == 20
    # the premise: a later evaluation had a lower loss and no lower token accuracy, weights that
    # keep-best following either of those would have taken
    assert any(h["eval_loss"] < history[1]["eval_loss"]
               and h["eval_token_accuracy"] >= history[1]["eval_token_accuracy"] for h in history[2:]), history
    assert sorted(kept) == [1, 2]  # saved when the F1 rose, never after
    final = load_file(out / "model.safetensors")
    assert all(final[k].equal(kept[2][k]) for k in final)


def test_resume_after_sigkill_gives_identical_weights(data, tiny_bert, tmp_path):
    """Killed after its first checkpoint (step 6 of 15 per epoch) and resumed: the same
    weights and test metrics as a run never interrupted."""
    from safetensors.torch import load_file

    args = ["finetune", "--task", "tag", "--train", str(data["train"]), "--model", str(tiny_bert),
            "--checkpoint-every", "6", "--patience", "10", "--epochs", "2", *FAST]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main([*args, "--out", str(straight)]) == 0
    kill_after_first_checkpoint([sys.executable, "-m", "nlpft", *args, "--out", str(resumed)], resumed)
    assert main([*args, "--out", str(resumed), "--resume"]) == 0
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    ma, mb = (json.loads((d / "metrics.json").read_text())["test"] for d in (straight, resumed))
    assert ma == mb


def test_torchrun_two_processes_train_one_tagger(data, tiny_bert, tmp_path, capsys):
    """`--task tag` under torchrun: 2 CPU processes (gloo) of 16 sentences a step each, one
    output directory published (by rank 0), and the tagger in it has learnt."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "nlpft", "finetune", "--task", "tag", "--train", str(data["train"]), "--model", str(tiny_bert),
           "--out", str(out), "--epochs", "8", *FAST]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]  # no partial directory, no second output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["micro_f1"] >= 0.9, metrics["test"]
    assert all(h["eval_micro_f1"] is not None for h in metrics["valid_history"])
    # a step takes 16 sentences on each process: 32 in all
    assert metrics["steps"] == 8 * math.ceil(metrics["train_examples"] / 32)
    assert main(["predict", "--model", str(out), "--text", "we met Peter Jones in Rome today ."]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [(e["type"], e["text"]) for e in found] == [("PER", "Peter Jones"), ("LOC", "Rome")]


def test_stock_pipeline_finds_the_entities_nlpft_predicts(bert_tagger, capsys):
    """transformers' own token-classification pipeline (every subword tagged, "simple"
    aggregation) loads the directory and finds the same (type, start, end) as nlpft."""
    from transformers import pipeline

    texts = ["we met Peter Jones in Rome today .", "they met Alice briefly .", "I met Laura Wilson in London twice ."]
    tagger = pipeline("token-classification", model=str(bert_tagger), aggregation_strategy="simple", device="cpu")
    for text in texts:
        assert main(["predict", "--model", str(bert_tagger), "--text", text]) == 0
        ours = [(e["type"], e["start"], e["end"]) for e in json.loads(capsys.readouterr().out)]
        theirs = [(e["entity_group"], e["start"], e["end"]) for e in tagger(text)]
        assert ours and ours == theirs, text


def test_crf_on_a_transformer_is_saved_beside_a_stock_directory(data, tiny_bert, tmp_path, capsys):
    out = tmp_path / "bert-crf"
    assert main(["finetune", "--task", "tag", "--train", str(data["train"]), "--model", str(tiny_bert), "--crf",
                 "--out", str(out), "--epochs", "8", *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["micro_f1"] >= 0.9, metrics["test"]
    assert (out / "crf.safetensors").is_file() and json.loads((out / "crf.json").read_text())["scheme"] == "iob2"
    text = "we met Peter Jones in Rome today ."
    assert main(["predict", "--model", str(out), "--text", text]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [(e["type"], e["text"]) for e in found] == [("PER", "Peter Jones"), ("LOC", "Rome")]
    assert main(["evaluate", "--model", str(out), "--input", str(data["test"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["micro_f1"] == pytest.approx(metrics["test"]["micro_f1"], abs=0.05)
    from transformers import AutoModelForTokenClassification

    stock = AutoModelForTokenClassification.from_pretrained(str(out))  # the encoder and head, without the CRF
    assert stock.config.id2label[0] in {"O", "B-LOC", "B-PER", "I-LOC", "I-PER"}


def test_tagging_raises_only_a_large_transformers_default_learning_rate():
    from nlpft.finetune.backbones.hf_encoder import HFEncoder
    from nlpft.finetune.backbones.static import StaticVectors
    from nlpft.finetune.tasks.tag import TagOptions, TagTask

    task = TagTask(TagOptions(), ["O", "B-X", "I-X"])
    assert task.default_lr(2e-5, HFEncoder("minilm")) == 1e-4  # MiniLM: 2e-5 left WNUT all O
    assert task.default_lr(5e-4, HFEncoder("tiny")) == 5e-4  # a small transformer's rate is higher already
    assert task.default_lr(2e-3, StaticVectors("w2v")) == 2e-3
