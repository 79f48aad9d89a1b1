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
        score = score + sum(transitions[a, b] for a, b in zip(path, path[1:]))
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
        if constrained:
            assert not any(labels[a] == "O" and labels[c] == "I-X" for a, c in zip(best, best[1:]))
    empty = torch.zeros(1, 3, dtype=torch.bool)
    assert crf.log_partition(emissions[:1, :3], empty).item() == 0.0
    assert (crf.decode(emissions[:1, :3], empty) == -100).all()


def test_constrained_decoding_never_yields_i_after_o():
    labels = ["O", "B-X", "I-X", "B-Y", "I-Y"]
    crf = CRF(len(labels), allowed_transitions(labels))
    emissions = torch.zeros(1, 3, len(labels))
    emissions[0, :, 4] = 5.0  # I-Y everywhere, as an unconstrained argmax would say
    path = [labels[i] for i in crf.decode(emissions, torch.ones(1, 3, dtype=torch.bool))[0]]
    assert path[0] != "I-Y" and all(not (a == "O" and b.startswith("I-")) for a, b in zip(path, path[1:]))
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
