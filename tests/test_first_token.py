"""The last encoder layer computing [CLS] alone gives a sequence classifier the same logits
and gradients as the stock forward, and leaves the weights and their names alone."""

from __future__ import annotations

import pytest
import torch

from nlpft.finetune.first_token import first_token_last_layer


def classifier(attn: str, seed: int = 0, model_type: str = "bert"):
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    torch.manual_seed(seed)
    common = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  num_labels=3, attn_implementation=attn)
    if model_type == "roberta":
        return RobertaForSequenceClassification(RobertaConfig(**common, pad_token_id=1, max_position_embeddings=40))
    return BertForSequenceClassification(BertConfig(**common))


def batch():
    torch.manual_seed(1)
    ids = torch.randint(5, 100, (4, 12))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # padded rows: the mask must reach the one attention row left
    mask[3, 3:] = 0
    return ids, mask, torch.tensor([0, 2, 1, 2])


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_logits_and_gradients_match_the_stock_forward(attn, model_type):
    ids, mask, labels = batch()
    results = []
    for patched in (False, True):
        model = classifier(attn, model_type=model_type).eval()  # dropout off: the two must agree
        if patched:
            assert first_token_last_layer(model)
            assert model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state.shape[1] == 1
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        results.append((out.logits.detach(), grads, sorted(model.state_dict())))
    (stock_logits, stock_grads, stock_keys), (logits, grads, keys) = results
    assert torch.allclose(logits, stock_logits, atol=1e-5)
    assert keys == stock_keys  # the saved model is the stock one
    assert stock_grads.keys() == grads.keys()
    for name in grads:
        assert torch.allclose(grads[name], stock_grads[name], atol=1e-5), name


def test_it_trains_with_dropout_and_fast_masks():
    from nlpft.training.dropout import use_fast_dropout

    model = classifier("sdpa").train()
    use_fast_dropout(model)
    assert first_token_last_layer(model)
    ids, mask, labels = batch()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_other_heads_and_the_switch_keep_the_stock_forward(monkeypatch):
    from transformers import BertConfig, BertForTokenClassification

    tagger = BertForTokenClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                                   num_attention_heads=4, intermediate_size=64))
    assert not first_token_last_layer(tagger)  # it reads every position
    monkeypatch.setenv("NLPFT_FIRST_TOKEN", "0")
    assert not first_token_last_layer(classifier("sdpa"))
