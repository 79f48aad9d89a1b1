"""Classifiers on nlpft's word-level backbones: static vectors and the RNN language model.

static   fastText-style: word vectors (from `nlpft embed train` or any word2vec file, frozen
         or tuned) -> mean and max over the text -> a one-hidden-layer MLP.
rnn-lm   ULMFiT-style: the LM's embedding and LSTM/GRU stack (its pretrained weights) ->
         concat pooling [last state, max, mean] -> the same MLP. Trained with
         discriminative learning rates (each layer down the stack gets the rate of the one
         above / 2.6) and gradual unfreezing (epoch 1 trains the head, each further epoch
         unfreezes one more layer group from the top); see `layer_groups`.

Inputs are right-padded id batches with an attention mask; pooling ignores the padding,
and an RNN's "last state" is read at each text's last real token (a unidirectional RNN's
outputs there never saw the padding that follows). Saved as `model.safetensors` +
`classifier.json`, next to the backbone's `tokenizer.json`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from nlpft.errors import UserInputError

CONFIG_NAME = "classifier.json"
WEIGHTS_NAME = "model.safetensors"
KINDS = ("static", "rnn-lm")


@dataclass
class WordClassifierConfig:
    kind: str  # "static" | "rnn-lm"
    num_labels: int
    vocab_size: int
    embedding_dim: int
    pad_id: int = 0
    head_hidden: int = 256
    dropout: float = 0.2
    freeze_embeddings: bool = False
    rnn: dict | None = field(default=None)  # RNNLMConfig of the backbone (rnn-lm)

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise UserInputError(f"classifier kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.kind == "rnn-lm" and not self.rnn:
            raise UserInputError("an rnn-lm classifier needs the language model's config")


class WordEncoderParts:
    """What every word-level model shares about its encoder (static vectors, `self.embedding`,
    or the RNN LM, `self.lm`): building it, the token embedding, the encoder's parameter
    groups for discriminative rates and gradual unfreezing, and the parameter count."""

    def build_encoder(self, config) -> int:
        """`self.embedding` (static vectors) or `self.lm` (the RNN LM) as `config` says, its
        embedding frozen under freeze_embeddings; the width of the features of one token."""
        if config.kind == "static":
            self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_id)
            width = config.embedding_dim
        else:
            from nlpft.lm.model import RNNLanguageModel, RNNLMConfig

            self.lm = RNNLanguageModel(RNNLMConfig.from_dict(config.rnn))
            width = self.lm.config.hidden_dim
        if config.freeze_embeddings:
            self.token_embedding().weight.requires_grad = False
        return width

    def token_embedding(self) -> nn.Embedding:
        return self.embedding if self.config.kind == "static" else self.lm.embedding

    def encoder_groups(self) -> list[list[nn.Parameter]]:
        """The encoder's parameter groups from the top down: LM layers, then the embedding."""
        if self.config.kind == "rnn-lm":
            groups = [list(layer.parameters()) for layer in reversed(self.lm.layers)]
            return groups + [list(self.lm.embedding.parameters())]
        return [list(self.embedding.parameters())]

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """All parameters (the Trainer's FLOP estimate asks for those outside the embedding)."""
        skip = {id(p) for p in self.token_embedding().parameters()} if exclude_embeddings else set()
        return sum(p.numel() for p in self.parameters() if id(p) not in skip)


class WordClassifier(WordEncoderParts, nn.Module):
    def __init__(self, config: WordClassifierConfig):
        super().__init__()
        config.validate()
        self.config = config
        width = self.build_encoder(config)
        features = (2 if config.kind == "static" else 3) * width  # mean, max; or last, max, mean
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(features, config.head_hidden), nn.ReLU(),
                                  nn.Dropout(config.dropout), nn.Linear(config.head_hidden, config.num_labels))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels=None, **_) -> dict:
        mask = attention_mask.unsqueeze(-1).to(torch.float32)  # (B, T, 1)
        if self.config.kind == "static":
            x = self.embedding(input_ids)  # (B, T, E)
        else:
            x, _ = self.lm.encode(input_ids)  # (B, T, H)
        x = x.float()
        mean = (x * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, F)
        largest = x.masked_fill(mask == 0, float("-inf")).max(1).values  # (B, F)
        if self.config.kind == "static":
            pooled = torch.cat([mean, largest], dim=1)
        else:
            last_index = attention_mask.sum(1).clamp(min=1) - 1  # (B,)
            last = x[torch.arange(x.size(0), device=x.device), last_index]  # (B, H)
            pooled = torch.cat([last, largest, mean], dim=1)
        return {"logits": self.head(pooled)}

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameter groups from the top (head) down (embedding), for discriminative learning
        rates and gradual unfreezing."""
        return [list(self.head.parameters())] + self.encoder_groups()

    # -- files -------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike, **_) -> None:
        save_word_model(self, directory, CONFIG_NAME)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> WordClassifier:
        return load_word_model(cls, WordClassifierConfig, directory, CONFIG_NAME, "classifier")


# -- files: a word-level model is its config (JSON) + its weights (safetensors) -------------
def save_word_model(model: nn.Module, directory: str | os.PathLike, config_name: str) -> None:
    """`model.config` as `config_name` and the weights as model.safetensors (written to a
    temporary name, then renamed), with a fixed header order."""
    from nlpft.training.weights import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / config_name).write_text(json.dumps(asdict(model.config), indent=2) + "\n", encoding="utf-8")
    tmp = directory / (WEIGHTS_NAME + ".tmp")
    save_model(model, str(tmp))  # a tied LM decoder shares the embedding: stored once
    tmp.replace(directory / WEIGHTS_NAME)


def load_word_model(cls, config_cls, directory: str | os.PathLike, config_name: str, what: str):
    """A `cls` model from `directory`: its config checked against the weights' recorded
    shapes before anything is allocated, then the weights loaded strictly."""
    from safetensors.torch import load_model

    directory = Path(directory)
    try:
        config = config_cls(**json.loads((directory / config_name).read_text(encoding="utf-8")))
        _check_claimed_shapes(cls, config, directory, config_name)
        model = cls(config)
        missing, unexpected = load_model(model, str(directory / WEIGHTS_NAME), strict=False)
    except (OSError, ValueError, TypeError, RuntimeError) as exc:
        raise UserInputError(f"{directory}: {what} files missing or damaged ({exc})") from None
    if missing or unexpected:
        raise UserInputError(f"{directory / WEIGHTS_NAME}: weights do not match {config_name} "
                             f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    model.eval()
    return model


def _check_claimed_shapes(cls, config, directory: Path, config_name: str) -> None:
    """The config's sizes are claims: the tensors they imply (built on the meta device,
    so nothing is allocated) must have the shapes model.safetensors records in its header."""
    from safetensors import safe_open

    try:
        with safe_open(str(directory / WEIGHTS_NAME), framework="pt") as f:
            found = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise UserInputError(f"{directory / WEIGHTS_NAME}: missing or damaged ({exc})") from None
    with torch.device("meta"):
        implied = {name: tuple(t.shape) for name, t in cls(config).state_dict().items()}
    for name, shape in found.items():
        if name in implied and implied[name] != shape:
            raise UserInputError(f"{directory / config_name}: implies {name} of shape {implied[name]}, but "
                                 f"{directory / WEIGHTS_NAME} holds {shape}; the files come from different runs")
