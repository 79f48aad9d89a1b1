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

import json
import os
from pathlib import Path

import torch
from torch import nn

from nlpft.errors import UserInputError
from nlpft.finetune.crf import CRF, allowed_transitions, decoded_log_scores

CRF_CONFIG = "crf.json"
CRF_WEIGHTS = "crf.safetensors"
IGNORE_INDEX = -100


class TokenClassifierCRF(nn.Module):
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

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        return self.tagger.num_parameters(exclude_embeddings=exclude_embeddings) + sum(
            p.numel() for p in self.crf.parameters())

    # -- files -------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike, **_) -> None:
        from nlpft.training.weights import save_file

        directory = Path(directory)
        self.tagger.save_pretrained(str(directory))
        tmp = directory / (CRF_WEIGHTS + ".tmp")
        save_file({k: v.detach().contiguous() for k, v in self.crf.state_dict().items()}, str(tmp))
        tmp.replace(directory / CRF_WEIGHTS)
        (directory / CRF_CONFIG).write_text(json.dumps({"labels": self.labels, "scheme": self.scheme}, indent=2)
                                            + "\n", encoding="utf-8")

    def load_checkpoint_weights(self, directory: str | os.PathLike) -> None:
        """Weights written by `save_pretrained` (a checkpoint being resumed), every tensor checked."""
        from safetensors.torch import load_model

        directory = Path(directory)
        missing, unexpected = load_model(self.tagger, str(directory / "model.safetensors"), strict=False)
        if missing or unexpected:
            raise UserInputError(f"{directory / 'model.safetensors'}: does not fit the model (missing "
                                 f"{sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
        self._load_crf(directory)

    def _load_crf(self, directory: Path) -> None:
        from safetensors.torch import load_file

        try:
            self.crf.load_state_dict(load_file(str(directory / CRF_WEIGHTS)))
        except (OSError, RuntimeError) as exc:
            raise UserInputError(f"{directory / CRF_WEIGHTS}: missing or does not fit the model ({exc})") from None

    @classmethod
    def around(cls, tagger: nn.Module, directory: str | os.PathLike) -> TokenClassifierCRF:
        """The CRF saved in `directory` around `tagger` (loaded from the same directory)."""
        directory = Path(directory)
        try:
            config = json.loads((directory / CRF_CONFIG).read_text(encoding="utf-8"))
            model = cls(tagger, config["labels"], config["scheme"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserInputError(f"{directory / CRF_CONFIG}: missing or damaged ({exc})") from None
        model._load_crf(directory)
        model.eval()
        return model


def has_crf(directory: str | os.PathLike) -> bool:
    return (Path(directory) / CRF_CONFIG).is_file()
