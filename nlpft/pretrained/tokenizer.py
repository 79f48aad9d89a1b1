"""A Hugging Face tokenizer behind nlpft's `TextTokenizer` interface.

A pretrained model only works with the exact tokenizer it was trained with, so this
wraps the checkpoint's own tokenizer rather than converting it: `words` are its
sub-word tokens, ids are its ids, and `save` writes the files `from_pretrained` reads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from nlpft.tokenization.base import TextTokenizer

#: transformers' "no limit recorded" value for model_max_length is int(1e30)
_UNSET_MAX_LENGTH = 10**6
DEFAULT_MAX_LENGTH = 512


class HFTokenizer(TextTokenizer):
    """Wraps a `transformers` tokenizer (`.hf`). Build it with `loading.load_tokenizer`."""

    def __init__(self, hf_tokenizer, model_max_positions: int | None = None, name: str | None = None):
        self.hf = hf_tokenizer
        self.name = name or getattr(hf_tokenizer, "name_or_path", None)
        self._model_max_positions = model_max_positions
        self._vocab: dict[str, int] | None = None
        self._id_to_token: dict[int, str] | None = None

    @classmethod
    def load(cls, spec) -> HFTokenizer:
        from nlpft.pretrained.loading import load_tokenizer

        return load_tokenizer(spec)

    # -- TextTokenizer ------------------------------------------------------------
    def words(self, text: str) -> list[str]:
        return list(self.hf.tokenize(text))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Ids of `text`; without [CLS]/[SEP]-style tokens unless `add_special_tokens`."""
        return list(self.hf.encode(text, add_special_tokens=add_special_tokens))

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = False,
                     max_length: int | None = None) -> list[list[int]]:
        """Ids of many texts in one call (the Rust tokenizer runs them in parallel);
        `max_length` truncates, special tokens included."""
        if not texts:
            return []
        out = self.hf(list(texts), add_special_tokens=add_special_tokens,
                      truncation=max_length is not None, max_length=max_length,
                      return_attention_mask=False, return_token_type_ids=False)
        return [list(ids) for ids in out["input_ids"]]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.hf)  # added tokens included, unlike hf.vocab_size

    def _maps(self) -> tuple[dict[str, int], dict[int, str]]:
        if self._vocab is None:
            self._vocab = dict(self.hf.get_vocab())
            self._id_to_token = {i: t for t, i in self._vocab.items()}
        return self._vocab, self._id_to_token

    def token_to_id(self, token: str) -> int | None:
        return self._maps()[0].get(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._maps()[1].get(int(token_id))

    @property
    def unk_id(self) -> int | None:
        return self.hf.unk_token_id

    @property
    def special_tokens(self) -> list[str]:
        return list(self.hf.all_special_tokens)

    def save(self, path: str | os.PathLike) -> None:
        """A directory: `save_pretrained` (loadable by transformers and nlpft). A `.json`
        file: only the fast tokenizer's `tokenizer.json`."""
        path = Path(path)
        if path.suffix == ".json" and not path.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
            self.hf.backend_tokenizer.save(str(path))
            return
        path.mkdir(parents=True, exist_ok=True)
        self.hf.save_pretrained(str(path))

    # -- model-facing extras -------------------------------------------------------
    @property
    def pad_id(self) -> int | None:
        """The padding id, or None when the tokenizer has none (GPT-2): pad with any id
        then and rely on the attention mask."""
        return self.hf.pad_token_id

    @property
    def max_length(self) -> int:
        """Longest input the model accepts, special tokens included. When the tokenizer
        records no limit (transformers' 1e30 sentinel), the model's position count, else 512."""
        value = getattr(self.hf, "model_max_length", None)
        if isinstance(value, int) and 0 < value < _UNSET_MAX_LENGTH:
            if self._model_max_positions:
                return min(value, self._model_max_positions)
            return value
        return self._model_max_positions or DEFAULT_MAX_LENGTH

    @property
    def class_name(self) -> str:
        return type(self.hf).__name__

    def __repr__(self) -> str:
        return f"HFTokenizer({self.name!r}, {self.class_name}, vocab_size={self.vocab_size})"
