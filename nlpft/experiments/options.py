"""The options of `nlpft experiment run | status`, each declared once."""

from __future__ import annotations

from dataclasses import dataclass

from nlpft.options import check_options, option, positive_int


@dataclass(frozen=True)
class ExperimentOptions:
    config: str = option(help="the experiment's YAML file (data, corpora, steps, finetune, report)",
                         metavar="CONFIG", positional=True)
    out: str | None = option(None, "where the steps, logs, state and report go (default: runs/NAME, NAME "
                                    "from the config)", metavar="DIR")
    dry_run: bool = option(False, "print the plan (steps, keys, what is cached, what would run) and stop")
    jobs: int = option(1, "independent steps run side by side; each gets cores / N threads (default: "
                          "%(default)s)", type=positive_int, metavar="N")
    keep_going: bool = option(False, "after a step fails, go on with the steps that do not depend on it")

    def validate(self) -> None:
        check_options(self)


@dataclass(frozen=True)
class ExperimentStatusOptions:
    out: str = option(help="the --out directory of `nlpft experiment run`", metavar="DIR", positional=True)
    json: bool = option(False, "print JSON")

    def validate(self) -> None:
        check_options(self)
