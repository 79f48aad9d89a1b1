"""A transformer token classifier with a linear-chain CRF over its words (`--task tag --crf`).

    encoder + token head (any AutoModelForTokenClassification) -> one score per tag per
      subword -> CRF over each word's first subword (`word_starts`), Viterbi-decoded

Trained on first subwords only (the CRF's transitions are between words); at inference
the logits are `crf.decoded_log_scores`, so the argmax is the Viterbi path and whatever
reads logits needs no CRF of its own. Saved as the stock token-classification directory
(`pipeline("token-classification")` loads it, but ignores the CRF: it decodes each
subword alone) plus the CRF in `crf.safetensors` and `crf.json`, which `nlpft predict` /
`evaluate` load with it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from nlpft.errors import UserInputError
from nlpft.finetune.crf import CRF, allowed_transitions, decoded_log_scores
from nlpft.finetune.extra_head import StockModelWithHead

CRF_CONFIG = "crf.json"
CRF_WEIGHTS = "crf.safetensors"
IGNORE_INDEX = -100


class TokenClassifierCRF(StockModelWithHead, nn.Module):
    HEAD_WEIGHTS, HEAD_CONFIG = CRF_WEIGHTS, CRF_CONFIG

    def __init__(self, tagger: nn.Module, labels: list[str], scheme: str):
        super().__init__()
        self.tagger = tagger
        self.config = tagger.config
        self.labels, self.scheme = list(labels), scheme
        # a window cut from a long sentence may begin inside an entity: no start constraint
        self.crf = CRF(len(labels), allowed_transitions(labels, scheme), constrain_start=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, word_starts: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, token_type_ids=None, **_) -> dict:
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        emissions = self.tagger(input_ids=input_ids, attention_mask=attention_mask, **extra).logits  # (B, T, L)
        scored = word_starts.bool() if word_starts is not None else attention_mask.bool()
        out = {"logits": emissions}
        if labels is not None:
            out["loss"] = self.crf(emissions, labels, (labels != IGNORE_INDEX) & attention_mask.bool())
        if not self.training:
            out["logits"] = decoded_log_scores(self.crf, emissions, scored & attention_mask.bool())
        return out

    # -- the two parts, as `StockModelWithHead` saves and loads them ----------------------------
    @property
    def stock_model(self) -> nn.Module:
        return self.tagger

    @property
    def head(self) -> nn.Module:
        return self.crf

    def head_config(self) -> dict:
        return {"labels": self.labels, "scheme": self.scheme}

    @classmethod
    def around(cls, tagger: nn.Module, directory: str | os.PathLike) -> TokenClassifierCRF:
        """The CRF saved in `directory` around `tagger` (loaded from the same directory)."""
        config = cls.read_head_config(directory)
        try:
            model = cls(tagger, config["labels"], config["scheme"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UserInputError(f"{Path(directory) / CRF_CONFIG}: damaged ({exc})") from None
        model.load_head(directory)
        model.eval()
        return model


def has_crf(directory: str | os.PathLike) -> bool:
    return TokenClassifierCRF.saved_in(directory)
