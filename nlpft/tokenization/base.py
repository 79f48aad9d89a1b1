"""The one tokenizer interface every nlpft model family uses.

Static vectors consume `words()` (token strings), the RNN LM and the classifiers
consume `encode()` (ids), and Hugging Face models plug their own tokenizer in behind
the same methods. Every artifact nlpft writes carries its tokenizer as `tokenizer.json`
so a model is never paired with the wrong vocabulary by accident.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable, Sequence


class TextTokenizer(abc.ABC):
    """Text -> tokens -> ids, and back."""

    #: name of the file the tokenizer is saved as, next to every artifact
    FILENAME = "tokenizer.json"

    @abc.abstractmethod
    def words(self, text: str) -> list[str]:
        """Normalised token strings of `text`, before any vocabulary lookup."""

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        """Ids of `text`; tokens outside the vocabulary map to `unk_id`."""

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of many texts; subclasses override with a parallel implementation."""
        return [self.encode(t) for t in texts]

    @abc.abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Text for `ids` (lossy: normalisation is not undone)."""

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""

    @abc.abstractmethod
    def token_to_id(self, token: str) -> int | None: ...

    @abc.abstractmethod
    def id_to_token(self, token_id: int) -> str | None: ...

    @property
    @abc.abstractmethod
    def unk_id(self) -> int | None: ...

    @property
    @abc.abstractmethod
    def special_tokens(self) -> list[str]: ...

    @abc.abstractmethod
    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer to `path` (a file, or a directory to hold `tokenizer.json`)."""
