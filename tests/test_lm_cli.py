"""`nlpft lm train | eval | generate` end to end: tiny models, real loops."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nlpft.cli.main import main
from tests.conftest import (first_checkpoint_written, kill_after_first_checkpoint, signal_when,
                            sigterm_during_start_up)

TINY = ["--embedding-dim", "16", "--hidden-dim", "24", "--batch-size", "4", "--bptt", "8", "--min-count", "2",
        "--quiet", "--threads", "1"]


@pytest.fixture
def lm_corpus(tmp_path: Path, lee_path: Path) -> Path:
    """~30k tokens of real news text: a split with held-out text and ~900 BPTT steps an epoch."""
    path = tmp_path / "lee_part.txt"
    lines = lee_path.read_text(encoding="utf-8").splitlines()[:150]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _train(corpus, out, *extra):
    return main(["lm", "train", "--corpus", str(corpus), "--out", str(out), *TINY, *extra])


def _cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "nlpft", *args], capture_output=True, text=True, **kwargs)


def test_train_eval_generate(tmp_path, lm_corpus, capsys):
    out = tmp_path / "lm"
    assert _train(lm_corpus, out, "--epochs", "2") == 0
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json", "metrics.json"}
    assert not (tmp_path / "lm.partial").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 2 and len(metrics["history"]) == 2
    first, last = metrics["history"][0]["valid_ppl"], metrics["history"][-1]["valid_ppl"]
    assert last < first, "validation perplexity falls while training"
    assert metrics["test"]["perplexity"] < metrics["vocab_size"], "better than uniform guessing"
    assert metrics["splits"]["valid"] > 0 and metrics["splits"]["test"] > 0
    capsys.readouterr()

    assert main(["lm", "eval", "--model", str(out), "--corpus", str(lm_corpus), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 1 < result["perplexity"] < metrics["vocab_size"]
    assert result["bits_per_token"] == pytest.approx(result["loss"] / 0.6931471805599453)

    args = ["lm", "generate", "--model", str(out), "--prompt", "The government", "--max-tokens", "12", "--seed", "3"]
    assert main(args) == 0
    once = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == once, "same seed, same sample"
    assert once.startswith("The government") and len(once.split()) >= 8
    assert "[UNK]" not in once and "[PAD]" not in once


def test_generate_edge_cases(tmp_path, lm_corpus, capsys):
    out = tmp_path / "lm"
    assert _train(lm_corpus, out, "--max-steps", "5") == 0
    capsys.readouterr()
    assert main(["lm", "generate", "--model", str(out), "--prompt", "It was", "--max-tokens", "0"]) == 0
    assert capsys.readouterr().out.strip() == "It was"
    assert main(["lm", "generate", "--model", str(out), "--prompt", "zxqv qqqj", "--max-tokens", "5"]) == 2
    assert "unknown to the model's vocabulary" in capsys.readouterr().err
    assert main(["lm", "generate", "--model", str(out), "--max-tokens", "5", "--seed", "1"]) == 0
    assert main(["lm", "generate", "--model", str(tmp_path / "missing")]) == 2


def test_tiny_and_empty_corpora_are_clear_errors(tmp_path, capsys):
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("the cat sat\nthe cat ran\n")
    assert _train(tiny, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "too small" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    short = tmp_path / "short.txt"  # splits fine, but shorter than one BPTT window per batch row
    short.write_text("the cat sat on the mat\n" * 12)
    assert _train(short, tmp_path / "out", "--bptt", "35") == 2
    assert "shorter than one BPTT window" in capsys.readouterr().err
    assert not (tmp_path / "out.partial").exists()
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert _train(empty, tmp_path / "out") == 2
    assert "empty" in capsys.readouterr().err


def test_mismatched_tokenizer_is_a_clear_error(tmp_path, lm_corpus, capsys):
    out = tmp_path / "lm"
    assert _train(lm_corpus, out, "--max-steps", "3") == 0
    from nlpft.tokenization import WordTokenizer

    WordTokenizer.from_vocabulary(["just", "three", "words"]).save(out)
    capsys.readouterr()
    assert main(["lm", "eval", "--model", str(out), "--corpus", str(lm_corpus)]) == 2
    assert "different runs" in capsys.readouterr().err


def test_init_vectors_coverage_and_freeze(tmp_path, lm_corpus):
    vectors = tmp_path / "w2v"
    assert main(["embed", "train", "--corpus", str(lm_corpus), "--out", str(vectors), "--dim", "16",
                 "--min-count", "3", "--epochs", "1", "--quiet"]) == 0
    out = tmp_path / "lm"
    assert _train(lm_corpus, out, "--max-steps", "5", "--init-vectors", str(vectors), "--freeze-embeddings") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    coverage = metrics["init_vectors"]
    assert coverage["coverage"] == 1.0, "the vectors' own tokenizer is used, so every word has a vector"
    from gensim.models import KeyedVectors

    kv = KeyedVectors.load_word2vec_format(str(vectors / "vectors.bin"), binary=True)
    weights = load_file(str(out / "model.safetensors"))
    tokenizer = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]
    import numpy as np

    word = kv.index_to_key[3]
    np.testing.assert_allclose(weights["embedding.weight"][tokenizer[word]].numpy(), kv[word], rtol=1e-6)
    # another tokenizer: coverage is partial and reported
    out2 = tmp_path / "lm2"
    assert _train(lm_corpus, out2, "--max-steps", "3", "--init-vectors", str(vectors / "vectors.bin")) == 0
    partial = json.loads((out2 / "metrics.json").read_text())["init_vectors"]
    assert 0 < partial["coverage"] < 1 and partial["missing"] > 0
    # vectors of another size than --embedding-dim
    assert _train(lm_corpus, tmp_path / "lm3", "--max-steps", "3", "--init-vectors", str(vectors),
                  "--embedding-dim", "32") == 2


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nlpft", *args]


def test_resume_after_sigkill_gives_identical_weights(tmp_path, lm_corpus):
    common = ["lm", "train", "--corpus", str(lm_corpus), *TINY, "--epochs", "2", "--checkpoint-every", "20",
              "--seed", "5"]
    reference = tmp_path / "reference"
    result = _cli(*common, "--out", str(reference))
    assert result.returncode == 0, result.stderr

    out = tmp_path / "killed"
    kill_after_first_checkpoint(_command(*common, "--out", str(out)), out)
    assert not out.exists()
    # a checkpoint that was being written when the process died is skipped
    checkpoints = tmp_path / "killed.partial" / "checkpoint"
    (checkpoints / "step-99999999").mkdir()
    (checkpoints / "step-99999999" / "model.safetensors").write_bytes(b"half written")
    result = _cli(*common, "--out", str(out), "--resume")
    assert result.returncode == 0, result.stderr
    resumed, uninterrupted = load_file(str(out / "model.safetensors")), load_file(str(reference / "model.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert torch.equal(resumed[name], uninterrupted[name]), name
    # and the files themselves: checksums compare models
    assert (out / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"] == json.loads((reference / "metrics.json").read_text())["test"]


def _checkpoint_steps(checkpoints: Path) -> list[int]:
    return sorted(int(marker.parent.name.split("-")[1]) for marker in checkpoints.glob("step-*/complete.json"))


def test_sigterm_writes_checkpoint_and_resume_finishes(tmp_path, lm_corpus):
    """SIGTERM once training runs (its first checkpoint, at step 50, is written): the step
    in progress ends, a checkpoint of it is written, and --resume continues from there."""
    out = tmp_path / "lm"
    args = ["lm", "train", "--corpus", str(lm_corpus), *TINY, "--epochs", "30", "--patience", "100",
            "--checkpoint-every", "50", "--out", str(out)]
    code, err = signal_when(_command(*args), first_checkpoint_written(out), signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM: checkpoint written" in err and "--resume" in err
    steps = _checkpoint_steps(tmp_path / "lm.partial" / "checkpoint")
    assert steps and steps[-1] > 50, f"SIGTERM wrote a checkpoint after the first one: {steps}"
    result = _cli(*args, "--resume", "--epochs", "1")  # the last --epochs wins: finish sooner
    assert result.returncode == 0, result.stderr
    assert f"resuming from step-{steps[-1]:08d}" in result.stderr
    assert json.loads((out / "metrics.json").read_text())["epochs_completed"] >= 1


def test_sigterm_during_start_up_stops_cleanly(tmp_path, lee_path):
    """Before training starts (tokenizing the corpus) there is nothing to checkpoint: the run
    stops at once with 128 + SIGTERM and no traceback, and leaves nothing behind."""
    out = tmp_path / "lm"
    sigterm_during_start_up(_command("lm", "train", "--corpus", str(lee_path), *TINY, "--out", str(out)), out)


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun not installed")
def test_two_processes_with_torchrun(tmp_path, lm_corpus):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "nlpft", "lm", "train", "--corpus", str(lm_corpus),
         "--out", str(out), *TINY, "--max-steps", "6"],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 6
    assert not (tmp_path / "ddp.partial").exists()
