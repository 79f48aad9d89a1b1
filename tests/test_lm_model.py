"""RNN language model and sampling: tiny random models, all on CPU, a few seconds in total."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nlpft.errors import UserInputError
from nlpft.lm.model import RNNLanguageModel, RNNLMConfig, locked_dropout
from nlpft.lm.sampling import sample

V = 50
NO_DROPOUT = dict(embedding_dropout=0.0, input_dropout=0.0, hidden_dropout=0.0, output_dropout=0.0, weight_drop=0.0)


def tiny(**overrides) -> RNNLanguageModel:
    kwargs = dict(vocab_size=V, embedding_dim=16, hidden_dim=16, num_layers=2)
    kwargs.update(overrides)
    torch.manual_seed(0)
    return RNNLanguageModel(RNNLMConfig(**kwargs))


def ids(batch=3, time=7, seed=1) -> torch.Tensor:
    return torch.randint(1, V, (batch, time), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- shapes, tying


@pytest.mark.parametrize("arch", ["lstm", "gru"])
@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("hidden_dim", [16, 24])
def test_shapes_tying_and_projection(arch, tie, hidden_dim):
    model = tiny(arch=arch, tie_weights=tie, hidden_dim=hidden_dim)
    x = ids()
    logits, hidden = model(x)
    assert logits.shape == (3, 7, V)
    features, _ = model.encode(x)
    assert features.shape == (3, 7, hidden_dim)
    assert len(hidden) == 2
    for h in hidden:
        parts = h if arch == "lstm" else (h,)
        assert isinstance(h, tuple) == (arch == "lstm")
        assert all(t.shape == (1, 3, hidden_dim) for t in parts)
    init = model.init_hidden(3)
    assert [type(h) for h in init] == [type(h) for h in hidden]
    assert (model.projection is not None) == (tie and hidden_dim != 16)
    if tie:
        assert model.decoder.weight is model.embedding.weight
    else:
        assert model.decoder.weight is not model.embedding.weight
    # a tied matrix counts once
    assert model.num_parameters() == sum(p.numel() for p in set(model.parameters()))


def test_config_validation_and_dict_round_trip():
    config = RNNLMConfig(vocab_size=V, arch="gru", hidden_dim=8)
    assert RNNLMConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="bogus"):
        RNNLMConfig.from_dict({**config.to_dict(), "bogus": 1})
    for bad in [dict(arch="rnn"), dict(hidden_dim=0), dict(input_dropout=1.5), dict(pad_id=V), dict(num_layers=True)]:
        with pytest.raises(UserInputError, match=next(iter(bad))):
            RNNLMConfig(vocab_size=V, **bad).validate()


# ----------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize(
    "overrides", [dict(), dict(arch="gru", tie_weights=False), dict(hidden_dim=24, weight_drop=0.5)]
)
def test_save_load_round_trip(tmp_path, overrides):
    model = tiny(**overrides)
    model.save_pretrained(tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    assert "decoder.weight" not in tensors or not model.config.tie_weights
    # a weight-dropped matrix is stored as the original weight under its plain name
    assert "layers.0.weight_hh_l0" in tensors and not any("parametrizations" in k for k in tensors)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "nlpft-rnnlm"

    loaded = RNNLanguageModel.from_pretrained(tmp_path)
    assert loaded.config == model.config
    model.eval(), loaded.eval()
    x = ids()
    assert torch.equal(model(x)[0], loaded(x)[0])
    if model.config.tie_weights:
        assert loaded.decoder.weight is loaded.embedding.weight


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(UserInputError, match="config.json"):
        RNNLanguageModel.from_pretrained(tmp_path / "missing")

    model = tiny()
    model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}" + good[100:])
    with pytest.raises(UserInputError, match="model.safetensors"):
        RNNLanguageModel.from_pretrained(tmp_path)
    weights.unlink()
    with pytest.raises(UserInputError, match="model.safetensors"):
        RNNLanguageModel.from_pretrained(tmp_path)
    weights.write_bytes(good)

    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "vocab_size": V + 10}))
    with pytest.raises(UserInputError, match=r"has shape \(50,.*implies \(60,"):
        RNNLanguageModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "hidden_size": 3}))
    with pytest.raises(UserInputError, match="hidden_size"):
        RNNLanguageModel.from_pretrained(tmp_path)


# ----------------------------------------------------------------------------- dropout


def test_dropout_only_in_train_mode():
    model = tiny(arch="lstm")  # default dropouts are all > 0
    x = ids()
    model.eval()
    assert torch.equal(model(x)[0], model(x)[0])
    model.train()
    assert not torch.equal(model(x)[0], model(x)[0])


def test_locked_dropout_shares_the_mask_over_time():
    x = torch.ones(4, 9, 32)
    y = locked_dropout(x, 0.5, training=True)
    assert torch.equal(y, y[:, :1].expand_as(y))  # every step equals the first step
    assert set(y.unique().tolist()) == {0.0, 2.0}  # dropped or rescaled by 1 / (1 - p)
    assert not torch.equal(y[0], y[1])  # but sequences get their own masks
    assert locked_dropout(x, 0.5, training=False) is x


def test_weight_drop():
    model = tiny(weight_drop=0.5, **{k: v for k, v in NO_DROPOUT.items() if k != "weight_drop"})
    x = ids()

    # eval: the parametrization is the identity
    plain = tiny(**NO_DROPOUT)
    plain.load_state_dict(model._plain_state_dict(), strict=False)
    model.eval(), plain.eval()
    assert torch.equal(model(x)[0], plain(x)[0])

    # train: a new mask per forward changes the outputs, and gradient reaches the original weight
    model.train()
    assert not torch.equal(model(x)[0], model(x)[0])
    original = model.layers[0].parametrizations.weight_hh_l0.original
    model(x)[0].sum().backward()
    assert original.grad is not None and original.grad.abs().sum() > 0
    # masked entries get no gradient: some zeros, far more than an unmasked weight would have
    assert (original.grad == 0).float().mean() > 0.2
    # back in eval mode the RNN uses the original weight again, not the last mask
    model.eval()
    assert torch.equal(model(x)[0], plain(x)[0])

    # weight_drop=1 drops all of W_hh: the same as a model whose W_hh is zero
    dropped = tiny(weight_drop=1.0, **{k: v for k, v in NO_DROPOUT.items() if k != "weight_drop"})
    zeroed = copy.deepcopy(plain)
    zeroed.load_state_dict(dropped._plain_state_dict(), strict=False)
    with torch.no_grad():
        for rnn in zeroed.layers:
            rnn.weight_hh_l0.zero_()
    dropped.train(), zeroed.train()
    assert torch.allclose(dropped(x)[0], zeroed(x)[0], atol=1e-6)
    dropped.eval(), zeroed.eval()
    assert not torch.allclose(dropped(x)[0], zeroed(x)[0], atol=1e-3)


# ----------------------------------------------------------------------------- embeddings, state


def test_load_embeddings_copies_and_freezes():
    model = tiny()
    vectors = np.random.default_rng(0).standard_normal((V, 16)).astype(np.float32)
    model.load_embeddings(vectors, freeze=True)
    assert torch.equal(model.embedding.weight, torch.from_numpy(vectors))
    assert not model.embedding.weight.requires_grad
    assert not model.decoder.weight.requires_grad  # tied, hence frozen too
    assert model.num_parameters(trainable_only=True) == model.num_parameters() - V * 16
    with pytest.raises(UserInputError, match=r"\(50, 8\).*\(50, 16\)"):
        model.load_embeddings(np.zeros((V, 8)))


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_hidden_state_carries_over(arch):
    model = tiny(arch=arch).eval()
    x = ids(time=10)
    whole, _ = model(x)
    first, hidden = model(x[:, :4])
    second, _ = model(x[:, 4:], RNNLanguageModel.detach_hidden(hidden))
    assert torch.allclose(torch.cat([first, second], dim=1), whole, atol=1e-6)
    # and the state matters: starting the second half from zeros gives something else
    assert not torch.allclose(model(x[:, 4:])[0], second, atol=1e-4)


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_training_learns_a_repeating_sequence(arch):
    # one layer: a 2-layer LSTM this small sits on the unigram plateau for well over 50 steps
    # (a plain nn.LSTM does the same), which would make the test slow, not more telling
    model = tiny(arch=arch, num_layers=1, embedding_dim=32, hidden_dim=32, **NO_DROPOUT)
    model.train()
    stream = torch.tensor([3, 14, 15, 9, 26, 5, 35, 8]).repeat(15)  # (120,)
    x = stream[:-1].view(1, -1).repeat(4, 1)  # (4, 119)
    y = stream[1:].view(1, -1).repeat(4, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(50):
        logits, _ = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 3.5  # about log(50) at the start
    # log(8) = 2.08 is the best a model that ignores its input can do; each token here
    # determines the next, so learning the sequence takes the loss far below that
    assert losses[-1] < 0.5


# ----------------------------------------------------------------------------- sampling


def test_sample_seeded_greedy_and_top_k():
    model = tiny()
    model.train()  # sample() must switch to eval and back
    prompt = [3, 4, 5]
    a = sample(model, prompt, 20, seed=7)
    assert len(a) == 20 and all(0 <= t < V for t in a)
    assert sample(model, prompt, 20, seed=7) == a
    assert model.training

    greedy = sample(model, prompt, 10, temperature=0.0)
    model.eval()
    chain = list(prompt)
    for _ in range(10):  # re-encode the whole prefix each step: the slow reference
        logits, _ = model(torch.tensor([chain]))
        chain.append(int(logits[0, -1].argmax()))
    assert greedy == chain[len(prompt):]
    assert sample(model, prompt, 10, top_k=1, seed=3) == greedy
    assert sample(model, prompt, 10, top_p=1e-6, seed=3) == greedy

    assert sample(model, prompt, 0) == []
    with pytest.raises(UserInputError, match="empty"):
        sample(model, [], 5)


def test_sample_banned_and_stop_ids():
    model = tiny()
    with torch.no_grad():
        model.decoder.bias[7] = 20.0  # the model now almost always wants token 7
    assert sample(model, [3], 30, seed=0).count(7) > 25
    out = sample(model, [3], 30, seed=0, banned_ids=[7, 0])
    assert len(out) == 30 and 7 not in out and 0 not in out
    assert 7 not in sample(model, [3], 30, temperature=0.0, banned_ids=[7])

    with torch.no_grad():
        model.decoder.bias[7] = 0.0
        model.decoder.bias[11] = 20.0
    assert sample(model, [3], 30, temperature=0.0, stop_id=11) == []
    out = sample(model, [3], 30, seed=1, stop_id=12)
    assert 12 not in out
