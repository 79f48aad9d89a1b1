"""`nlpft finetune | predict | evaluate` with tiny random transformers built in the test,
the TF-IDF baseline, and bad input. The data has a plain signal (sentiment words), so a
few dozen steps must learn it: the assertions can fail."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from nlpft.cli.main import main
from tests.conftest import kill_after_first_checkpoint, save_tiny_bert

POSITIVE = ["good", "great", "excellent", "lovely", "wonderful"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "dreadful"]
NEUTRAL = ["ordinary", "average", "plain", "usual", "standard"]
NOUNS = ["film", "meal", "hotel", "book", "concert", "phone", "game"]


def make_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label, words = [("pos", POSITIVE), ("neg", NEGATIVE), ("neutral", NEUTRAL)][i % 3]
        text = " ".join(f"the {rng.choice(NOUNS)} was {rng.choice(words)} and {rng.choice(words)}"
                        for _ in range(rng.randint(1, 3))) + f" {rng.choice(['again', 'too', 'today'])}"
        rows.append({"text": text, "label": label})
    return rows


def write_csv(path: Path, rows: list[dict], fields=("text", "label")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "reviews.csv", make_rows(300, 0))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, data_csv) -> Path:
    from nlpft.tokenization.subword import train_subword_tokenizer

    lines = [row["text"] for row in make_rows(300, 1)]
    tok = train_subword_tokenizer(lines, "wordpiece", 200, model_max_length=64)
    return save_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert", tok)


@pytest.fixture(scope="module")
def tiny_gpt(tmp_path_factory) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from nlpft.tokenization.subword import train_subword_tokenizer

    lines = [row["text"] for row in make_rows(300, 1)]
    tok = train_subword_tokenizer(lines, "byte-bpe", 400, model_max_length=64)
    torch.manual_seed(0)
    eos = tok.eos_token_id
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=64, n_layer=2, n_head=4,
                                       bos_token_id=eos, eos_token_id=eos))  # no pad id, like GPT-2
    out = tmp_path_factory.mktemp("models") / "tiny-gpt"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


# --method standard: these tests train the transformer itself (with 80 examples per class,
# --method auto would pick the frozen encoder)
# 10% validation and test rows (a file under 400 rows would otherwise hold out 40 test rows)
TENTHS = ["--valid-fraction", "0.1", "--test-fraction", "0.1"]
FAST = ["--epochs", "6", "--lr", "3e-3", "--batch-size", "16", "--max-length", "32", "--threads", "1", "--quiet",
        "--warmup", "0", "--method", "standard", *TENTHS]


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory, data_csv, tiny_bert) -> Path:
    out = tmp_path_factory.mktemp("runs") / "bert-clf"
    # --lr 1e-3: at FAST's 3e-3 this tiny BERT settled on two of the three classes for about
    # one seed in ten (with torch's dropout masks or nlpft's); at 1e-3 it learned on 11 of 11
    assert main(["finetune", "--train", str(data_csv), "--model", str(tiny_bert), "--out", str(out), *FAST,
                 "--lr", "1e-3"]) == 0
    return out


def test_finetune_tiny_bert_learns_and_writes_everything(bert_run):
    metrics = json.loads((bert_run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.9, metrics["test"]
    assert metrics["test_examples"] == 30 and metrics["train_examples"] == 240
    for name in ("config.json", "model.safetensors", "report.md", "confusion_matrix.png", "loss_curve.png",
                 "predictions.csv", "finetune.json"):
        assert (bert_run / name).is_file(), name
    assert not [p for p in bert_run.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl"}]
    config = json.loads((bert_run / "config.json").read_text())
    assert sorted(config["id2label"].values()) == ["neg", "neutral", "pos"]
    with open(bert_run / "predictions.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30 and {"gold", "predicted", "p_pos", "p_neg", "p_neutral"} <= rows[0].keys()
    assert "## Test: accuracy" in (bert_run / "report.md").read_text()


def test_output_works_with_stock_pipeline(bert_run):
    code = f"""
