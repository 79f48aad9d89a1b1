"""Sentence embeddings from a pretrained encoder: pooled hidden states, one row per text.

Texts are tokenized once, sorted by length and batched, so each batch is padded only
to its own longest text (dynamic padding) and little compute goes to padding; rows are
put back in input order at the end. Mean pooling averages only real tokens (the
attention mask zeroes the padding), so a text's vector does not depend on what else
is in its batch. "cls" takes the first token's state instead (BERT-style [CLS]).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from nlpft.errors import UserInputError

POOLINGS = ("mean", "cls")


class SentenceEncoder:
    """A loaded model + tokenizer, reusable across `encode` calls."""

    def __init__(self, model, tokenizer, name: str | None = None, family: str = "unknown",
                 path: str | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer  # an HFTokenizer
        self.name = name
        self.family = family
        self.path = path

    @classmethod
    def load(cls, spec, quiet: bool = False) -> SentenceEncoder:
        from nlpft.pretrained.loading import load_model, load_tokenizer, resolve_model

        resolved = resolve_model(spec)
        return cls(load_model(resolved, head="base", quiet=quiet), load_tokenizer(resolved),
                   name=resolved.name, family=resolved.family, path=str(resolved.path))

    @property
    def dim(self) -> int:
        config = self.model.config
        for key in ("hidden_size", "n_embd", "d_model", "dim"):
            if isinstance(getattr(config, key, None), int):
                return getattr(config, key)
        raise AttributeError("model config names no hidden size")

    def encode(self, texts: Sequence[str], batch_size: int = 32, max_length: int = 256,
               pooling: str = "mean", normalize: bool = False,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """float32 array (len(texts), dim). `progress(done, total)` is called after each batch."""
        if pooling not in POOLINGS:
            raise UserInputError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        if pooling == "cls" and self.family == "decoder":
            raise UserInputError("cls pooling needs an encoder (a decoder's first token sees nothing "
                                 "after it); use mean pooling")
        if batch_size < 1 or max_length < 1:
            raise UserInputError("batch size and max length must be at least 1")
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        max_length = min(max_length, self.tokenizer.max_length)
        ids = self.tokenizer.encode_batch(texts, add_special_tokens=True, max_length=max_length)
        empty = [i for i, seq in enumerate(ids) if not seq]
        if empty:
            raise UserInputError(f"text {empty[0]} has no tokens; drop empty texts before encoding")
        return self.encode_ids(ids, batch_size=batch_size, pooling=pooling, normalize=normalize, progress=progress)

    def encode_ids(self, ids: Sequence[Sequence[int]], batch_size: int = 32, pooling: str = "mean",
                   normalize: bool = False, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """`encode` of texts already tokenized (special tokens included, none empty, each within
        the model's positions): e.g. the windows of long texts."""
        import torch

        if not len(ids):
            return np.zeros((0, self.dim), dtype=np.float32)
        pad = self.tokenizer.pad_id if self.tokenizer.pad_id is not None else 0
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # longest first: memory peaks early
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                width = max(len(ids[i]) for i in rows)
                input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, i in enumerate(rows):
                    input_ids[r, :len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
                    mask[r, :len(ids[i])] = 1
                hidden = self.model(input_ids=input_ids.to(device), attention_mask=mask.to(device))
                hidden = hidden.last_hidden_state.float()
                if pooling == "mean":
                    m = mask.to(device).unsqueeze(-1).to(hidden.dtype)
                    vectors = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
                else:
                    vectors = hidden[:, 0]
                if normalize:
                    vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
                out[rows] = vectors.cpu().numpy()
                if progress is not None:
                    progress(min(start + batch_size, len(order)), len(order))
        return out


def encode_texts(spec, texts: Sequence[str], batch_size: int = 32, max_length: int = 256,
                 pooling: str = "mean", normalize: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Sentence embeddings of `texts` with the model `spec` (alias, directory, hub id,
    or an already loaded `SentenceEncoder` to skip loading), as float32 (n, dim)."""
    encoder = spec if isinstance(spec, SentenceEncoder) else SentenceEncoder.load(spec)
    return encoder.encode(texts, batch_size=batch_size, max_length=max_length, pooling=pooling,
                          normalize=normalize, progress=progress)
