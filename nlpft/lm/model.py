"""Word-level RNN language model (LSTM or GRU) with the AWD-LSTM regularisers.

The network is the one of PyTorch's word_language_model example -- embedding, a stack of
RNN layers, a linear decoder over the vocabulary, optionally tied to the embedding
(Press & Wolf 2017; Inan et al. 2017) -- with the regularisers of AWD-LSTM (Merity et al.
2018, "Regularizing and Optimizing LSTM Language Models"):

* embedding dropout ("dropoute"): whole word types are dropped for one forward pass, i.e.
  every occurrence of a dropped word in the batch embeds to zero; survivors are rescaled;
* locked (variational) dropout: one mask per sequence and feature, reused at every time step,
  on the embeddings (input), between RNN layers (hidden) and on the last layer's output;
* weight drop: DropConnect on each layer's hidden-to-hidden matrix, a fresh mask per forward
  pass, shared by all time steps. It is a `torch.nn.utils.parametrize` parametrization, so
  the RNN keeps calling the fused cuDNN / oneDNN kernel over the whole sequence and the
  gradient flows to the original weight (no in-place surgery on `_flat_weights`).

Each layer is its own single-layer `nn.LSTM` / `nn.GRU`: that is what lets dropout sit between
layers and weight drop act per layer, and each layer is still one fused call over all T steps.

Tensors are batch-first: input ids (B, T), features (B, T, H), logits (B, T, V). The hidden
state is a list with one entry per layer: (h, c) for an LSTM, h for a GRU, each (1, B, H),
the shape `nn.LSTM` / `nn.GRU` take and return.

Checkpoints are a directory with `config.json` and `model.safetensors` (no pickle). A tied
decoder weight is stored once (as `embedding.weight`) and a weight-dropped matrix is stored
as its original weight under its plain name (`layers.0.weight_hh_l0`), so a checkpoint does
not depend on the training-time `weight_drop`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.nn.utils import parametrize

from nlpft.errors import UserInputError
from nlpft.training.weights import save_file

MODEL_TYPE = "nlpft-rnnlm"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ARCHS = ("lstm", "gru")
_DROPOUTS = ("embedding_dropout", "input_dropout", "hidden_dropout", "output_dropout", "weight_drop")


@dataclass
class RNNLMConfig:
    vocab_size: int
    arch: str = "lstm"  # "lstm" | "gru"
    embedding_dim: int = 200
    hidden_dim: int = 200
    num_layers: int = 2
    # decoder weight = embedding weight; when hidden_dim != embedding_dim a bias-free Linear
    # projection hidden -> embedding sits before the decoder
    tie_weights: bool = True
    embedding_dropout: float = 0.1  # drops word types (embedding rows) per forward, rescaled
    input_dropout: float = 0.3  # locked dropout on the embeddings
    hidden_dropout: float = 0.25  # locked dropout between RNN layers
    output_dropout: float = 0.4  # locked dropout on the last layer's output
    weight_drop: float = 0.0  # DropConnect on the hidden-to-hidden weights
    pad_id: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RNNLMConfig:
        """Build and validate a config; unknown or missing keys raise ValueError naming them."""
        if not isinstance(d, dict):
            raise ValueError(f"an RNN LM config must be a JSON object, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"unknown RNN LM config keys: {', '.join(unknown)} (known: {', '.join(names)})")
        if "vocab_size" not in d:
            raise ValueError("RNN LM config is missing the required key: vocab_size")
        config = cls(**d)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise UserInputError naming the first bad field."""

        def positive_int(name: str) -> None:
            value = getattr(self, name)
            # bool is an int subclass; `tie_weights: 1`-style mix-ups should not pass as sizes
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserInputError(f"RNN LM config: {name} must be a positive integer, got {value!r}")

        for name in ("vocab_size", "embedding_dim", "hidden_dim", "num_layers"):
            positive_int(name)
        if self.arch not in ARCHS:
            raise UserInputError(f"RNN LM config: arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if not isinstance(self.tie_weights, bool):
            raise UserInputError(f"RNN LM config: tie_weights must be true or false, got {self.tie_weights!r}")
        for name in _DROPOUTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise UserInputError(f"RNN LM config: {name} must be a probability in [0, 1], got {value!r}")
        if isinstance(self.pad_id, bool) or not isinstance(self.pad_id, int) or not 0 <= self.pad_id < self.vocab_size:
            raise UserInputError(
                f"RNN LM config: pad_id must be a token id in [0, vocab_size={self.vocab_size}), got {self.pad_id!r}"
            )


def _check_weights_match(config: RNNLMConfig, config_path: Path, weights_path: Path) -> None:
    """UserInputError unless the tensors in `weights_path` have exactly the names and shapes
    `config` implies; reads only the safetensors header and builds the model on the meta
    device, so a config claiming an absurd size costs nothing."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights_path), framework="pt") as f:
            found = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except Exception as e:  # safetensors raises its own SafetensorError for a damaged header
        raise UserInputError(f"{weights_path} is not a readable safetensors file ({e})") from e
    with torch.device("meta"):
        shapes = {name: tuple(t.shape) for name, t in RNNLanguageModel(config)._plain_state_dict().items()}
    missing = sorted(set(shapes) - set(found))
    unexpected = sorted(set(found) - set(shapes))
    if missing or unexpected:
        raise UserInputError(
            f"{weights_path} does not match {config_path}: missing tensors {missing or 'none'}, "
            f"unexpected tensors {unexpected or 'none'}"
        )
    for name, shape in found.items():
        if shape != shapes[name]:
            raise UserInputError(f"{weights_path}: tensor {name} has shape {shape} but {config_path} implies "
                                 f"{shapes[name]}")


# --------------------------------------------------------------------------- regularisers


def _keep_mask(like: Tensor, shape: tuple[int, ...], p: float) -> Tensor:
    """Bernoulli(1 - p) mask scaled by 1 / (1 - p), so the expected activation is unchanged."""
    if p >= 1.0:  # everything dropped; avoids 0 / 0
        return like.new_zeros(shape)
    return like.new_empty(shape).bernoulli_(1.0 - p).div_(1.0 - p)


def locked_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Variational dropout on (B, T, D): one mask per sequence and feature, shared by all T steps.

    Ordinary dropout resamples the mask at every step, which for an RNN is noise the recurrence
    averages away; dropping the same units for the whole sequence regularises far more
    (Gal & Ghahramani 2016).
    """
    if not training or p == 0.0:
        return x
    mask = _keep_mask(x, (x.size(0), 1, x.size(2)), p)  # (B, 1, D): broadcast over T
    return x * mask


def embedding_dropout(
    input_ids: Tensor, weight: Tensor, p: float, training: bool = True, padding_idx: int | None = None
) -> Tensor:
    """Embed (B, T) ids with whole rows of `weight` dropped: a dropped word type is zero at every position.

    Equivalent to AWD-LSTM's masking of the (V, E) matrix, but the (V,) mask is gathered per
    token instead of multiplying the whole matrix, so the cost is O(V + B*T*E), not O(V*E).
    """
    emb = F.embedding(input_ids, weight, padding_idx)  # (B, T, E)
    if not training or p == 0.0:
        return emb
    row_mask = _keep_mask(weight, (weight.size(0),), p)  # (V,): one draw per word type
    return emb * row_mask[input_ids].unsqueeze(-1)  # (B, T, 1) broadcast over E


class DropConnect(nn.Module):
    """Parametrization weight -> dropout(weight) in training mode, the weight itself in eval mode.

    Registered with `parametrize.register_parametrization(rnn, "weight_hh_l0", DropConnect(p))`:
    `rnn.weight_hh_l0` then evaluates this each time it is read, the trainable tensor lives at
    `rnn.parametrizations.weight_hh_l0.original`, and since `nn.RNNBase.forward` re-reads its
    weights when they change, the fused kernel gets the masked matrix. In eval mode the
    original Parameter itself is returned, so the RNN sees no change and does no extra work.

    On CUDA that refresh also runs `flatten_parameters`, which copies the layer's four weights
    (the masked one included) into one fresh cuDNN buffer each training step: the copy cuDNN
    would otherwise make itself, minus its "weights are not part of single contiguous chunk"
    warning. (Reasoned from the torch 2.13 source; this was checked on CPU/oneDNN only.)
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, weight: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return weight
        return F.dropout(weight, self.p, training=True)


# --------------------------------------------------------------------------- model


def _cast_hidden(h, dtype: torch.dtype):
    """State from an autocast (bf16) pass fed to a full-precision pass: the fused kernels
    reject mixed dtypes with an opaque oneDNN / cuDNN error, so convert; None passes through."""
    if h is None:
        return None
    if isinstance(h, tuple):
        return tuple(t if t.dtype == dtype else t.to(dtype) for t in h)
    return h if h.dtype == dtype else h.to(dtype)


class RNNLanguageModel(nn.Module):
    def __init__(self, config: RNNLMConfig):
        super().__init__()
        config.validate()
        self.config = config
        rnn_class = nn.LSTM if config.arch == "lstm" else nn.GRU
        E, H = config.embedding_dim, config.hidden_dim

        self.embedding = nn.Embedding(config.vocab_size, E, padding_idx=config.pad_id)
        # one single-layer RNN per layer: dropout between layers and weight drop need the
        # boundaries; each is still one fused kernel call over the whole sequence
        self.layers = nn.ModuleList(
            rnn_class(E if i == 0 else H, H, num_layers=1, batch_first=True) for i in range(config.num_layers)
        )
        # a tied decoder reads embedding-sized vectors, so a hidden of another size is projected;
        # no bias: it would only add a constant vector to the logits, which the decoder bias covers
        self.projection = nn.Linear(H, E, bias=False) if config.tie_weights and H != E else None
        self.decoder = nn.Linear(E if self.projection is not None else H, config.vocab_size)

        self._init_weights()
        if config.tie_weights:
            self.decoder.weight = self.embedding.weight  # the same Parameter object, (V, E)
        if config.weight_drop > 0.0:
            for rnn in self.layers:
                parametrize.register_parametrization(rnn, "weight_hh_l0", DropConnect(config.weight_drop))

    def _init_weights(self) -> None:
        # as the word_language_model example and AWD-LSTM: small uniform embedding and decoder,
        # zero decoder bias; the RNNs keep PyTorch's uniform(+-1/sqrt(H)) init
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        with torch.no_grad():
            self.embedding.weight[self.config.pad_id].zero_()  # padding embeds to zero
        nn.init.zeros_(self.decoder.bias)
        if not self.config.tie_weights:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    # ----------------------------------------------------------------------- hidden state

    def init_hidden(self, batch_size: int) -> list:
        """Zero state per layer: (h, c) for an LSTM, h for a GRU, each (1, B, H)."""
        weight = self.embedding.weight
        shape = (1, batch_size, self.config.hidden_dim)
        if self.config.arch == "lstm":
            return [(weight.new_zeros(shape), weight.new_zeros(shape)) for _ in self.layers]
        return [weight.new_zeros(shape) for _ in self.layers]

    @staticmethod
    def detach_hidden(hidden: list) -> list:
        """A copy cut from the graph, for truncated backpropagation through time."""
        return [tuple(t.detach() for t in h) if isinstance(h, tuple) else h.detach() for h in hidden]

    # ----------------------------------------------------------------------- forward

    def encode(self, input_ids: Tensor, hidden: list | None = None) -> tuple[Tensor, list]:
        """Run the RNN stack: (B, T) ids -> last layer outputs (B, T, H) and the new hidden state.

        The features are those before output dropout and projection, e.g. for a classifier head.
        """
        cfg = self.config
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, time), got shape {tuple(input_ids.shape)}")
        if hidden is None:
            hidden = [None] * cfg.num_layers  # the RNNs then start from zeros
        elif len(hidden) != cfg.num_layers:
            raise ValueError(f"hidden has {len(hidden)} layers, the model {cfg.num_layers}")

        p_emb = cfg.embedding_dropout if self.training else 0.0
        x = embedding_dropout(input_ids, self.embedding.weight, p_emb, padding_idx=cfg.pad_id)  # (B, T, E)
        x = locked_dropout(x, cfg.input_dropout, self.training)

        new_hidden = []
        # a parametrized weight is recomputed on every read and nn.RNNBase.forward reads it
        # twice (change check, then refresh); caching makes that one mask per layer and step
        with parametrize.cached():
            for i, rnn in enumerate(self.layers):
                h = _cast_hidden(hidden[i], x.dtype)
                x, h = rnn(x, h)  # (B, T, H); h: (1, B, H) or a pair of them
                new_hidden.append(h)
                if i < cfg.num_layers - 1:
                    x = locked_dropout(x, cfg.hidden_dropout, self.training)
        return x, new_hidden

    def decode(self, features: Tensor) -> Tensor:
        """(B, T, H) features from `encode` -> (B, T, V) logits (output dropout, projection, decoder)."""
        x = locked_dropout(features, self.config.output_dropout, self.training)
        if self.projection is not None:
            x = self.projection(x)  # (B, T, E)
        return self.decoder(x)

    def forward(self, input_ids: Tensor, hidden: list | None = None) -> tuple[Tensor, list]:
        """(B, T) ids -> logits (B, T, V) and the new hidden state."""
        features, hidden = self.encode(input_ids, hidden)
        return self.decode(features), hidden

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Distinct parameters (a tied matrix counts once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # ----------------------------------------------------------------------- embeddings

    def load_embeddings(self, vectors: np.ndarray | Tensor, freeze: bool = False) -> None:
        """Copy a (vocab_size, embedding_dim) matrix into the embedding; rows must follow the model's ids.

        `freeze=True` stops gradient to the embedding. With tied weights the decoder weight is
        the same Parameter, so it is frozen too (its bias still trains).
        """
        weight = self.embedding.weight
        if not isinstance(vectors, Tensor):
            vectors = torch.from_numpy(np.asarray(vectors))
        if tuple(vectors.shape) != tuple(weight.shape):
            raise UserInputError(
                f"embedding matrix has shape {tuple(vectors.shape)} but the model needs "
                f"{tuple(weight.shape)} (vocab_size, embedding_dim)"
            )
        with torch.no_grad():
            weight.copy_(vectors.to(device=weight.device, dtype=weight.dtype))
        weight.requires_grad_(not freeze)

    # ----------------------------------------------------------------------- checkpoints

    def _plain_state_dict(self) -> dict[str, Tensor]:
        """State dict under checkpoint names: parametrized weights as their original, tied weight once."""
        state = {}
        for name, tensor in self.state_dict().items():
            # "layers.0.parametrizations.weight_hh_l0.original" -> "layers.0.weight_hh_l0"
            name = name.replace("parametrizations.", "").replace(".original", "")
            state[name] = tensor
        if self.config.tie_weights:
            del state["decoder.weight"]  # the same tensor as embedding.weight
        return state

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write config.json and model.safetensors into `directory` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"model_type": MODEL_TYPE, **self.config.to_dict()}
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        state = {name: t.detach().contiguous().cpu() for name, t in self._plain_state_dict().items()}
        # write then rename, so an interrupted save never leaves a truncated model.safetensors
        tmp = directory / (WEIGHTS_NAME + ".tmp")
        save_file(state, tmp, metadata={"format": "pt", "model_type": MODEL_TYPE})
        os.replace(tmp, directory / WEIGHTS_NAME)

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu"
    ) -> RNNLanguageModel:
        """Load a directory written by `save_pretrained` (safetensors only, no pickle)."""
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        if not config_path.is_file():
            raise UserInputError(f"{config_path} not found: expected a model directory written by nlpft")
        try:
            raw = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserInputError(f"{config_path}: cannot read it as JSON ({e})") from e
        if not isinstance(raw, dict) or raw.get("model_type") != MODEL_TYPE:
            found = raw.get("model_type") if isinstance(raw, dict) else None
            raise UserInputError(f"{config_path}: model_type is {found!r}, expected {MODEL_TYPE!r}")
        raw = {k: v for k, v in raw.items() if k != "model_type"}
        try:
            config = RNNLMConfig.from_dict(raw)
        except (ValueError, TypeError, UserInputError) as e:
            raise UserInputError(f"{config_path}: {e}") from e

        if not weights_path.is_file():
            raise UserInputError(f"{weights_path} not found")
        # the config's sizes are claims: check them against the shapes the weights file
        # records (its header only) before anything of those sizes is allocated
        _check_weights_match(config, config_path, weights_path)
        try:
            state = load_file(str(weights_path), device=str(map_location))
        except Exception as e:  # safetensors raises its own SafetensorError for a damaged header
            raise UserInputError(f"{weights_path} is not a readable safetensors file ({e})") from e

        model = cls(config).to(map_location)
        expected = model._plain_state_dict()  # these tensors share storage with the parameters
        with torch.no_grad():
            for name, tensor in state.items():
                expected[name].copy_(tensor)
        return model
