"""Shared tokenization: one interface for every model family (see `base.TextTokenizer`)."""

from nlpft.tokenization.base import TextTokenizer
from nlpft.tokenization.words import WordTokenizer, select_vocabulary

__all__ = ["TextTokenizer", "WordTokenizer", "select_vocabulary"]
