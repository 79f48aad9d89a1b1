"""A BiLSTM tagger on nlpft's word-level backbones, with an optional CRF (`--crf`).

static   word vectors (from `nlpft embed train` or any word2vec file, frozen or tuned)
rnn-lm   the RNN language model's embedding and LSTM/GRU stack (its pretrained weights)

then, for both: [+ a small word-shape embedding] -> dropout -> a bidirectional LSTM ->
dropout -> a linear layer giving one score per tag per word -> softmax cross-entropy, or a
linear-chain CRF whose transitions can be constrained to the tag scheme (never an I-X
after O). A word-level backbone is often lowercased; the optional shape embedding
(`case_dim` > 0, inputs from `word_shapes`) gives the tagger back the capitalisation that
NER leans on.

Inputs are right-padded word-id batches (B, W) with an attention mask; labels are tag ids
with -100 where there is nothing to predict. `forward` returns `{"loss", "logits"}`, as a
Hugging Face model does, so the Trainer can train it; `decode` turns logits into tag ids
(Viterbi with a CRF, argmax without). Saved as `model.safetensors` + `tagger.json`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nlpft.data.tagged import SCHEMES
from nlpft.errors import UserInputError
from nlpft.finetune.crf import CRF, allowed_transitions, decoded_log_scores
from nlpft.finetune.word_models import WordEncoderParts, load_word_model, save_word_model

CONFIG_NAME = "tagger.json"
KINDS = ("static", "rnn-lm")
IGNORE_INDEX = -100
# word shapes: padding, lower, Title, UPPER, Mixed, has a digit, other (punctuation, emoji)
SHAPES = ("pad", "lower", "title", "upper", "mixed", "digit", "other")


@dataclass
class WordTaggerConfig:
    kind: str  # "static" | "rnn-lm"
    num_labels: int
    vocab_size: int
    embedding_dim: int
    pad_id: int = 0
    hidden_dim: int = 128  # per direction of the BiLSTM
    num_layers: int = 1
    dropout: float = 0.3
    case_dim: int = 0  # size of the word-shape embedding; 0: none
    freeze_embeddings: bool = False
    crf: bool = False
    labels: list[str] | None = field(default=None)  # tag names in id order (CRF constraints)
    scheme: str = "iob2"
    rnn: dict | None = field(default=None)  # RNNLMConfig of the backbone (rnn-lm)

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise UserInputError(f"tagger kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.kind == "rnn-lm" and not self.rnn:
            raise UserInputError("an rnn-lm tagger needs the language model's config")
        if self.labels is not None and len(self.labels) != self.num_labels:
            raise UserInputError(f"the tagger has {self.num_labels} labels but {len(self.labels)} label names")
        if self.scheme not in SCHEMES:
            raise UserInputError(f"unknown tag scheme {self.scheme!r}; use one of: {', '.join(SCHEMES)}")


def word_shapes(words: Sequence[str]) -> list[int]:
    """Shape ids (indices into SHAPES) of `words`, the `case_ids` input of the tagger."""
    return [SHAPES.index(_shape(word)) for word in words]


def encode_words(tokenizer, words: Sequence[str]) -> list[int]:
    """One id per word with a word-level tokenizer (`WordTokenizer`): the id of the first of
    the word's pieces that is in the vocabulary ("New York" -> "new", "'s" -> "s"), else the
    unknown id (punctuation, which the word pipeline drops, and unseen words)."""
    unk = tokenizer.unk_id
    ids = []
    for word in words:
        piece_ids = (tokenizer.token_to_id(piece) for piece in tokenizer.words(word))
        ids.append(next((i for i in piece_ids if i is not None and i != unk), unk))
    return ids


def _shape(word: str) -> str:
    if any(ch.isdigit() for ch in word):
        return "digit"
    if not any(ch.isalpha() for ch in word):
        return "other"
    if word.islower():
        return "lower"
    if word.isupper():
        return "upper"
    return "title" if word[:1].isupper() and word[1:].lower() == word[1:] else "mixed"


class WordTagger(WordEncoderParts, nn.Module):
    def __init__(self, config: WordTaggerConfig):
        super().__init__()
        config.validate()
        self.config = config
        features = self.build_encoder(config)
        self.case_embedding = nn.Embedding(len(SHAPES), config.case_dim, padding_idx=0) if config.case_dim else None
        self.dropout = nn.Dropout(config.dropout)
        self.bilstm = nn.LSTM(features + config.case_dim, config.hidden_dim, num_layers=config.num_layers,
                              batch_first=True, bidirectional=True,
                              dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.head = nn.Linear(2 * config.hidden_dim, config.num_labels)
        self.crf = CRF(config.num_labels, self._constraints()) if config.crf else None

    def _constraints(self):
        return allowed_transitions(self.config.labels, self.config.scheme) if self.config.labels else None

    def load_embeddings(self, vectors: np.ndarray | torch.Tensor, freeze: bool | None = None) -> None:
        """Copy a (vocab_size, embedding_dim) matrix (rows in the tokenizer's id order) into the
        word embedding; `freeze` defaults to the config's freeze_embeddings."""
        weight = self.token_embedding().weight
        vectors = torch.as_tensor(np.asarray(vectors))
        if tuple(vectors.shape) != tuple(weight.shape):
            raise UserInputError(f"embedding matrix has shape {tuple(vectors.shape)} but the tagger needs "
                                 f"{tuple(weight.shape)} (vocab_size, embedding_dim)")
        with torch.no_grad():
            weight.copy_(vectors.to(dtype=weight.dtype, device=weight.device))
        weight.requires_grad_(not (self.config.freeze_embeddings if freeze is None else freeze))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None,
                case_ids: torch.Tensor | None = None, **_) -> dict:
        if self.config.kind == "static":
            x = self.embedding(input_ids)  # (B, W, E)
        else:
            x, _ = self.lm.encode(input_ids)  # (B, W, H_lm): left-to-right, padding comes after the words
        if self.case_embedding is not None:
            shapes = case_ids if case_ids is not None else torch.zeros_like(input_ids)
            x = torch.cat([x, self.case_embedding(shapes)], dim=-1)  # (B, W, E + C)
        x = self.dropout(x.float())
        lengths = attention_mask.sum(1).clamp(min=1).cpu()  # (B,)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        h, _ = self.bilstm(packed)
        h, _ = pad_packed_sequence(h, batch_first=True, total_length=input_ids.size(1))  # (B, W, 2H)
        logits = self.head(self.dropout(h))  # (B, W, L)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = self.loss(logits, labels, attention_mask)
        if self.crf is not None and not self.training:  # what reads the logits gets the Viterbi path
            out["logits"] = decoded_log_scores(self.crf, logits, attention_mask)
        return out

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """CRF negative log-likelihood (mean per sentence) or cross-entropy (mean per word)."""
        if self.crf is not None:
            mask = (labels != IGNORE_INDEX) & attention_mask.bool()  # (B, W)
            return self.crf(logits, labels, mask)
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)

    @torch.no_grad()
    def decode(self, logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Tag ids (B, W): Viterbi through the CRF, or argmax; -100 at padding."""
        mask = attention_mask.bool()
        if self.crf is not None:
            return self.crf.decode(logits, mask)
        return logits.argmax(-1).masked_fill(~mask, IGNORE_INDEX)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameter groups from the top (head, CRF, BiLSTM) down (embedding), for
        discriminative learning rates and gradual unfreezing, as `WordClassifier.layer_groups`."""
        top = list(self.head.parameters()) + list(self.bilstm.parameters())
        top += list(self.crf.parameters()) if self.crf is not None else []
        top += list(self.case_embedding.parameters()) if self.case_embedding is not None else []
        return [top] + self.encoder_groups()

    # -- construction from a language model ----------------------------------------------------
    @classmethod
    def from_language_model(cls, lm, num_labels: int, **options) -> WordTagger:
        """A tagger whose backbone starts as `lm` (an `RNNLanguageModel`): its weights are copied."""
        config = WordTaggerConfig(kind="rnn-lm", num_labels=num_labels, vocab_size=lm.config.vocab_size,
                                  embedding_dim=lm.config.embedding_dim, pad_id=lm.config.pad_id,
                                  rnn=lm.config.to_dict(), **options)
        tagger = cls(config)
        tagger.lm.load_state_dict(lm.state_dict())
        if config.freeze_embeddings:
            tagger.lm.embedding.weight.requires_grad = False
        return tagger

    # -- files ---------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike, **_) -> None:
        save_word_model(self, directory, CONFIG_NAME)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> WordTagger:
        return load_word_model(cls, WordTaggerConfig, directory, CONFIG_NAME, "tagger")
