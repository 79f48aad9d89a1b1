"""A transformer encoder read by mean pooling, with a linear head (`--pooling mean`).

Sentence-embedding checkpoints such as all-MiniLM-L6-v2 were trained to be read by
averaging their token states over the attention mask; their `[CLS]` pooler was never
trained for that. The stock `*ForSequenceClassification` classes only offer the `[CLS]`
pooler, so this classifier is nlpft's own class:

    encoder (any Hugging Face AutoModel) -> token states (B, T, H)
      -> mean over real tokens (B, H) -> dropout -> Linear(H, num_labels)

Saved as a standard Hugging Face encoder directory (`AutoModel` and
`pipeline("feature-extraction")` load it without nlpft) plus the head in
`pooled_head.safetensors` and `pooled_head.json`. `nlpft predict`/`evaluate` load both;
`pipeline("text-classification")` cannot, since it knows no mean pooling.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from nlpft.errors import UserInputError
from nlpft.finetune.extra_head import StockModelWithHead

HEAD_CONFIG = "pooled_head.json"
HEAD_WEIGHTS = "pooled_head.safetensors"
POOLINGS = ("cls", "mean")


class MeanPoolClassifier(StockModelWithHead, nn.Module):
    HEAD_WEIGHTS, HEAD_CONFIG = HEAD_WEIGHTS, HEAD_CONFIG

    def __init__(self, encoder: nn.Module, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config  # id2label/label2id live here, saved with the encoder
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)
        self.classifier.weight.data.normal_(0.0, getattr(encoder.config, "initializer_range", 0.02))
        self.classifier.bias.data.zero_()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids=None, labels=None,
                **_) -> dict:
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, H)
        return {"logits": self.classifier(self.dropout(pooled))}

    # -- the two parts, as `StockModelWithHead` saves and loads them ----------------------------
    @property
    def stock_model(self) -> nn.Module:
        return self.encoder

    @property
    def head(self) -> nn.Module:
        return self.classifier

    def head_config(self) -> dict:
        return {"pooling": "mean", "num_labels": self.classifier.out_features, "dropout": self.dropout.p}

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> MeanPoolClassifier:
        from nlpft.pretrained.loading import load_model

        config = cls.read_head_config(directory)
        try:
            num_labels, dropout = int(config["num_labels"]), float(config.get("dropout", 0.1))
        except (ValueError, KeyError, TypeError) as exc:
            raise UserInputError(f"{Path(directory) / HEAD_CONFIG}: damaged ({exc})") from None
        model = cls(load_model(str(directory), head="base", quiet=True), num_labels, dropout)
        model.load_head(directory)
        model.eval()
        return model