import sys
from transformers import pipeline
clf = pipeline("text-classification", model={str(bert_run)!r})
print(clf("the film was excellent and meal today")[0]["label"])
print(clf("the hotel was dreadful and book too")[0]["label"])
assert not any(m.startswith("nlpft") for m in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["pos", "neg"]


def test_predict_and_evaluate(bert_run, tmp_path, capsys):
    assert main(["predict", "--model", str(bert_run), "--text", "the game was awful and phone again"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "neg"
    rows = make_rows(30, 5)
    rows[3]["text"] = ""  # reported and skipped, the rest still predicted
    source = write_csv(tmp_path / "new.csv", rows)
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(bert_run), "--input", str(source), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 rows without text (rows 5)" in err
    with open(out, encoding="utf-8") as fh:
        predicted = list(csv.DictReader(fh))
    assert len(predicted) == 29
    labeled = write_csv(tmp_path / "labeled.csv", make_rows(60, 6))
    assert main(["evaluate", "--model", str(bert_run), "--input", str(labeled), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] >= 0.9 and len(result["confusion_matrix"]) == 3


def test_evaluate_names_unseen_labels(bert_run, tmp_path, capsys):
    rows = make_rows(12, 7)
    rows[0]["label"] = "mixed"
    rows[1]["label"] = "mixed"
    assert main(["evaluate", "--model", str(bert_run), "--input", str(write_csv(tmp_path / "x.csv", rows))]) == 2
    err = capsys.readouterr().err
    assert "mixed" in err and "2 rows" in err


def test_finetune_gpt_decoder_without_pad_token(data_csv, tiny_gpt, tmp_path):
    out = tmp_path / "gpt-clf"
    assert main(["finetune", "--train", str(data_csv), "--model", str(tiny_gpt), "--out", str(out), *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backbone"] == "hf-decoder" and metrics["test"]["accuracy"] >= 0.8, metrics["test"]
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["GPT2ForSequenceClassification"] and config["pad_token_id"] is not None


def test_mean_pooling_encoder(data_csv, tiny_bert, tiny_gpt, tmp_path, capsys):
    out = tmp_path / "mean-clf"
    assert main(["finetune", "--train", str(data_csv), "--model", str(tiny_bert), "--out", str(out),
                 "--pooling", "mean", "--precision", "fp32", *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.9, metrics["test"]
    assert (out / "pooled_head.safetensors").is_file() and (out / "pooled_head.json").is_file()
    from transformers import AutoModel

    assert type(AutoModel.from_pretrained(out)).__name__ == "BertModel"  # the encoder is a stock directory
    # predict reloads encoder + head: the same probabilities as the test predictions written in
    # training (fp32 both times, so only the printed digits differ; a head or layer left at its
    # initial weights would be far off)
    with open(out / "predictions.csv", encoding="utf-8") as fh:
        test_rows = list(csv.DictReader(fh))
    source = write_csv(tmp_path / "test-again.csv", test_rows)
    again = tmp_path / "again.csv"
    assert main(["predict", "--model", str(out), "--input", str(source), "--out", str(again)]) == 0
    with open(again, encoding="utf-8") as fh:
        predicted = list(csv.DictReader(fh))
    assert [r["predicted"] for r in predicted] == [r["predicted"] for r in test_rows]
    probabilities = [k for k in test_rows[0] if k.startswith("p_")]
    assert len(probabilities) == 3
    assert max(abs(float(a[k]) - float(b[k])) for a, b in zip(predicted, test_rows, strict=True)
               for k in probabilities) <= 1e-5
    capsys.readouterr()
    assert main(["finetune", "--train", str(data_csv), "--model", str(tiny_gpt), "--out", str(tmp_path / "x"),
                 "--pooling", "mean", *FAST]) == 2
    assert f"--pooling applies to BERT-style encoders (--model minilm, ...), not to --model {tiny_gpt}" in \
        capsys.readouterr().err


def test_tokenizer_model_mismatch_is_a_clear_error(data_csv, tiny_bert, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken-bert"
    shutil.copytree(tiny_bert, broken)
    config = json.loads((broken / "config.json").read_text())
    config["vocab_size"] = 50  # fewer embedding rows than the tokenizer has ids
    (broken / "config.json").write_text(json.dumps(config))
    assert main(["finetune", "--train", str(data_csv), "--model", str(broken), "--out", str(tmp_path / "x"),
                 *FAST]) == 2
    err = capsys.readouterr().err
    assert "the tokenizer has" in err and "50 rows" in err and not (tmp_path / "x").exists()


def test_progress_reports_classifier_metrics_not_perplexity(data_csv, tiny_bert, tmp_path, capsys):
    """The evaluation lines of a classifier show its accuracy and macro F1; exp(loss) means
    nothing for a classifier and is left out."""
    args = ["finetune", "--train", str(data_csv), "--model", str(tiny_bert), "--out", str(tmp_path / "out"),
            "--epochs", "1", "--max-steps", "2", "--eval-every", "2", "--max-length", "32", "--threads", "1",
            "--method", "standard"]
    assert main(args) == 0
    captured = capsys.readouterr()
    printed = (captured.out + captured.err).replace("\r", "\n")
    lines = [line for line in printed.splitlines() if line.startswith("step 2:")]
    assert lines and "accuracy" in lines[0] and "macro f1" in lines[0], printed[-2000:]
    assert "perplexity" not in printed


def test_precision_auto_picks_bf16_only_for_transformers_on_bf16_hardware(monkeypatch):
    from nlpft.errors import UserInputError
    from nlpft.training import precision

    monkeypatch.setattr(precision, "bf16_is_native", lambda: True)
    assert precision.resolve_precision("auto") == "bf16"
    assert precision.resolve_precision("auto", transformer=False) == "fp32"
    assert precision.resolve_precision("fp32") == "fp32"
    monkeypatch.setattr(precision, "bf16_is_native", lambda: False)
    assert precision.resolve_precision("auto") == "fp32" and precision.resolve_precision("bf16") == "bf16"
    with pytest.raises(UserInputError, match="fp16"):
        precision.resolve_precision("fp16")


def test_tfidf_baseline_and_reload(data_csv, tmp_path, capsys):
    out = tmp_path / "tfidf"
    assert main(["finetune", "--train", str(data_csv), "--model", "tfidf", "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.95
    assert not [p for p in out.iterdir() if p.suffix in {".pkl", ".joblib", ".bin"}]
    assert main(["predict", "--model", str(out), "--text", "the concert was lovely and book today"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "pos"
    # the model read back from disk scores the test split exactly as the trained one did
    with open(out / "predictions.csv", encoding="utf-8") as fh:
        trained = list(csv.DictReader(fh))
    source = write_csv(tmp_path / "test.csv", trained, fields=("text",))
    assert main(["predict", "--model", str(out), "--input", str(source), "--out", str(tmp_path / "p.csv")]) == 0
    with open(tmp_path / "p.csv", encoding="utf-8") as fh:
        reloaded = list(csv.DictReader(fh))
    probabilities = [k for k in trained[0] if k.startswith("p_")]
    assert [[r[k] for k in probabilities] for r in reloaded] == [[r[k] for k in probabilities] for r in trained]


def test_multilabel_and_regression_tfidf(tmp_path):
    rng = random.Random(3)
    rows = []
    for _ in range(240):
        tags = [t for t in ("food", "price", "staff") if rng.random() < 0.45] or ["food"]
        words = {"food": "tasty soup", "price": "cheap bill", "staff": "friendly waiter"}
        rows.append({"text": " and ".join(words[t] for t in tags) + " here", "label": ";".join(tags),
                     "score": str(len(tags) + rng.random() * 0.1)})
    multi = write_csv(tmp_path / "multi.csv", rows)
    out = tmp_path / "multi"
    assert main(["finetune", "--train", str(multi), "--model", "tfidf", "--task", "multi", "--out", str(out),
                 "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["micro_f1"] >= 0.9
    assert len(json.loads((out / "finetune.json").read_text())["task"]["thresholds"]) == 3
    reg = write_csv(tmp_path / "reg.csv", rows, fields=("text", "score"))
    out = tmp_path / "reg"
    assert main(["finetune", "--train", str(reg), "--model", "tfidf", "--task", "regression", "--label-col", "score",
                 "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "metrics.json").read_text())["test"]["spearman"] > 0.8


@pytest.mark.parametrize("backbone", ["transformer", "tfidf"])
def test_sentence_pairs_use_both_texts(tiny_bert, tmp_path, capsys, backbone):
    """The label is the sentiment of the *second* text, so only a model that reads the pair
    can learn it; predict needs the second text too, and the saved model scores as trained."""
    first, second = make_rows(300, 11), make_rows(300, 12)
    random.Random(0).shuffle(second)
    rows = [{"text": a["text"], "second": b["text"], "label": b["label"]} for a, b in zip(first, second, strict=True)]
    data = write_csv(tmp_path / "pairs.csv", rows, fields=("text", "second", "label"))
    out = tmp_path / "pairs"
    model = ["--model", str(tiny_bert), *FAST, "--max-length", "64"] if backbone == "transformer" else \
        ["--model", "tfidf", "--quiet"]
    assert main(["finetune", "--train", str(data), "--text-pair-col", "second", "--out", str(out), *model]) == 0
    assert json.loads((out / "metrics.json").read_text())["test"]["accuracy"] >= 0.9
    assert main(["evaluate", "--model", str(out), "--input", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] >= 0.9  # reloaded from disk
    with open(out / "predictions.csv", encoding="utf-8") as fh:
        assert next(csv.reader(fh))[:4] == ["row", "text", "text_pair", "gold"]
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "--text", "the film was lovely and good"]) == 2
    assert "--text-pair" in capsys.readouterr().err
    assert main(["predict", "--model", str(out), "--text", "the film was lovely and good",
                 "--text-pair", "the meal was awful and dreadful"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "neg"


@pytest.mark.parametrize("task", ["multi", "regression"])
def test_multilabel_and_regression_heads_on_a_transformer(tiny_bert, tmp_path, task):
    """The other two heads on a transformer: per-label thresholds tuned and saved (multi),
    one output scored by Spearman (regression); config.json tells stock transformers which."""
    rng = random.Random(3)
    phrases = {"good": "the film was good", "bad": "the meal was awful", "usual": "the hotel was usual"}
    rows = []
    for _ in range(300):
        tags = [t for t in phrases if rng.random() < 0.45] or ["good"]
        rows.append({"text": " and ".join(phrases[t] for t in tags) + " today", "label": ";".join(tags),
                     "score": str(len(tags) + rng.random() * 0.1)})
    label_col = "label" if task == "multi" else "score"
    data = write_csv(tmp_path / "data.csv", rows, fields=("text", label_col))
    out = tmp_path / task
    assert main(["finetune", "--train", str(data), "--task", task, "--label-col", label_col,
                 "--model", str(tiny_bert), "--out", str(out), *FAST, "--max-length", "48"]) == 0
    test = json.loads((out / "metrics.json").read_text())["test"]
    config = json.loads((out / "config.json").read_text())
    if task == "multi":
        assert test["micro_f1"] >= 0.9, test
        assert config["problem_type"] == "multi_label_classification"
        assert len(json.loads((out / "finetune.json").read_text())["task"]["thresholds"]) == 3
    else:
        assert test["spearman"] >= 0.8, test
        assert config["problem_type"] == "regression"


def test_bad_csv_fails_before_model_loads(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("review,label\nfine,pos\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["finetune", "--train", str(path), "--model", "no-such-model", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "text" in err and "--text-col" in err  # the column, not the model, is reported
    assert not out.exists() and not out.with_name("out.partial").exists()


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_resume_after_sigkill_mid_epoch_gives_same_metrics(data_csv, tiny_bert, tmp_path, pooling):
    """Killed mid-epoch (checkpoint at step 8 of 15 per epoch) and resumed: the same weights
    and test metrics as a run that was never interrupted (the mean-pooling classifier keeps
    its head in a second file, so its checkpoints load through their own path)."""
    from safetensors.torch import load_file

    args = ["finetune", "--train", str(data_csv), "--model", str(tiny_bert), "--checkpoint-every", "8",
            "--patience", "10", "--pooling", pooling, *FAST[:1], "2", *FAST[2:]]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main([*args, "--out", str(straight)]) == 0
    kill_after_first_checkpoint([sys.executable, "-m", "nlpft", *args, "--out", str(resumed)], resumed)
    assert main([*args, "--out", str(resumed), "--resume"]) == 0
    files = ["model.safetensors"] + (["pooled_head.safetensors"] if pooling == "mean" else [])
    for name in files:
        a, b = load_file(straight / name), load_file(resumed / name)
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a), name
        assert (straight / name).read_bytes() == (resumed / name).read_bytes(), name
    ma, mb = (json.loads((d / "metrics.json").read_text())["test"] for d in (straight, resumed))
    assert ma == mb


def test_torchrun_two_processes(data_csv, tiny_bert, tmp_path):
    """The same command under torchrun: 2 CPU processes (gloo), one output directory."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "nlpft", "finetune", "--train", str(data_csv), "--model", str(tiny_bert), "--out", str(out),
           *FAST, "--patience", "10"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.8, metrics["test"]
    # 240 examples / (16 per process x 2 processes) = 8 steps per epoch, 6 epochs
    assert metrics["steps"] == 48
    assert not out.with_name("ddp.partial").exists()


@pytest.fixture(scope="module")
def review_text(tmp_path_factory) -> Path:
    """Unlabeled review text for pretraining; each line ends with a reaction that depends on
    the sentiment words, so a language model must carry the sentiment forward to predict it."""
    reaction = {"pos": "so i liked it", "neg": "so i hated it", "neutral": "so i shrugged"}
    path = tmp_path_factory.mktemp("text") / "reviews.txt"
    path.write_text("\n".join(f"{r['text']} {reaction[r['label']]}" for r in make_rows(600, 11)) + "\n",
                    encoding="utf-8")
    return path


def test_static_vectors_backbone(data_csv, review_text, tmp_path, capsys):
    vectors = tmp_path / "w2v"
    assert main(["embed", "train", "--algo", "word2vec", "--corpus", str(review_text), "--out", str(vectors),
                 "--dim", "32", "--min-count", "1", "--epochs", "3", "--threads", "1", "--quiet"]) == 0
    out = tmp_path / "static"
    assert main(["finetune", "--train", str(data_csv), "--model", str(vectors), "--out", str(out), "--epochs", "8",
                 "--lr", "5e-3", "--threads", "1", "--quiet", "--warmup", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backbone"] == "static" and metrics["test"]["accuracy"] >= 0.9, metrics["test"]
    assert 0.0 <= metrics["unknown_token_rate"]["train"] < 0.05  # vectors trained on this very text
    assert (out / "tokenizer.json").is_file() and (out / "classifier.json").is_file()
    assert main(["predict", "--model", str(out), "--text", "the hotel was wonderful and lovely today"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "pos"


def test_rnn_lm_backbone_ulmfit(data_csv, review_text, tmp_path, capsys):
    lm = tmp_path / "lm"
    assert main(["lm", "train", "--corpus", str(review_text), "--out", str(lm), "--max-steps", "300",
                 "--hidden-dim", "64", "--embedding-dim", "32", "--batch-size", "8", "--bptt", "16", "--min-count", "1",
                 "--threads", "1", "--quiet"]) == 0
    out = tmp_path / "rnn"
    # a toy LM carries little of the sentiment forward, so every layer learns from the start at the
    # full rate here (the ULMFiT schedule itself is checked in test_ulmfit_schedule)
    assert main(["finetune", "--train", str(data_csv), "--model", str(lm), "--out", str(out), "--epochs", "6",
                 "--lr", "5e-3", "--layer-lr-factor", "1", "--no-gradual-unfreeze", "--threads", "1", "--quiet",
                 "--warmup", "0",
                 "--patience", "6"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backbone"] == "rnn-lm" and metrics["test"]["accuracy"] >= 0.8, metrics["test"]
    meta = json.loads((out / "finetune.json").read_text())
    assert meta["text_framing"]["prefix_ids"]  # texts framed by [EOS] like the LM's lines
    assert main(["evaluate", "--model", str(out), "--input", str(data_csv), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] >= 0.8


def test_ulmfit_schedule():
    """Discriminative rates fall by the factor down the stack; gradual unfreezing opens one
    more group per epoch and never opens a parameter frozen on purpose."""
    import torch
    from transformers import TrainerControl, TrainerState

    from nlpft.finetune.trainer import GradualUnfreeze, discriminative_optimizer
    from nlpft.finetune.word_models import WordClassifier, WordClassifierConfig
    from nlpft.lm.model import RNNLMConfig

    rnn = RNNLMConfig(vocab_size=20, embedding_dim=8, hidden_dim=8, num_layers=2).to_dict()
    model = WordClassifier(WordClassifierConfig(kind="rnn-lm", num_labels=2, vocab_size=20, embedding_dim=8,
                                                rnn=rnn, freeze_embeddings=True))
    groups = model.layer_groups()
    assert len(groups) == 4  # head, top LSTM, bottom LSTM, embedding
    optimizer = discriminative_optimizer(groups, 1e-2, 0.0, factor=2.0)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-2, 5e-3, 2.5e-3, 1.25e-3]
    unfreeze = GradualUnfreeze(groups)
    state, control = TrainerState(), TrainerControl()
    for epoch, expected in ((0, [True, False, False, False]), (1, [True, True, False, False]),
                            (5, [True, True, True, False])):  # the embedding stays frozen
        state.epoch = float(epoch)
        unfreeze.on_epoch_begin(None, state, control)
        assert [all(p.requires_grad for p in g) for g in groups] == expected
    assert isinstance(optimizer, torch.optim.AdamW)


def test_patience_waits_for_gradual_unfreezing(tmp_path):
    """While gradual unfreezing still holds layers back, a flat validation score does not stop
    training; from the epoch every layer trains, it does."""
    from transformers import TrainerControl, TrainerState

    from nlpft.finetune.trainer import KeepBest

    keep = KeepBest(tmp_path / "best", metric="macro_f1", greater_is_better=True, patience=2,
                    patience_from_epoch=4.0)
    state, control = TrainerState(), TrainerControl()
    args = SimpleNamespace(should_save=False)
    stopped_at = None
    for epoch in range(1, 9):
        state.epoch = float(epoch)
        keep.on_evaluate(args, state, control, metrics={"eval_macro_f1": 0.5, "eval_loss": 1.0})
        if control.should_training_stop:
            stopped_at = epoch
            break
    assert stopped_at == 5  # evaluations at epochs 4 and 5 count; 2 and 3 did not
    replay = KeepBest(tmp_path / "best", metric="macro_f1", greater_is_better=True, patience=2,
                      patience_from_epoch=4.0)
    state.log_history = [{"eval_macro_f1": 0.5, "eval_loss": 1.0, "epoch": float(e)} for e in range(1, 5)]
    replay.on_train_begin(None, state, control)
    assert replay.bad_evaluations == 1  # a resumed run counts the same way


def test_default_learning_rate_by_model_size():
    from nlpft.finetune.backbones.hf_common import SMALL_MODEL, SMALL_MODEL_LR
    from nlpft.finetune.backbones.hf_decoder import HFDecoder
    from nlpft.finetune.backbones.hf_encoder import HFEncoder
    from nlpft.finetune.backbones.static import StaticVectors

    assert HFEncoder("minilm").default_lr(22_700_000) == 2e-5
    assert HFDecoder("gpt").default_lr(SMALL_MODEL - 1) == SMALL_MODEL_LR
    assert StaticVectors("vectors.bin").default_lr(1_000_000) == 2e-3  # word-level models keep their own


def test_unknown_words_are_counted(tmp_path):
    from nlpft.finetune.data import encode_examples
    from nlpft.tokenization import WordTokenizer

    tokenizer = WordTokenizer.from_vocabulary(["the", "film", "was", "good"])
    encoded = encode_examples(tokenizer, ["the film was good", "the zzz was qqq"], None, max_length=16)
    assert (encoded.tokens, encoded.unknown) == (8, 2) and encoded.unknown_rate == 0.25


def test_bundled_polarity_dataset(tmp_path):
    """`--train polarity` is the 200-sentence CSV installed with nlpft (README command 1)."""
    from nlpft.data.labeled import read_labeled
    from nlpft.data.registry import load_registry, resolve_labeled_file

    path = Path(resolve_labeled_file("polarity"))
    data = read_labeled(path)
    assert len(data) == 200 and data.label_counts() == {"neg": 100, "pos": 100}
    assert load_registry()["polarity"].verify()  # the checksum in the registry matches the file
    out = tmp_path / "pol"
    assert main(["finetune", "--train", "polarity", "--model", "tfidf", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "metrics.json").read_text())["test_examples"] == 40  # a small file keeps 40 test rows
