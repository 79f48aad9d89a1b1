"""Training integrity: a diverged run stops with exit 2 and publishes nothing, inference
refuses weights that are not finite, `--resume` refuses other inputs or shapes, and weight
files are byte-for-byte reproducible (safetensors headers in a fixed order)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from nlpft.cli.main import main
from nlpft.errors import Interrupted
from tests.test_finetune import data_csv, make_rows, tiny_bert, write_csv  # noqa: F401 (fixtures)

LM_TINY = ["--embedding-dim", "16", "--hidden-dim", "24", "--batch-size", "4", "--bptt", "8", "--min-count", "2",
           "--quiet", "--threads", "1"]
FINETUNE_FAST = ["--batch-size", "16", "--max-length", "32", "--threads", "1", "--quiet", "--warmup", "0",
                 "--method", "standard"]  # the trained transformer, not the frozen one auto picks on small data


@pytest.fixture
def lm_corpus(tmp_path: Path, lee_path: Path) -> Path:
    path = tmp_path / "lee_part.txt"
    path.write_text("\n".join(lee_path.read_text(encoding="utf-8").splitlines()[:150]) + "\n", encoding="utf-8")
    return path


def _same_words_other_order(corpus: Path, tmp_path: Path) -> Path:
    """The corpus with its lines reversed: the same vocabulary and size, other training data."""
    other = tmp_path / "reordered.txt"
    other.write_text("\n".join(reversed(corpus.read_text(encoding="utf-8").splitlines())) + "\n", encoding="utf-8")
    return other


def _stop_after_first_checkpoint(monkeypatch, owner, method: str) -> None:
    """Make `owner.method` (a checkpoint writer) stop the run like SIGTERM once it has written."""
    original = getattr(owner, method)

    def save_then_stop(*args, **kwargs):
        original(*args, **kwargs)
        raise Interrupted("SIGTERM")

    monkeypatch.setattr(owner, method, save_then_stop)


def _all_finite(path: Path) -> bool:
    return all(bool(t.isfinite().all()) for t in load_file(str(path)).values() if t.is_floating_point())


def _poison(weights: Path) -> None:
    """Overwrite every floating-point weight in a safetensors file with NaN."""
    tensors = load_file(str(weights))
    save_file({name: torch.full_like(t, math.nan) if t.is_floating_point() else t for name, t in tensors.items()},
              str(weights), metadata={"format": "pt"})


# -- divergence ------------------------------------------------------------------------------
def test_lm_divergence_is_exit_2_keeps_a_finite_checkpoint_and_publishes_nothing(tmp_path, lm_corpus, capsys):
    out = tmp_path / "lm"
    code = main(["lm", "train", "--corpus", str(lm_corpus), "--out", str(out), *LM_TINY, "--lr", "1e9",
                 "--max-steps", "30", "--checkpoint-every", "1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "training diverged at step" in err and "lower --lr" in err
    assert not out.exists()
    checkpoints = sorted((tmp_path / "lm.partial" / "checkpoint").glob("step-*/model.safetensors"))
    assert checkpoints and all(_all_finite(path) for path in checkpoints)


def test_finetune_divergence_is_exit_2_and_publishes_nothing(data_csv, tiny_bert, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "clf"
    code = main(["finetune", "--train", str(data_csv), "--model", str(tiny_bert), "--out", str(out),
                 *FINETUNE_FAST, "--lr", "1e9", "--max-steps", "12", "--checkpoint-every", "1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "training diverged at step" in err and "lower --lr" in err
    assert not out.exists()
    checkpoints = sorted((tmp_path / "clf.partial" / "checkpoint").glob("checkpoint-*/model.safetensors"))
    assert all(_all_finite(path) for path in checkpoints)


def test_pretrain_divergence_is_exit_2_and_publishes_nothing(tmp_path, lm_corpus, capsys):
    out = tmp_path / "gpt"
    code = main(["pretrain", "--arch", "gpt2", "--corpus", str(lm_corpus), "--out", str(out), "--size", "tiny",
                 "--block-size", "32", "--batch-size", "4", "--vocab-size", "300", "--max-eval-blocks", "4",
                 "--max-steps", "8", "--checkpoint-every", "1", "--lr", "1e9", "--quiet", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "training diverged at step" in err and not out.exists()


def test_glove_divergence_is_exit_2_and_publishes_nothing(tmp_path, lm_corpus, capsys):
    out = tmp_path / "glove"
    code = main(["embed", "train", "--algo", "glove", "--corpus", str(lm_corpus), "--out", str(out), "--dim", "8",
                 "--min-count", "1", "--epochs", "3", "--threads", "1", "--quiet", "--glove-lr", "1e9"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "training diverged at epoch 1" in err and "lower --glove-lr" in err
    assert not out.exists()


def test_word2vec_epoch_with_non_finite_vectors_stops_before_its_checkpoint(tmp_path):
    """gensim skips updates whose dot products leave its sigmoid table, so its vectors hardly
    ever blow up; if they do, the epoch end refuses to checkpoint or go on."""
    from gensim.models import Word2Vec

    from nlpft.embeddings.config import EmbeddingConfig
    from nlpft.embeddings.word2vec import CHECKPOINT_WEIGHTS, _EpochCheckpoint
    from nlpft.training.divergence import TrainingDiverged

    model = Word2Vec(vector_size=4, min_count=1)
    model.build_vocab([["a", "b", "c"]])
    model.wv.vectors[1, 2] = math.inf
    callback = _EpochCheckpoint(tmp_path, 0, EmbeddingConfig().resolved(), None)
    with pytest.raises(TrainingDiverged, match="training diverged at epoch 1: weights NaN or infinite"):
        callback.on_epoch_end(model)
    assert not (tmp_path / CHECKPOINT_WEIGHTS).exists()


def test_predict_and_evaluate_refuse_nan_weights(data_csv, tiny_bert, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "clf"
    assert main(["finetune", "--train", str(data_csv), "--model", str(tiny_bert), "--out", str(out),
                 *FINETUNE_FAST, "--max-steps", "2"]) == 0
    _poison(out / "model.safetensors")
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "--text", "the film was good"]) == 2
    assert "NaN" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(out), "--input", str(data_csv)]) == 2
    assert "NaN" in capsys.readouterr().err


def test_lm_eval_and_generate_refuse_nan_weights(tmp_path, lm_corpus, capsys):
    out = tmp_path / "lm"
    assert main(["lm", "train", "--corpus", str(lm_corpus), "--out", str(out), *LM_TINY, "--max-steps", "3"]) == 0
    _poison(out / "model.safetensors")
    capsys.readouterr()
    assert main(["lm", "generate", "--model", str(out), "--prompt", "the"]) == 2
    assert "NaN" in capsys.readouterr().err
    assert main(["lm", "eval", "--model", str(out), "--corpus", str(lm_corpus)]) == 2
    assert "NaN" in capsys.readouterr().err


# -- resume fingerprint ----------------------------------------------------------------------
def test_lm_resume_refuses_another_corpus_or_split(tmp_path, lm_corpus, monkeypatch, capsys):
    from nlpft.lm.trainer import LMTrainer

    out = tmp_path / "lm"
    args = ["lm", "train", "--out", str(out), *LM_TINY, "--epochs", "1", "--checkpoint-every", "5"]
    with monkeypatch.context() as patch:
        _stop_after_first_checkpoint(patch, LMTrainer, "save_checkpoint")
        assert main([*args, "--corpus", str(lm_corpus)]) != 0
    assert (tmp_path / "lm.partial" / "checkpoint").is_dir()
    capsys.readouterr()

    other = _same_words_other_order(lm_corpus, tmp_path)
    assert main([*args, "--corpus", str(other), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--corpus differs" in err and "sha256" in err
    assert main([*args, "--corpus", str(lm_corpus), "--valid-fraction", "0.1", "--resume"]) == 2
    assert "--valid-fraction differs from the checkpoint's (0.05 vs 0.1)" in capsys.readouterr().err
    assert not out.exists() and (tmp_path / "lm.partial" / "checkpoint").is_dir()  # kept for a proper resume


def test_finetune_resume_refuses_another_csv(data_csv, tiny_bert, tmp_path, monkeypatch, capsys):  # noqa: F811
    from nlpft.training.hf import SafeCheckpointTrainer

    out = tmp_path / "clf"
    args = ["finetune", "--model", str(tiny_bert), "--out", str(out), *FINETUNE_FAST, "--max-steps", "6",
            "--checkpoint-every", "2"]
    with monkeypatch.context() as patch:
        _stop_after_first_checkpoint(patch, SafeCheckpointTrainer, "_save_checkpoint")
        assert main([*args, "--train", str(data_csv)]) != 0
    capsys.readouterr()
    other = write_csv(tmp_path / "other.csv", make_rows(300, 7))  # the same labels, other texts
    assert main([*args, "--train", str(other), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--train differs" in err and "sha256" in err
    assert main([*args, "--train", str(data_csv), "--max-length", "48", "--resume"]) == 2
    assert "--max-length differs from the checkpoint's (32 vs 48)" in capsys.readouterr().err


@pytest.mark.parametrize("algo", ["word2vec", "glove"])
def test_embed_resume_refuses_another_corpus(algo, tmp_path, small_corpus, monkeypatch, capsys):
    from nlpft.embeddings import glove, word2vec

    out = tmp_path / "vectors"
    args = ["embed", "train", "--algo", algo, "--out", str(out), "--dim", "8", "--min-count", "1", "--epochs", "3",
            "--threads", "1", "--quiet"]
    with monkeypatch.context() as patch:
        if algo == "glove":
            _stop_after_first_checkpoint(patch, glove.GloveTrainer, "_save_checkpoint")
        else:
            _stop_after_first_checkpoint(patch, word2vec, "save_checkpoint")
        assert main([*args, "--corpus", str(small_corpus)]) != 0
    capsys.readouterr()
    other = _same_words_other_order(small_corpus, tmp_path)
    assert main([*args, "--corpus", str(other), "--resume"]) == 2
    assert "--corpus differs" in capsys.readouterr().err
    assert main([*args, "--corpus", str(small_corpus), "--dim", "16", "--resume"]) == 2
    assert "--dim differs from the checkpoint's (8 vs 16)" in capsys.readouterr().err


def test_pretrain_resume_refuses_another_corpus(tmp_path, lm_corpus, monkeypatch, capsys):
    from nlpft.training.hf import SafeCheckpointTrainer

    out = tmp_path / "gpt"
    args = ["pretrain", "--arch", "gpt2", "--out", str(out), "--size", "tiny", "--block-size", "32",
            "--batch-size", "4", "--vocab-size", "300", "--eval-every", "5", "--max-eval-blocks", "4",
            "--max-steps", "6", "--checkpoint-every", "2", "--quiet", "--threads", "1"]
    with monkeypatch.context() as patch:
        _stop_after_first_checkpoint(patch, SafeCheckpointTrainer, "_save_checkpoint")
        assert main([*args, "--corpus", str(lm_corpus)]) != 0
    capsys.readouterr()
    other = _same_words_other_order(lm_corpus, tmp_path)
    assert main([*args, "--corpus", str(other), "--resume"]) == 2
    assert "--corpus differs" in capsys.readouterr().err


def test_fingerprint_names_each_difference(tmp_path):
    from nlpft.data.fingerprint import differences, fingerprint

    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("one\n")
    b.write_text("two\n")
    before = fingerprint({"--corpus": [a], "--model": "minilm"}, {"--dim": 8, "--seed": 1})
    assert differences(before, fingerprint({"--corpus": [a], "--model": "minilm"}, {"--dim": 8, "--seed": 1})) == []
    found = differences(before, fingerprint({"--corpus": [b], "--model": "tfidf"}, {"--dim": 16, "--seed": 1}))
    assert len(found) == 3
    assert found[0].startswith("--corpus differs from the checkpoint's (sha256 ")
    assert found[1] == "--model differs from the checkpoint's (minilm vs tfidf)"
    assert found[2] == "--dim differs from the checkpoint's (8 vs 16)"


# -- reproducible files ----------------------------------------------------------------------
def test_weight_files_are_byte_identical_for_identical_weights(tmp_path):
    """safetensors keeps header metadata in a hash map whose order changes from save to save;
    the same weights must give the same bytes, so checksums compare models."""
    from nlpft.lm.model import RNNLanguageModel, RNNLMConfig

    torch.manual_seed(0)
    model = RNNLanguageModel(RNNLMConfig(vocab_size=30, embedding_dim=8, hidden_dim=8, num_layers=1))
    saved = set()
    for attempt in range(16):  # the unsorted order repeats by chance once in 2**15 runs
        model.save_pretrained(tmp_path / f"copy{attempt}")
        saved.add((tmp_path / f"copy{attempt}" / "model.safetensors").read_bytes())
    assert len(saved) == 1
    header_length = int.from_bytes(next(iter(saved))[:8], "little")
    header = json.loads(next(iter(saved))[8:8 + header_length], object_pairs_hook=list)
    metadata = dict(header)["__metadata__"]
    assert [key for key, _ in metadata] == sorted(key for key, _ in metadata)


def test_keep_best_never_saves_weights_that_score_a_nan_loss(tmp_path):
    """The first evaluation of a run that has just diverged scores a NaN loss but a finite
    accuracy (argmax of NaN logits); those weights must not become the best."""
    from types import SimpleNamespace

    from nlpft.finetune.trainer import KeepBest

    saved = []
    keep_best = KeepBest(tmp_path / "best", metric="macro_f1", greater_is_better=True,
                         save=lambda model, directory: saved.append(directory))
    state = SimpleNamespace(global_step=4, epoch=0.5, log_history=[])
    args, control = SimpleNamespace(should_save=True), SimpleNamespace(should_training_stop=False)
    keep_best.on_evaluate(args, state, control, metrics={"eval_loss": math.nan, "eval_macro_f1": 0.33},
                          model=object())
    assert saved == [] and keep_best.best is None
