"""Word-level tokenization: the pipeline static vectors, GloVe and the RNN LM share.

The pipeline is a `tokenizers.Tokenizer`: NFKC (+ lowercase) normaliser, a pre-tokenizer
that splits on anything that is not a letter or digit (an apostrophe inside a word stays:
"don't", "o'clock"), and a WordLevel model whose vocabulary is built from corpus counts.
It is saved as one `tokenizer.json` that stock `tokenizers` loads.

Speed: calling the Rust pre-tokenizer from Python line by line costs more in call
overhead than in splitting (~1M words/s here). For this exact pipeline the same split is
one compiled `regex` call (~3.4M words/s), so `words()` takes that path whenever the
loaded tokenizer's normaliser and pre-tokenizer are the canonical ones. A test checks
that both paths give identical tokens; any other pipeline goes through `tokenizers`.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import regex
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

from nlpft.errors import UserInputError
from nlpft.tokenization.base import TextTokenizer

#: Separators: runs of non-letters/digits, and apostrophes that do not sit between two
#: letters/digits (quotes). What is left are the words.
WORD_SEPARATOR = r"[^\p{L}\p{N}'’]+|(?<![\p{L}\p{N}])['’]+|['’]+(?![\p{L}\p{N}])"

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN)


def _normalizer(lowercase: bool) -> normalizers.Normalizer:
    steps = [normalizers.NFKC()]
    if lowercase:
        steps.append(normalizers.Lowercase())
    return normalizers.Sequence(steps)


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Split(Regex(WORD_SEPARATOR), behavior="removed")


def _component_json(tokenizer: Tokenizer) -> tuple[str, str]:
    state = json.loads(tokenizer.to_str())
    return json.dumps(state.get("normalizer"), sort_keys=True), json.dumps(
        state.get("pre_tokenizer"), sort_keys=True
    )


def _canonical_lowercase(tokenizer: Tokenizer) -> bool | None:
    """True/False when `tokenizer` uses the canonical word pipeline (with/without
    lowercasing), None when it uses anything else."""
    for lowercase in (True, False):
        probe = Tokenizer(models.WordLevel({UNK_TOKEN: 0}, unk_token=UNK_TOKEN))
        probe.normalizer = _normalizer(lowercase)
        probe.pre_tokenizer = _pre_tokenizer()
        if _component_json(probe) == _component_json(tokenizer):
            return lowercase
    return None


class WordTokenizer(TextTokenizer):
    """A word-level tokenizer backed by `tokenizers.Tokenizer`.

    Ids 0 and 1 are `[PAD]` and `[UNK]`; words follow in descending corpus frequency,
    so `words_in_vocab()` lists exactly the rows of a vector table.
    """

    def __init__(self, tokenizer: Tokenizer):
        self._tok = tokenizer
        lowercase = _canonical_lowercase(tokenizer)
        self._fast_split = None
        if lowercase is not None:
            separator = regex.compile(WORD_SEPARATOR)
            if lowercase:
                self._fast_split = lambda text: separator.split(
                    unicodedata.normalize("NFKC", text).lower()
                )
            else:
                self._fast_split = lambda text: separator.split(unicodedata.normalize("NFKC", text))
        self.lowercase = bool(lowercase)

    # -- construction ---------------------------------------------------------------
    @classmethod
    def untrained(cls, lowercase: bool = True) -> "WordTokenizer":
        """The pipeline with an empty vocabulary: enough for `words()` and counting."""
        return cls.from_vocabulary([], lowercase=lowercase)

    @classmethod
    def from_vocabulary(cls, words: Sequence[str], lowercase: bool = True) -> "WordTokenizer":
        vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
        for word in words:
            if word in vocab:
                raise ValueError(f"duplicate word in vocabulary: {word!r}")
            vocab[word] = len(vocab)
        tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK_TOKEN))
        tok.normalizer = _normalizer(lowercase)
        tok.pre_tokenizer = _pre_tokenizer()
        tok.add_special_tokens(list(SPECIAL_TOKENS))
        return cls(tok)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "WordTokenizer":
        path = Path(path)
        if path.is_dir():
            path = path / cls.FILENAME
        if not path.is_file():
            raise UserInputError(f"{path}: no tokenizer file here; pass the tokenizer.json nlpft wrote")
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise UserInputError(f"{path}: not a valid tokenizer.json ({exc})") from None

    # -- TextTokenizer ----------------------------------------------------------------
    def words(self, text: str) -> list[str]:
        if self._fast_split is not None:
            return [w for w in self._fast_split(text) if w]
        normalized = self._tok.normalizer.normalize_str(text) if self._tok.normalizer else text
        return [w for w, _ in self._tok.pre_tokenizer.pre_tokenize_str(normalized)]

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        # Rust, parallel over texts
        return [e.ids for e in self._tok.encode_batch_fast(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._tok.id_to_token(token_id)

    @property
    def unk_id(self) -> int | None:
        return self._tok.token_to_id(UNK_TOKEN)

    @property
    def special_tokens(self) -> list[str]:
        """Special tokens in id order: [PAD], [UNK], and any added later (e.g. the LM's [EOS])."""
        added = self._tok.get_added_tokens_decoder()
        return [token.content for _, token in sorted(added.items()) if token.special]

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / self.FILENAME
        self._tok.save(str(path))

    # -- word vocabulary ------------------------------------------------------------
    def words_in_vocab(self) -> list[str]:
        """The vocabulary without special tokens, in id order (most frequent first)."""
        special = set(self.special_tokens)
        tokens = (self._tok.id_to_token(i) for i in range(self.vocab_size))
        return [t for t in tokens if t not in special]

    @property
    def backend(self) -> Tokenizer:
        """The underlying `tokenizers.Tokenizer`."""
        return self._tok


def select_vocabulary(counts: Counter, min_count: int = 5, max_vocab: int | None = None) -> list[str]:
    """Words with at least `min_count` occurrences, most frequent first (ties broken
    alphabetically so the order is reproducible), cut to `max_vocab`."""
    kept = [(w, c) for w, c in counts.items() if c >= min_count]
    kept.sort(key=lambda wc: (-wc[1], wc[0]))
    if max_vocab is not None and max_vocab > 0:
        kept = kept[:max_vocab]
    return [w for w, _ in kept]
