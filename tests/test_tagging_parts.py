"""Building blocks of token classification: the CRF, subword alignment and windows, raw-text
words and entity spans, the BiLSTM tagger and the entity-level metrics."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from nlpft.finetune.crf import CRF, allowed_transitions


# -- CRF against brute force ----------------------------------------------------------------
def brute_force(crf: CRF, emissions: torch.Tensor, mask: torch.Tensor):
    """(log Z, {path: score}) of one sequence, by enumerating every tag path over its kept positions."""
    crf = crf.requires_grad_(False)
    kept = [t for t in range(len(mask)) if mask[t]]
    start, transitions, end = crf._start(), crf._transitions(), crf._end()
    scores = {}
    for path in itertools.product(range(crf.num_tags), repeat=len(kept)):
        score = start[path[0]] + end[path[-1]]
        score = score + sum(emissions[t, y] for t, y in zip(kept, path))
        score = score + sum(transitions[a, b] for a, b in itertools.pairwise(path))
        scores[path] = float(score)
    return float(torch.logsumexp(torch.tensor(list(scores.values())), 0)), scores


@pytest.mark.parametrize("constrained", [False, True])
def test_crf_normaliser_likelihood_and_viterbi_match_brute_force(constrained):
    torch.manual_seed(0)
    labels = ["O", "B-X", "I-X", "B-Y"]
    constraints = allowed_transitions(labels) if constrained else None
    crf = CRF(len(labels), constraints)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    emissions = torch.randn(5, 5, len(labels))
    # variable lengths, and masks with holes (first-subword positions of a transformer)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 1, 0, 1, 1], [1, 0, 0, 0, 0], [0, 1, 1, 0, 1]]).bool()
    tags = torch.randint(0, len(labels), (5, 5))
    if constrained:  # gold paths are valid: never an I-X that does not continue X
        tags[tags == 2] = 0
    log_z = crf.log_partition(emissions, mask)
    marginals = crf.marginals(emissions, mask)
    log_likelihood = crf.log_likelihood(emissions, tags.masked_fill(~mask, -100), mask)
    decoded = crf.decode(emissions, mask)
    for b in range(5):
        expected_z, scores = brute_force(crf, emissions[b], mask[b])
        assert log_z[b].item() == pytest.approx(expected_z, abs=1e-4)
        gold = tuple(int(tags[b, t]) for t in range(5) if mask[b, t])
        assert log_likelihood[b].item() == pytest.approx(scores[gold] - expected_z, abs=1e-4)
        best = max(scores, key=scores.get)
        assert tuple(int(decoded[b, t]) for t in range(5) if mask[b, t]) == best
        assert all(decoded[b, t] == -100 for t in range(5) if not mask[b, t])
        kept = [t for t in range(5) if mask[b, t]]
        expected_marginals = torch.zeros(5, len(labels))
        for path, score in scores.items():
            for t, y in zip(kept, path):
                expected_marginals[t, y] += np.exp(score - expected_z)
        assert torch.allclose(marginals[b], expected_marginals, atol=1e-5)
        if constrained:
            assert not any(labels[a] == "O" and labels[c] == "I-X" for a, c in itertools.pairwise(best))
    empty = torch.zeros(1, 3, dtype=torch.bool)
    assert crf.log_partition(emissions[:1, :3], empty).item() == 0.0
    assert (crf.decode(emissions[:1, :3], empty) == -100).all()


def test_constrained_decoding_never_yields_i_after_o():
    labels = ["O", "B-X", "I-X", "B-Y", "I-Y"]
    crf = CRF(len(labels), allowed_transitions(labels))
    emissions = torch.zeros(1, 3, len(labels))
    emissions[0, :, 4] = 5.0  # I-Y everywhere, as an unconstrained argmax would say
    path = [labels[i] for i in crf.decode(emissions, torch.ones(1, 3, dtype=torch.bool))[0]]
    assert path[0] != "I-Y" and all(not (a == "O" and b.startswith("I-")) for a, b in itertools.pairwise(path))
    start, transitions, end = allowed_transitions(["O", "B-X", "I-X", "E-X", "S-X"], "bioes")
    assert not start[2] and not end[1] and not transitions[0, 3] and transitions[1, 3] and not transitions[1, 0]


def test_crf_loss_trains():
    torch.manual_seed(1)
    crf = CRF(3)
    emissions = torch.randn(4, 6, 3, requires_grad=True)
    tags = torch.randint(0, 3, (4, 6))
    mask = torch.ones(4, 6, dtype=torch.bool)
    loss = crf(emissions, tags, mask)
    loss.backward()
    assert loss.item() > 0 and crf.transitions.grad is not None and emissions.grad.abs().sum() > 0


# -- subword alignment and windows ----------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer():
    from nlpft.pretrained.loading import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model("minilm")).hf


def test_labels_go_on_first_subwords(tokenizer):
    from nlpft.finetune.tag_alignment import IGNORE_INDEX, encode_tagged

    words = ["Obama", "visited", "Tegucigalpa", "yesterday"]
    (window,) = encode_tagged(tokenizer, [words], [[1, 0, 2, 0]])
    first = window.first_subwords()
    assert sorted(first) == [0, 1, 2, 3]
    assert window.word_ids.count(2) > 1  # the rare word is split, so "first" matters
    assert [window.labels[first[w]] for w in range(4)] == [1, 0, 2, 0]
    assert sum(label != IGNORE_INDEX for label in window.labels) == 4
    assert window.labels[0] == window.labels[-1] == IGNORE_INDEX  # [CLS], [SEP]
    assert window.input_ids == tokenizer(words, is_split_into_words=True)["input_ids"]


def test_words_without_subwords_still_get_a_position(tokenizer):
    from nlpft.finetune.tag_alignment import encode_tagged

    words = ["Hello", "\u200b", "\ufe0f", "world"]
    assert tokenizer([words[1]], is_split_into_words=True, add_special_tokens=False)["input_ids"] == []
    (window,) = encode_tagged(tokenizer, [words], [[0, 1, 2, 0]])
    assert sorted(window.first_subwords()) == [0, 1, 2, 3]
    assert tokenizer.unk_token_id in window.input_ids


def test_long_sentences_are_windowed_and_every_word_gets_one_prediction(tokenizer):
    from nlpft.finetune.tag_alignment import encode_tagged, merge_windows

    words = [f"w{i}" if i % 3 else "Tegucigalpa" for i in range(60)]
    short = ["just", "two"]
    windows = encode_tagged(tokenizer, [words, short], [list(range(60)), [0, 1]], max_length=24, stride=4)
    long_windows = [w for w in windows if w.sentence == 0]
    assert len(long_windows) > 3 and [w.sentence for w in windows][-1] == 1
    assert all(len(w.input_ids) <= 24 for w in windows)
    for before, after in itertools.pairwise(long_windows):
        assert after.word_start == before.word_end - 4  # `stride` shared words
    assert long_windows[0].word_start == 0 and long_windows[-1].word_end == 60
    # a fake model whose score at each first subword says (word id, window index, distance to a cut edge)
    scores = []
    for k, window in enumerate(windows):
        out = np.full((len(window.input_ids), 3), -1.0)
        for word, position in window.first_subwords().items():
            out[position] = [word, k, 0]
        scores.append(out)
    merged = merge_windows(windows, scores, [60, 2])
    assert merged[0][:, 0].tolist() == list(range(60)) and merged[1][:, 0].tolist() == [0, 1]
    # in the overlap of windows k and k+1, each word comes from the window where it is farther from the cut
    for k, (before, after) in enumerate(itertools.pairwise(long_windows)):
        for word in range(after.word_start, before.word_end):
            from_before = word - before.word_start if k else 10**9
            expected = k if min(from_before, before.word_end - 1 - word) >= word - after.word_start else k + 1
            assert merged[0][word, 1] == expected, word


def test_a_word_longer_than_the_window_is_truncated_but_kept(tokenizer):
    from nlpft.finetune.tag_alignment import encode_tagged

    words = ["a", "Pneumonoultramicroscopicsilicovolcanoconiosis", "b"]
    assert len(tokenizer.tokenize(words[1])) > 6
    windows = encode_tagged(tokenizer, [words], [[0, 1, 2]], max_length=8, stride=0)
    assert [(w.word_start, w.word_end) for w in windows] == [(0, 1), (1, 2), (2, 3)]
    assert windows[1].labels[1] == 1
    assert sorted({word for w in windows for word in w.first_subwords()}) == [0, 1, 2]
    assert all(len(w.input_ids) <= 8 for w in windows)


# -- raw text and entity spans --------------------------------------------------------------
def test_split_words_keeps_offsets_tweets_and_clitics():
    from nlpft.finetune.tag_alignment import split_words

    text = "It's @paulwalk at https://t.co/x1. Don't miss #ESB! 3.14 ❤️ e\u0301te\u0301"
    words = split_words(text)
    assert [w.text for w in words] == ["It", "'s", "@paulwalk", "at", "https://t.co/x1", ".", "Do", "n't", "miss",
                                       "#ESB", "!", "3.14", "❤️", "e\u0301te\u0301"]
    assert all(text[w.start:w.end] == w.text for w in words)


def test_entities_from_tags_with_offsets_and_mean_score():
    from nlpft.finetune.tag_alignment import best_tags, entities, split_words

    text = "Obama visited the Empire State  Building."
    words = split_words(text)
    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    probs = np.full((len(words), 5), 0.05)
    for i, (label, p) in enumerate([(3, 0.9), (0, 0.8), (0, 0.9), (1, 0.6), (2, 0.7), (2, 0.8), (0, 0.99)]):
        probs[i, label] = p
    tags, scores = best_tags(probs, labels)
    found = entities(tags, scores, "iob2", words, text)
    assert [(e.type, e.text, e.start, e.end, e.first_word, e.end_word) for e in found] == [
        ("PER", "Obama", 0, 5, 0, 1), ("LOC", "Empire State  Building", 18, 40, 3, 6)]
    assert found[1].score == pytest.approx((0.6 + 0.7 + 0.8) / 3)
    assert entities(tags, scores, "iob2", [w.text for w in words])[1].text == "Empire State Building"
    assert json.dumps(found[0].to_dict())


# -- the BiLSTM tagger ----------------------------------------------------------------------
TOY_LABELS = ["O", "B-X", "I-X"]


def toy_batch(rng: np.random.Generator, size: int):
    """Ids 1-20 are lowercase words, 21-40 capitalised ones; a run of capitalised words is one
    X entity (B-X, then I-X), so the tag of a word depends on the word before it."""
    lengths = rng.integers(3, 11, size)
    ids = np.zeros((size, lengths.max()), dtype=np.int64)
    labels = np.full(ids.shape, -100, dtype=np.int64)
    for b, n in enumerate(lengths):
        capital = rng.random(n) < 0.4
        ids[b, :n] = np.where(capital, rng.integers(21, 41, n), rng.integers(1, 21, n))
        labels[b, :n] = [0 if not c else (2 if i and capital[i - 1] else 1) for i, c in enumerate(capital)]
    mask = (ids != 0).astype(np.int64)
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(labels)


@pytest.mark.parametrize("crf", [False, True])
def test_tagger_learns_a_toy_task(crf):
    from nlpft.finetune.word_tagger import WordTagger, WordTaggerConfig

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    config = WordTaggerConfig(kind="static", num_labels=3, vocab_size=41, embedding_dim=16, hidden_dim=24,
                              dropout=0.1, crf=crf, labels=TOY_LABELS)
    model = WordTagger(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):
        ids, mask, labels = toy_batch(rng, 32)
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    model.eval()
    ids, mask, labels = toy_batch(np.random.default_rng(99), 200)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    assert out["logits"].shape == (200, ids.shape[1], 3)
    predicted = model.decode(out["logits"], mask)
    kept = labels != -100
    assert (predicted[~kept] == -100).all()
    accuracy = (predicted[kept] == labels[kept]).float().mean().item()
    assert accuracy > 0.97


def test_tagger_saves_and_loads_with_crf_constraints(tmp_path):
    from nlpft.finetune.word_tagger import WordTagger, WordTaggerConfig

    torch.manual_seed(0)
    config = WordTaggerConfig(kind="static", num_labels=3, vocab_size=41, embedding_dim=8, hidden_dim=8, case_dim=4,
                              crf=True, labels=TOY_LABELS)
    model = WordTagger(config)
    model.load_embeddings(np.ones((41, 8), dtype=np.float32), freeze=True)
    assert not model.token_embedding().weight.requires_grad
    model.save_pretrained(tmp_path / "tagger")
    loaded = WordTagger.from_pretrained(tmp_path / "tagger")
    ids, mask, _ = toy_batch(np.random.default_rng(1), 4)
    model.eval()
    cases = torch.randint(1, 7, ids.shape)
    assert torch.equal(model(ids, mask, case_ids=cases)["logits"], loaded(ids, mask, case_ids=cases)["logits"])
    assert loaded.crf.transition_penalty[0, 2] < -1000  # O -> I-X stays forbidden
    assert sorted(p.name for p in (tmp_path / "tagger").iterdir()) == ["model.safetensors", "tagger.json"]


def test_tagger_on_a_language_model_backbone():
    from nlpft.finetune.word_tagger import WordTagger, word_shapes
    from nlpft.lm.model import RNNLanguageModel, RNNLMConfig

    torch.manual_seed(0)
    lm = RNNLanguageModel(RNNLMConfig(vocab_size=41, embedding_dim=8, hidden_dim=12, num_layers=2))
    tagger = WordTagger.from_language_model(lm, num_labels=3, hidden_dim=8, labels=TOY_LABELS, crf=True)
    assert torch.equal(tagger.lm.layers[1].weight_hh_l0, lm.layers[1].weight_hh_l0)
    ids, mask, labels = toy_batch(np.random.default_rng(2), 4)
    out = tagger(input_ids=ids, attention_mask=mask, labels=labels)
    out["loss"].backward()
    assert lm.embedding.weight.grad is None and tagger.lm.embedding.weight.grad is not None
    assert len(tagger.layer_groups()) == 4  # top, two LM layers, embedding
    assert word_shapes(["the", "Obama", "NASA", "iPhone", "R2D2", "!"]) == [1, 2, 3, 4, 5, 6]


def test_one_word_id_per_tagged_word():
    from nlpft.finetune.word_tagger import encode_words
    from nlpft.tokenization.words import WordTokenizer

    tokenizer = WordTokenizer.from_vocabulary(["obama", "s", "york"])
    ids = encode_words(tokenizer, ["Obama", "'s", "New York", ".", "zebra"])
    unk = tokenizer.unk_id
    assert ids == [tokenizer.token_to_id("obama"), tokenizer.token_to_id("s"), tokenizer.token_to_id("york"), unk, unk]


# -- metrics, report, plot, predictions file ------------------------------------------------
GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-PER", "O"]]
PREDICTED = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O", "O", "B-LOC"]]


def test_tagging_metrics_match_hand_computed_values():
    from nlpft.finetune.tag_metrics import tagging_metrics

    # gold PER, LOC | ORG, PER; predicted PER (right), ORG over the LOC | ORG (right), LOC spurious
    m = tagging_metrics(GOLD, PREDICTED)
    assert (m["gold_entities"], m["predicted_entities"]) == (4, 4)
    assert (m["micro_precision"], m["micro_recall"], m["micro_f1"]) == pytest.approx((2 / 4, 2 / 4, 0.5))
    assert m["per_type"]["PER"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2, "predicted": 1})
    assert m["per_type"]["LOC"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 1})
    assert m["per_type"]["ORG"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1, "predicted": 2})
    assert (m["macro_precision"], m["macro_recall"], m["macro_f1"]) == pytest.approx((0.5, 0.5, 4 / 9))
    assert m["token_accuracy"] == pytest.approx(5 / 8)
    assert m["confusion"] == {"labels": ["LOC", "ORG", "PER", "O"],
                              "matrix": [[0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0]]}
    perfect = tagging_metrics(GOLD, GOLD)
    assert perfect["micro_f1"] == perfect["macro_f1"] == perfect["token_accuracy"] == 1.0
    with pytest.raises(ValueError):
        tagging_metrics(GOLD, [PREDICTED[0]])


def test_report_plot_and_predictions_file(tmp_path):
    from nlpft.data.tagged import read_tagged
    from nlpft.finetune.tag_metrics import (
        plot_type_f1,
        report_section,
        tagging_metrics,
        write_predictions_conll,
    )

    m = tagging_metrics(GOLD, PREDICTED)
    plot = plot_type_f1(m, tmp_path / "type_f1.png")
    assert plot.stat().st_size > 1000
    section = report_section(m, {"F1 per type": "type_f1.png"})
    assert "entity F1 0.5000" in section and "| PER | 1.000 | 0.500 | 0.667 | 2 | 1 |" in section
    assert "| LOC | 0 | 1 | 0 | 0 |" in section and "![F1 per type](type_f1.png)" in section
    tokens = [["Obama", "New York", ".", "x"], ["IBM", "a", "Ann", "b"]]
    out = write_predictions_conll(tmp_path / "predictions.conll", tokens, PREDICTED, GOLD)
    assert out.read_text().splitlines()[:2] == ["Obama\tB-PER\tB-PER", "New York\tI-PER\tI-PER"]
    assert [s.tags for s in read_tagged(out, tag_col=2)] == [tuple(s) for s in GOLD]
    assert [s.tokens for s in read_tagged(out)] == [tuple(s) for s in tokens]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    with pytest.raises(ValueError):
        write_predictions_conll(tmp_path / "bad.conll", tokens, [["O"], ["O"]])
    assert not (tmp_path / "bad.conll").exists() and not (tmp_path / "bad.conll.tmp").exists()


# -- heads saved beside a stock Hugging Face directory ----------------------------------------
def _stock_model_with_head(kind: str, folder):
    """A tiny mean-pooling classifier or transformer CRF tagger saved into `folder`; a function
    that loads it back."""
    from transformers import BertConfig, BertForTokenClassification, BertModel

    from nlpft.finetune.pooled import MeanPoolClassifier
    from nlpft.finetune.token_crf import TokenClassifierCRF

    config = BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, num_labels=3)
    torch.manual_seed(0)
    if kind == "pooled":
        MeanPoolClassifier(BertModel(config), 3).save_pretrained(folder)
        return lambda: MeanPoolClassifier.from_pretrained(folder)
    TokenClassifierCRF(BertForTokenClassification(config), TOY_LABELS, "iob2").save_pretrained(folder)
    return lambda: TokenClassifierCRF.around(BertForTokenClassification.from_pretrained(folder), folder)


@pytest.mark.parametrize("kind, head_file", [("pooled", "pooled_head.safetensors"), ("crf", "crf.safetensors")])
def test_a_damaged_head_file_is_a_one_line_error_naming_it(tmp_path, kind, head_file):
    from nlpft.errors import UserInputError

    load = _stock_model_with_head(kind, tmp_path)
    assert load() is not None
    (tmp_path / head_file).write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{}")  # a header cut short
    with pytest.raises(UserInputError, match=f"{head_file}: corrupt or truncated safetensors file"):
        load()
