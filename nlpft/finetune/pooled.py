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

import json
import os
from pathlib import Path

import torch
from torch import nn

from nlpft.errors import UserInputError

HEAD_CONFIG = "pooled_head.json"
HEAD_WEIGHTS = "pooled_head.safetensors"
POOLINGS = ("cls", "mean")


class MeanPoolClassifier(nn.Module):
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

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        return self.encoder.num_parameters(exclude_embeddings=exclude_embeddings) + sum(
            p.numel() for p in self.classifier.parameters())

    # -- files -------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike, **_) -> None:
        from nlpft.training.weights import save_file

        directory = Path(directory)
        self.encoder.save_pretrained(str(directory))
        head = {"weight": self.classifier.weight.detach().contiguous(),
                "bias": self.classifier.bias.detach().contiguous()}
        tmp = directory / (HEAD_WEIGHTS + ".tmp")
        save_file(head, str(tmp))
        tmp.replace(directory / HEAD_WEIGHTS)
        (directory / HEAD_CONFIG).write_text(json.dumps(
            {"pooling": "mean", "num_labels": self.classifier.out_features, "dropout": self.dropout.p},
            indent=2) + "\n", encoding="utf-8")

    def load_checkpoint_weights(self, directory: str | os.PathLike) -> None:
        """Weights written by `save_pretrained` (a checkpoint being resumed), every tensor checked."""
        from safetensors.torch import load_file, load_model

        directory = Path(directory)
        missing, unexpected = load_model(self.encoder, str(directory / "model.safetensors"), strict=False)
        if missing or unexpected:
            raise UserInputError(f"{directory / 'model.safetensors'}: does not fit the encoder (missing "
                                 f"{sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
        self.classifier.load_state_dict(load_file(str(directory / HEAD_WEIGHTS)))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> MeanPoolClassifier:
        from safetensors.torch import load_file

        from nlpft.pretrained.loading import load_model

        directory = Path(directory)
        try:
            head_config = json.loads((directory / HEAD_CONFIG).read_text(encoding="utf-8"))
            head = load_file(str(directory / HEAD_WEIGHTS))
        except (OSError, ValueError) as exc:
            raise UserInputError(f"{directory}: mean-pooling head files missing or damaged ({exc})") from None
        model = cls(load_model(str(directory), head="base", quiet=True), head_config["num_labels"],
                    head_config.get("dropout", 0.1))
        try:
            model.classifier.load_state_dict(head)
        except RuntimeError as exc:
            raise UserInputError(f"{directory / HEAD_WEIGHTS}: does not fit the encoder ({exc})") from None
        model.eval()
        return model

