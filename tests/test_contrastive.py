"""Contrastive (SetFit-style) tuning: the pairs it draws, and what tuning does to a tiny random
BERT built in the test. The texts carry a plain signal (topic words), so a few dozen steps
must pull same-class embeddings together: the assertions can fail."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from nlpft.errors import UserInputError
from nlpft.finetune.contrastive import (
    check_enough_examples,
    contrastive_pairs,
    tune_encoder,
    write_sentence_transformers_files,
)
from tests.conftest import save_tiny_bert

TOPICS = {
    "sport": ["goal", "match", "team", "coach", "league"],
    "tech": ["chip", "software", "laptop", "server", "code"],
    "food": ["soup", "bread", "cheese", "recipe", "oven"],
}
FILLER = ["the", "a", "today", "was", "about", "new", "story"]


def topic_rows(per_class: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(per_class):
        for label, words in TOPICS.items():
            mixed = rng.sample(words, 3) + rng.sample(FILLER, 3)
            rng.shuffle(mixed)
            texts.append(" ".join(mixed))
            labels.append(label)
    return texts, labels


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    from nlpft.tokenization.subword import train_subword_tokenizer

    texts, _ = topic_rows(40, seed=1)
    tok = train_subword_tokenizer(texts, "wordpiece", 120, model_max_length=32)
    return save_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert", tok, hidden_size=32, heads=2,
                          positions=32)


def load(directory: Path):
    from nlpft.pretrained.encode import SentenceEncoder

    return SentenceEncoder.load(str(directory), quiet=True)


def class_margin(encoder, texts: list[str], labels: list[str]) -> tuple[float, float]:
    """Mean cosine of same-class pairs and of different-class pairs (self-pairs left out)."""
    vectors = encoder.encode(texts, normalize=True)
    cosines = vectors @ vectors.T
    same = np.equal.outer(labels, labels)
    off_diagonal = ~np.eye(len(texts), dtype=bool)
    return float(cosines[same & off_diagonal].mean()), float(cosines[~same].mean())


# -- pairs -----------------------------------------------------------------------------------
def test_pairs_count_targets_and_no_self_pairs():
    labels = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    pairs = contrastive_pairs([{label} for label in labels], iterations=3, seed=0)
    positives = [(i, j) for i, j, target in pairs if target == 1.0]
    negatives = [(i, j) for i, j, target in pairs if target == 0.0]
    assert len(positives) == len(negatives) == 3 * len(labels)  # SetFit's counts
    assert len(pairs) == len(positives) + len(negatives)
    assert all(labels[i] == labels[j] and i != j for i, j in positives)
    assert all(labels[i] != labels[j] for i, j in negatives)


def test_pairs_are_balanced_per_class_under_a_90_10_split():
    labels = ["big"] * 90 + ["small"] * 10
    pairs = contrastive_pairs([{label} for label in labels], iterations=2, seed=3)
    positives = Counter(labels[i] for i, _, target in pairs if target == 1.0)
    negatives_touching = Counter(labels[i] for i, _, target in pairs if target == 0.0)
    assert positives == {"big": 100, "small": 100}  # SetFit's draw would give ~98% "big" pairs
    assert negatives_touching == {"big": 100, "small": 100}
    # the small class is oversampled through all of its rows, not a few of them
    assert {i for i, _, target in pairs if target == 1.0 and labels[i] == "small"} == set(range(90, 100))


def test_pairs_follow_the_seed():
    label_sets = [{label} for label in ["a", "b", "c"] * 5]
    first = contrastive_pairs(label_sets, iterations=4, seed=7)
    assert contrastive_pairs(label_sets, iterations=4, seed=7) == first
    assert contrastive_pairs(label_sets, iterations=4, seed=8) != first


def test_pairs_are_shuffled_not_grouped_by_class():
    labels = ["a"] * 6 + ["b"] * 6
    pairs = contrastive_pairs([{label} for label in labels], iterations=4, seed=0)
    first_half = [labels[i] for i, _, _ in pairs[:len(pairs) // 2]]
    assert set(first_half) == {"a", "b"}
    assert {target for _, _, target in pairs[:16]} == {0.0, 1.0}


def test_max_pairs_caps_the_count_and_keeps_the_balance():
    labels = ["a"] * 30 + ["b"] * 10
    pairs = contrastive_pairs([{label} for label in labels], iterations=20, seed=0, max_pairs=100)
    assert len(pairs) == 100
    assert Counter(labels[i] for i, _, target in pairs if target == 1.0) == {"a": 25, "b": 25}


def test_multilabel_targets_are_jaccard_similarities():
    label_sets = [{"x"}, {"x", "y"}, {"y"}, {"x"}, {"y"}, {"x", "y"}, set(), set()]
    pairs = contrastive_pairs(label_sets, iterations=10, seed=0)
    for i, j, target in pairs:
        a, b = set(label_sets[i]), set(label_sets[j])
        expected = 1.0 if a == b else len(a & b) / len(a | b)
        assert target == pytest.approx(expected), (a, b)
    targets = {target for _, _, target in pairs}
    assert {0.0, 0.5, 1.0} <= targets  # disjoint, {x} vs {x, y}, equal sets
    # rows without a label are a class of their own: paired together, and apart from the rest
    assert any(label_sets[i] == label_sets[j] == set() and t == 1.0 for i, j, t in pairs)
    assert any(label_sets[i] == set() and label_sets[j] and t == 0.0 for i, j, t in pairs)


# -- too few examples ------------------------------------------------------------------------
def test_a_class_with_one_example_is_named_with_its_count_before_any_model_loads():
    labels = [{"pos"}, {"pos"}, {"pos"}, {"neg"}, {"meh"}, {"meh"}]
    with pytest.raises(UserInputError, match=r"'neg' has 1\b") as info:
        check_enough_examples(labels)
    assert "'pos'" not in str(info.value) and "'meh'" not in str(info.value)
    # tune_encoder checks before it touches the encoder: None would fail on first use
    with pytest.raises(UserInputError, match=r"'neg' has 1\b"):
        tune_encoder(None, None, ["t"] * len(labels), labels)


def test_a_single_class_is_an_error():
    with pytest.raises(UserInputError, match="different classes"):
        check_enough_examples([{"only"}] * 5)


def test_multilabel_with_every_row_overlapping_is_an_error():
    with pytest.raises(UserInputError, match="different classes"):
        check_enough_examples([{"x", "y"}, {"x"}, {"y", "x"}, {"x"}, {"x", "y"}])


# -- tuning ----------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # bf16: autocast, as --precision auto picks it
def test_tuning_pulls_same_class_embeddings_together(tiny_bert, precision):
    texts, labels = topic_rows(6)
    encoder = load(tiny_bert)
    same_before, cross_before = class_margin(encoder, texts, labels)
    summary = tune_encoder(encoder.model, encoder.tokenizer, texts, [{label} for label in labels],
                           iterations=8, lr=1e-3, batch_size=16, seed=0, precision=precision, progress=False)
    same_after, cross_after = class_margin(encoder, texts, labels)
    assert summary.pairs == 2 * 8 * len(texts) and summary.steps == summary.pairs // 16 + (summary.pairs % 16 > 0)
    assert summary.last_loss < summary.first_loss
    # a random encoder maps every text near one point (all cosines ~0.95): tuning must open a
    # gap between the classes (measured: 0.02 before, 0.48 after), mostly by pushing them apart
    assert same_after - cross_after > (same_before - cross_before) + 0.3, \
        (same_before, cross_before, same_after, cross_after)
    assert cross_after < cross_before - 0.3
    assert not encoder.model.training


def test_tuning_is_reproducible_with_the_same_seed(tiny_bert):
    import torch

    texts, labels = topic_rows(3)
    states = []
    for seed in (5, 5, 6):
        encoder = load(tiny_bert)
        tune_encoder(encoder.model, encoder.tokenizer, texts, [{label} for label in labels],
                     iterations=2, lr=1e-3, seed=seed, progress=False)
        states.append(encoder.model.state_dict())
    assert all(torch.equal(states[0][name], states[1][name]) for name in states[0])
    assert not all(torch.equal(states[0][name], states[2][name]) for name in states[0])


def test_tuning_leaves_the_global_torch_rng_alone(tiny_bert):
    import torch

    texts, labels = topic_rows(2)
    encoder = load(tiny_bert)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tune_encoder(encoder.model, encoder.tokenizer, texts, [{label} for label in labels],
                 iterations=1, seed=0, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_tuned_encoder_saves_as_hf_and_sentence_transformers_directory(tiny_bert, tmp_path):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    texts, labels = topic_rows(2)
    encoder = load(tiny_bert)
    tune_encoder(encoder.model, encoder.tokenizer, texts, [{label} for label in labels],
                 iterations=1, seed=0, progress=False)
    out = tmp_path / "encoder"
    encoder.model.save_pretrained(out)
    encoder.tokenizer.hf.save_pretrained(out)
    write_sentence_transformers_files(out, max_length=32, dim=encoder.dim)

    ours = encoder.encode(texts, max_length=32)
    reloaded = AutoModel.from_pretrained(str(out), local_files_only=True)
    assert all(np.allclose(reloaded.state_dict()[name].numpy(), value.numpy())
               for name, value in encoder.model.state_dict().items())
    library = SentenceTransformer(str(out), device="cpu", local_files_only=True).encode(texts)
    assert np.allclose(library, ours, atol=1e-5)


def test_tuning_shows_a_progress_bar_unless_quiet_and_writes_no_files(tiny_bert, tmp_path, monkeypatch, capsys):
    texts, labels = topic_rows(2)
    monkeypatch.chdir(tmp_path)
    for progress in (True, False):
        encoder = load(tiny_bert)
        capsys.readouterr()
        tune_encoder(encoder.model, encoder.tokenizer, texts, [{label} for label in labels],
                     iterations=1, seed=0, progress=progress)
        shown = capsys.readouterr()
        assert ("contrastive" in shown.err) is progress and shown.out == ""
    assert list(tmp_path.iterdir()) == []
