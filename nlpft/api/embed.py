"""`nlpft.embed`: static word vectors from Python."""

from __future__ import annotations

from nlpft.api.commands import train_embeddings
from nlpft.api.results import EmbeddingResult


def train(**options) -> EmbeddingResult:
    """`nlpft embed train` from Python: its options as keywords (corpus=..., out=...,
    algo="glove", dim=50, ...). Returns an EmbeddingResult: path, metrics, files, and the
    vectors as gensim KeyedVectors."""
    return train_embeddings(**options)
