"""The options of `nlpft compare`, declared once (see `nlpft.options.option`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nlpft.options import check_options, option


@dataclass(frozen=True)
class CompareOptions:
    runs: Sequence[str] = option(help="finished `nlpft finetune` output directories, tested on the same rows; runs "
                                   "whose options differ only in --seed are the seeds of one model",
                             metavar="RUN", nargs="+", positional=True, required=True)
    out: str = option(shared=True)
    overwrite: bool = option(False, shared=True)
    primary: str | None = option(None, "the metric models are ranked by and the frontier plot shows, a key of the "
                                       "runs' test metrics (default: macro_f1 for single and multi, spearman for "
                                       "regression, micro_f1 = entity F1 for tag)", metavar="METRIC")

    def validate(self) -> None:
        check_options(self)
