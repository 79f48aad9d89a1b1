"""The options of `nlpft corpus list | stats`, each declared once (see `nlpft.options`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nlpft.data.registry import CORPUS_HELP
from nlpft.options import non_negative_int, option


@dataclass(frozen=True)
class CorpusListOptions:
    verify: bool = option(False, "check each available file's SHA-256")
    json: bool = option(False, "print JSON")


@dataclass(frozen=True)
class CorpusStatsOptions:
    corpus: Sequence[str] = option(help=CORPUS_HELP, nargs="+", metavar="PATH", positional=True, required=True)
    text_col: str = option("text", shared=True)
    min_count: int = option(5, "also report types seen at least this often (default: %(default)s)",
                            type=non_negative_int)
    lowercase: bool = option(True, "keep case", flag="--no-lowercase")
    json: bool = option(False, "print JSON")
