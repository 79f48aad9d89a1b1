"""A stock Hugging Face model with a head of nlpft's own beside it, and their files.

    directory/  the stock model's own files (`save_pretrained`: config.json,
                model.safetensors, ...), which transformers loads without nlpft
                + <head>.safetensors  the extra head's weights
                + <head>.json         what rebuilding the head needs

`StockModelWithHead` is the part such a model shares (the mean-pooling classifier of
`nlpft.finetune.pooled`, the token CRF of `nlpft.finetune.token_crf`): saving both parts,
loading a checkpoint's weights back strictly, and counting parameters. A class using it
names its two parts (`stock_model`, `head`), its two file names and the head's config.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import ClassVar

from torch import nn

from nlpft.errors import UserInputError

STOCK_WEIGHTS = "model.safetensors"


class StockModelWithHead:
    HEAD_WEIGHTS: ClassVar[str]  # file name of the head's weights
    HEAD_CONFIG: ClassVar[str]  # file name of the head's config

    @property
    def stock_model(self) -> nn.Module:
        raise NotImplementedError

    @property
    def head(self) -> nn.Module:
        raise NotImplementedError

    def head_config(self) -> dict:
        """What `HEAD_CONFIG` records: enough to rebuild the head before its weights load."""
        raise NotImplementedError

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        return self.stock_model.num_parameters(exclude_embeddings=exclude_embeddings) + sum(
            p.numel() for p in self.head.parameters())

    def save_pretrained(self, directory: str | os.PathLike, **_) -> None:
        """The stock directory, then the head's weights (written to a temporary name, then
        renamed) and its config."""
        from nlpft.training.weights import save_file

        directory = Path(directory)
        self.stock_model.save_pretrained(str(directory))
        tmp = directory / (self.HEAD_WEIGHTS + ".tmp")
        save_file({k: v.detach().contiguous() for k, v in self.head.state_dict().items()}, str(tmp))
        tmp.replace(directory / self.HEAD_WEIGHTS)
        (directory / self.HEAD_CONFIG).write_text(json.dumps(self.head_config(), indent=2) + "\n",
                                                   encoding="utf-8")

    def load_checkpoint_weights(self, directory: str | os.PathLike) -> None:
        """Weights written by `save_pretrained` (a checkpoint being resumed), every tensor checked."""
        from safetensors.torch import load_model

        directory = Path(directory)
        missing, unexpected = load_model(self.stock_model, str(directory / STOCK_WEIGHTS), strict=False)
        if missing or unexpected:
            raise UserInputError(f"{directory / STOCK_WEIGHTS}: does not fit the model (missing "
                                 f"{sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
        self.load_head(directory)

    def load_head(self, directory: str | os.PathLike) -> None:
        """The head's weights from `directory`, which must fit it exactly."""
        from safetensors.torch import load_file

        from nlpft.pretrained.loading.safety import check_safetensors, first_line

        path = Path(directory) / self.HEAD_WEIGHTS
        if not path.is_file():
            raise UserInputError(f"{path}: missing; the model directory is incomplete, save it again")
        check_safetensors(path)
        try:
            self.head.load_state_dict(load_file(str(path)))
        except RuntimeError as exc:  # other tensor names or shapes
            raise UserInputError(f"{path}: does not fit the model ({first_line(exc)})") from None

    @classmethod
    def read_head_config(cls, directory: str | os.PathLike) -> dict:
        path = Path(directory) / cls.HEAD_CONFIG
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserInputError(f"{path}: missing or damaged ({exc})") from None
        if not isinstance(config, dict):
            raise UserInputError(f"{path}: damaged (a JSON object expected)")
        return config

    @classmethod
    def saved_in(cls, directory: str | os.PathLike) -> bool:
        """Whether `directory` holds this kind of head."""
        return (Path(directory) / cls.HEAD_CONFIG).is_file()
