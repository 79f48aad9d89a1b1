"""nlpft.training.dropout: the same dropout as torch's, with masks from 16 random bits per
element, and the SDPA attention that uses it while training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nlpft.training import dropout as fd


def test_keep_mask_keeps_one_minus_p_and_follows_the_seed():
    torch.manual_seed(3)
    first = fd.keep_mask((1000, 999), 0.1)  # an element count not divisible by four
    torch.manual_seed(3)
    again = fd.keep_mask((1000, 999), 0.1)
    assert first.dtype == torch.bool and first.shape == (1000, 999)
    assert torch.equal(first, again)
    assert abs(first.float().mean().item() - 0.9) < 0.002  # 1M draws: the standard error is 0.0003
    assert abs(fd.keep_mask((1000, 1000), 0.5).float().mean().item() - 0.5) < 0.002
    assert not torch.equal(first, fd.keep_mask((1000, 999), 0.1))  # the generator moved on


def test_fast_dropout_scales_what_it_keeps_and_routes_gradients_through_the_mask():
    torch.manual_seed(0)
    x = torch.randn(200, 300, requires_grad=True)
    y = fd.fast_dropout(x, 0.25)
    kept = y.detach() != 0
    assert 0.72 < kept.float().mean().item() < 0.78
    assert torch.allclose(y.detach()[kept], x.detach()[kept] / 0.75)
    weights = torch.randn(200, 300)
    (y * weights).sum().backward()
    assert torch.allclose(x.grad, kept.float() * weights / 0.75)
    assert fd.fast_dropout(x, 0.25, training=False) is x
    assert fd.fast_dropout(x, 0.0) is x
    assert torch.count_nonzero(fd.fast_dropout(x, 1.0)) == 0


def test_fast_dropout_module_follows_train_and_eval():
    layer = fd.FastDropout(0.5)
    x = torch.ones(64, 64)
    layer.eval()
    assert torch.equal(layer(x), x)
    layer.train()
    out = layer(x)
    assert set(out.unique().tolist()) == {0.0, 2.0}


def _tiny(kind: str):
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        GPT2Config,
        GPT2ForSequenceClassification,
    )

    torch.manual_seed(0)
    if kind == "bert":
        config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=64, num_labels=3,
                            attn_implementation="sdpa")
        return BertForSequenceClassification(config)
    config = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64, num_labels=3,
                        pad_token_id=0, attn_implementation="sdpa")
    return GPT2ForSequenceClassification(config)


def _batch(padded: bool = True):
    ids = torch.randint(1, 100, (3, 12))
    if not padded:  # no mask at all: a causal model's attention gets is_causal instead
        return {"input_ids": ids}
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _set_dropout(model, p: float) -> None:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
    for module in model.modules():  # BERT keeps the attention's rate on its own module
        if hasattr(module, "dropout_prob"):
            module.dropout_prob = p


@pytest.mark.parametrize("kind,padded", [("bert", True), ("bert", False), ("gpt2", True), ("gpt2", False)])
def test_swapped_model_matches_the_stock_one_in_evaluation_and_in_training_without_drops(kind, padded):
    model = _tiny(kind)
    batch = _batch(padded)
    model.eval()
    with torch.no_grad():
        stock_eval = model(**batch).logits
    model.train()
    _set_dropout(model, 0.0)
    stock_train = model(**batch).logits
    stock_train.sum().backward()
    stock_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    _set_dropout(model, 0.1)
    model.eval()
    changed = fd.use_fast_dropout(model)
    assert changed >= 2
    assert model.config._attn_implementation == fd.ATTENTION_NAME
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert all(not m.training for m in model.modules())  # swapped modules keep the model's mode
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, stock_eval, atol=1e-6)

    # while training, a rate that drops nothing (under 1/65536) runs the written-out attention
    model.train()
    _set_dropout(model, 1e-9)
    ours = model(**batch).logits
    assert torch.allclose(ours, stock_train, atol=1e-5)
    ours.sum().backward()
    for mine, theirs in zip((p.grad for p in model.parameters()), stock_grads, strict=True):
        assert torch.allclose(mine, theirs, atol=1e-5)

    _set_dropout(model, 0.1)  # and a real rate changes the output, differently on each call
    first, second = model(**batch).logits, model(**batch).logits
    assert not torch.allclose(first, stock_train) and not torch.allclose(first, second)


def test_saved_config_keeps_the_stock_attention_name(tmp_path):
    import json

    model = _tiny("bert")
    fd.use_fast_dropout(model)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert fd.ATTENTION_NAME not in json.dumps(saved)


def test_environment_switch_leaves_torch_dropout(monkeypatch):
    monkeypatch.setenv("NLPFT_FAST_DROPOUT", "0")
    model = _tiny("bert")
    assert fd.use_fast_dropout(model) == 0
    assert any(type(m) is nn.Dropout for m in model.modules())
    assert model.config._attn_implementation == "sdpa"
