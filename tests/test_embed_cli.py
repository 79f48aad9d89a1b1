"""`nlpft embed ...` end to end, in-process through `main(argv)`."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gensim.models import KeyedVectors

from nlpft.cli.main import main
from tests.conftest import signal_when

FAST = ["--min-count", "2", "--dim", "16", "--quiet"]


def _train(tmp_path, algo, corpus, *extra, out_name=None):
    out = tmp_path / (out_name or algo)
    code = main(["embed", "train", "--algo", algo, "--corpus", str(corpus), "--out", str(out), *FAST, *extra])
    return code, out


def _no_leftovers(out: Path):
    return not out.exists() and not out.with_name(out.name + ".partial").exists()


@pytest.mark.parametrize("algo,extra", [
    ("word2vec", ["--epochs", "2"]),
    ("word2vec", ["--epochs", "1", "--architecture", "cbow", "--loss", "hierarchical"]),
    ("fasttext", ["--epochs", "1", "--buckets", "5000"]),
    ("glove", ["--epochs", "3"]),
])
def test_train_writes_every_output(tmp_path, lee_path, algo, extra):
    code, out = _train(tmp_path, algo, lee_path, *extra)
    assert code == 0
    names = {p.name for p in out.iterdir()}
    assert {"vectors.bin", "vectors.txt", "vectors.glove.txt", "tokenizer.json", "config.json",
            "metrics.json"} <= names
    assert not out.with_name(out.name + ".partial").exists()
    binary = KeyedVectors.load_word2vec_format(str(out / "vectors.bin"), binary=True)
    text = KeyedVectors.load_word2vec_format(str(out / "vectors.txt"), binary=False)
    assert binary.vector_size == 16 and len(binary) == len(text) > 1000
    assert binary.index_to_key == text.index_to_key
    np.testing.assert_allclose(binary.vectors, text.vectors, atol=1e-5)
    assert np.isfinite(binary.vectors).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["corpus"]["tokens"] > 50_000
    assert metrics["corpus"]["vocab_size"] == len(binary)
    assert metrics["train_words_per_s"] > 0 and metrics["final_loss"] is not None
    config = json.loads((out / "config.json").read_text())
    assert config["algo"] == algo and config["dim"] == 16 and config["min_count"] == 2
    assert config["window"] == (15 if algo == "glove" else 5)
    # the tokenizer's vocabulary is the vector table's, in order
    tokenizer = json.loads((out / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    assert [w for w, _ in sorted(vocab.items(), key=lambda kv: kv[1])][2:] == binary.index_to_key
    if algo == "fasttext":
        from gensim.models.fasttext import load_facebook_model

        model = load_facebook_model(str(out / "fasttext.bin"))
        assert model.wv["governmentxyz"].shape == (16,), "subword vectors serve unseen words"


def test_vectors_learn_something(tmp_path, lee_path):
    """A real signal: on the Lee corpus, 'police' should be nearer 'officers' than a random word."""
    code, out = _train(tmp_path, "word2vec", lee_path, "--epochs", "10", "--dim", "50")
    assert code == 0
    kv = KeyedVectors.load_word2vec_format(str(out / "vectors.bin"), binary=True)
    rng = np.random.default_rng(0)
    rand = [kv.index_to_key[i] for i in rng.integers(200, len(kv), 50)]
    baseline = np.mean([kv.similarity("police", w) for w in rand])
    assert kv.similarity("police", "officers") > baseline + 0.1


def test_same_seed_one_thread_is_reproducible(tmp_path, small_corpus):
    vectors = []
    for name in ("a", "b"):
        code, out = _train(tmp_path, "word2vec", small_corpus, "--threads", "1", "--seed", "7", out_name=name)
        assert code == 0
        vectors.append((out / "vectors.bin").read_bytes())
    assert vectors[0] == vectors[1]
    code, out = _train(tmp_path, "word2vec", small_corpus, "--threads", "1", "--seed", "8", out_name="c")
    assert (out / "vectors.bin").read_bytes() != vectors[0]


def test_config_file_matches_flags(tmp_path, small_corpus):
    config = tmp_path / "opts.yaml"
    config.write_text("algo: word2vec\nmin-count: 2\ndim: 16\nthreads: 1\nseed: 3\nepochs: 2\nquiet: true\n"
                      f"corpus: [{small_corpus}]\n")
    assert main(["embed", "train", "--config", str(config), "--out", str(tmp_path / "cfg")]) == 0
    code, out = _train(tmp_path, "word2vec", small_corpus, "--threads", "1", "--seed", "3", "--epochs", "2",
                       out_name="flags")
    assert code == 0
    assert (tmp_path / "cfg" / "vectors.bin").read_bytes() == (out / "vectors.bin").read_bytes()
    # a flag on the command line wins over the file
    assert main(["embed", "train", "--config", str(config), "--dim", "8", "--out", str(tmp_path / "cfg8")]) == 0
    assert json.loads((tmp_path / "cfg8" / "config.json").read_text())["dim"] == 8


def test_config_file_errors(tmp_path, small_corpus, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"dimm": 3}))
    assert main(["embed", "train", "--config", str(bad), "--corpus", str(small_corpus), "--out",
                 str(tmp_path / "o")]) == 2
    assert "unknown option(s) dimm" in capsys.readouterr().err
    assert main(["embed", "train", "--config", str(tmp_path / "missing.yaml"), "--out", "x"]) == 2


@pytest.mark.parametrize("case", ["missing", "empty", "binary", "latin1", "min_count"])
def test_bad_input_exit_2_and_nothing_left(tmp_path, small_corpus, capsys, case):
    corpus = tmp_path / "input.txt"
    extra = []
    if case == "empty":
        corpus.write_text("\n  \n")
    elif case == "binary":
        corpus.write_bytes(bytes(range(256)) * 20)
    elif case == "latin1":
        corpus.write_bytes("caf\xe9\n".encode("latin-1"))
    elif case == "min_count":
        corpus = small_corpus
        extra = ["--min-count", "100000"]
    code = main(["embed", "train", "--corpus", str(corpus), "--out", str(tmp_path / "out"), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert str(corpus) in err or case == "min_count"
    assert _no_leftovers(tmp_path / "out")


def test_memory_cap_refuses_before_training(tmp_path, small_corpus, capsys):
    code = main(["embed", "train", "--corpus", str(small_corpus), "--out", str(tmp_path / "out"), "--quiet",
                 "--min-count", "1", "--max-memory", "0.000001"])
    assert code == 2
    assert "raise --max-memory" in capsys.readouterr().err
    assert _no_leftovers(tmp_path / "out")


def test_bad_option_values_exit_2(tmp_path, small_corpus):
    assert main(["embed", "train", "--corpus", str(small_corpus), "--out", str(tmp_path / "o"), "--dim", "0"]) == 2
    assert main(["embed", "train", "--corpus", str(small_corpus), "--out", str(tmp_path / "o"),
                 "--algo", "bert"]) == 2
    assert main(["embed", "train", "--out", str(tmp_path / "o")]) == 2  # --corpus missing


def test_internal_error_exit_1(tmp_path, small_corpus, monkeypatch):
    import nlpft.runners.embed as runner

    def boom(*a, **k):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(runner, "_train_gensim", boom)
    assert main(["embed", "train", "--corpus", str(small_corpus), "--out", str(tmp_path / "o"), *FAST]) == 1
    assert _no_leftovers(tmp_path / "o")


def test_out_replaced_atomically(tmp_path, small_corpus):
    code, out = _train(tmp_path, "word2vec", small_corpus, "--epochs", "1")
    first = (out / "vectors.bin").read_bytes()
    code, out = _train(tmp_path, "word2vec", small_corpus, "--epochs", "1", "--seed", "5", "--overwrite")
    assert code == 0 and (out / "vectors.bin").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("word2vec")) == ["word2vec"]


def test_max_steps_smoke_path(tmp_path, lee_path):
    code, out = _train(tmp_path, "word2vec", lee_path, "--max-steps", "2")
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["corpus"]["tokens"] == 20_000


def _repeat_corpus(tmp_path, lee_path, times):
    path = tmp_path / "big.txt"
    path.write_text(lee_path.read_text(encoding="utf-8") * times, encoding="utf-8")
    return path


def test_word2vec_resume_after_kill(tmp_path, lee_path):
    """SIGKILL after the first epoch checkpoint, then --resume finishes the run. The run asks
    for far more epochs than the kill can lag behind; the resumed one for a few more than
    were done (--epochs may change on resume)."""
    corpus = _repeat_corpus(tmp_path, lee_path, 2)
    out = tmp_path / "w2v"
    cmd = [sys.executable, "-m", "nlpft", "embed", "train", "--corpus", str(corpus), "--out", str(out),
           "--threads", "1", "--dim", "32", "--quiet"]
    state = out.with_name("w2v.partial") / "checkpoint" / "checkpoint.json"
    code, err = signal_when([*cmd, "--epochs", "1000"], state.exists, signal.SIGKILL)
    assert code == -signal.SIGKILL, err
    assert not out.exists()
    done = json.loads(state.read_text())["epochs_done"]
    assert 1 <= done < 1000
    result = subprocess.run([*cmd, "--epochs", str(done + 2), "--resume"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    kv = KeyedVectors.load_word2vec_format(str(out / "vectors.bin"), binary=True)
    assert np.isfinite(kv.vectors).all() and len(kv) > 1000
    assert len(json.loads((out / "metrics.json").read_text())["losses_per_word"]) == 2, "the epochs left, no more"
    assert not out.with_name("w2v.partial").exists()


def test_sigterm_keeps_the_epoch_checkpoint_and_resume_finishes(tmp_path, lee_path):
    """SIGTERM during training (after the first epoch checkpoint) ends `embed train` with
    128 + SIGTERM and a one-line reason, no traceback; the checkpoint stays for --resume."""
    corpus = _repeat_corpus(tmp_path, lee_path, 2)
    out = tmp_path / "w2v"
    cmd = [sys.executable, "-m", "nlpft", "embed", "train", "--corpus", str(corpus), "--out", str(out),
           "--threads", "1", "--dim", "32", "--quiet"]
    state = out.with_name("w2v.partial") / "checkpoint" / "checkpoint.json"
    code, err = signal_when([*cmd, "--epochs", "1000"], state.exists, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("stopped by SIGTERM"), err
    assert not out.exists() and state.exists()
    done = json.loads(state.read_text())["epochs_done"]
    result = subprocess.run([*cmd, "--epochs", str(done + 1), "--resume"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert len(json.loads((out / "metrics.json").read_text())["losses_per_word"]) == 1


def test_eval_and_neighbors(tmp_path, lee_path, capsys):
    code, out = _train(tmp_path, "word2vec", lee_path, "--epochs", "3")
    assert code == 0
    capsys.readouterr()
    assert main(["embed", "eval", "--vectors", str(out), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results  # structure is checked in test_evaluation.py
    assert main(["embed", "eval", "--vectors", str(out), "--out", str(tmp_path / "ev")]) == 0
    assert (tmp_path / "ev" / "eval.json").is_file()
    capsys.readouterr()
    assert main(["embed", "neighbors", "--vectors", str(out), "police", "--topn", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "police" and len(lines) == 4
    assert main(["embed", "neighbors", "--vectors", str(out), "polize"]) == 2
    assert main(["embed", "eval", "--vectors", str(tmp_path / "nothing")]) == 2


def test_corpus_commands(lee_path, capsys):
    assert main(["corpus", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert any(r["name"] == "lee" and r["available"] for r in rows)
    assert main(["corpus", "stats", str(lee_path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["lines"] == 300 and stats["tokens"] > 55_000 and 0 < stats["types"] < stats["tokens"]


def test_help_is_instant_and_teaches():
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "nlpft", "embed", "train", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0
    assert "--max-steps" in result.stdout and "skipgram" in result.stdout
    heavy = [m for m in ("torch", "gensim", "tokenizers", "numpy") if f"| {m}\n" in result.stderr]
    assert heavy == [], f"--help imported {heavy}"


def test_glove_resume_equals_uninterrupted(tmp_path, small_corpus, monkeypatch):
    """Interrupt GloVe after its first epoch checkpoint; --resume (co-occurrences and AdaGrad
    state restored) must end with the vectors of an uninterrupted one-thread run."""
    from nlpft.embeddings.glove import GloveTrainer

    args = ["--epochs", "3", "--threads", "1", "--seed", "4"]
    code, reference = _train(tmp_path, "glove", small_corpus, *args, out_name="reference")
    assert code == 0

    original = GloveTrainer._save_checkpoint

    def save_then_die(self, directory):
        original(self, directory)
        raise KeyboardInterrupt  # as if Ctrl-C (or SIGKILL) hit right after epoch 1

    monkeypatch.setattr(GloveTrainer, "_save_checkpoint", save_then_die)
    code, out = _train(tmp_path, "glove", small_corpus, *args, out_name="resumed")
    assert code == 130
    assert not out.exists() and (tmp_path / "resumed.partial" / "checkpoint").is_dir()
    monkeypatch.setattr(GloveTrainer, "_save_checkpoint", original)

    counted = []
    import nlpft.embeddings.cooccurrence as cooccurrence

    real_count = cooccurrence.count_cooccurrences
    monkeypatch.setattr(cooccurrence, "count_cooccurrences", lambda *a, **k: counted.append(1) or real_count(*a, **k))
    code, out = _train(tmp_path, "glove", small_corpus, *args, "--resume", out_name="resumed")
    assert code == 0
    assert counted == [], "resume reuses the saved co-occurrence matrix"
    assert (out / "vectors.bin").read_bytes() == (reference / "vectors.bin").read_bytes()
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["losses"]) == 3, "the loss history spans all epochs, restored from the checkpoint"
