"""The training commands as functions: keywords parsed as the command's config file
would be, then the command's own run function, under its memory cap, with the process's
state kept (see `nlpft.api`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nlpft.api.results import CompareResult, EmbeddingResult, FinetuneResult, RunResult
from nlpft.errors import UserInputError


def finetune(**options) -> FinetuneResult:
    """`nlpft finetune`: train a classifier, regressor or tagger; see `nlpft finetune --help`
    for the options (train=..., out=... are required)."""
    from nlpft.cli.finetune import finetune_from_args

    return FinetuneResult.read(_run(("finetune",), options, finetune_from_args, uses_torch=True))


def train_embeddings(**options) -> EmbeddingResult:
    """`nlpft embed train` (as `nlpft.embed.train`): static word vectors; see
    `nlpft embed train --help` (corpus=..., out=... are required)."""
    from nlpft.cli.embed import train_from_args

    return EmbeddingResult.read(_run(("embed", "train"), options, train_from_args, uses_torch=False))


def train_language_model(**options) -> RunResult:
    """`nlpft lm train` (as `nlpft.lm.train`): an RNN language model; see
    `nlpft lm train --help` (corpus=..., out=... are required)."""
    from nlpft.cli.lm import train_from_args

    return RunResult.read(_run(("lm", "train"), options, train_from_args, uses_torch=True))


def pretrain(**options) -> RunResult:
    """`nlpft pretrain`: a GPT-2 or BERT-style transformer; see `nlpft pretrain --help`
    (corpus=..., out=..., and arch=... or from_model=...)."""
    from nlpft.cli.pretrain import pretrain_from_args

    return RunResult.read(_run(("pretrain",), options, pretrain_from_args, uses_torch=True))


def compare(runs, out, primary: str | None = None, overwrite: bool = False) -> CompareResult:
    """`nlpft compare`: the comparison report of finished fine-tuning runs (their output
    directories, tested on the same rows) written to `out`; see `nlpft compare --help`."""
    from nlpft.api.state import process_state_kept
    from nlpft.cli.options import from_args
    from nlpft.report.options import CompareOptions
    from nlpft.runners.compare import run_compare

    if isinstance(runs, (str, Path)):
        raise UserInputError("nlpft.compare(): runs must be a list of run directories, not one path")
    options = {"runs": [str(run) for run in runs], "out": str(out), "primary": primary, "overwrite": overwrite}
    with process_state_kept(import_torch_first=False):
        args = parse_options(("compare",), options, caller="nlpft.compare()")
        return CompareResult.read(run_compare(from_args(CompareOptions, args)).parent)


def _run(command: tuple[str, ...], options: dict, run_from_args, uses_torch: bool) -> Path:
    """Parse `options` as `command`'s, then run it as the command line does, under its
    --max-memory cap (and, with offline=True, with the Hub's cache only), leaving the
    process's state as it was; returns OUT."""
    from nlpft.api.state import process_state_kept
    from nlpft.cli.main import hub_offline_while
    from nlpft.errors import Interrupted
    from nlpft.training.allocator import keep_freed_memory
    from nlpft.training.memory import MemoryCap

    # the one process-wide setting a call keeps, as the command line sets it: malloc's
    # thresholds, so training reuses freed buffers (1.45x faster MiniLM steps; see allocator.py).
    # It changes no result, only speed and how memory is returned to the system
    keep_freed_memory()
    with process_state_kept(import_torch_first=uses_torch):
        args = parse_options(command, options)
        try:
            with hub_offline_while(getattr(args, "offline", False)), MemoryCap(args.max_memory_gb):
                return Path(run_from_args(args))
        except Interrupted as exc:
            raise KeyboardInterrupt(f"stopped by {exc}: checkpoint written; call again with resume=True "
                                    "to continue") from None


def parse_options(command: tuple[str, ...], options: dict, caller: str | None = None) -> argparse.Namespace:
    """The namespace `nlpft COMMAND` would parse with `options` as its config file; a
    missing required option, an unknown or a bad one raises UserInputError naming
    `caller` (default: the function named like the command, e.g. nlpft.embed.train())."""
    from nlpft.cli.main import apply_option_values, build_parser

    caller = caller or f"nlpft.{'.'.join(command)}()"
    parser = build_parser()
    sub = _command_parser(parser, command)
    apply_option_values(sub, options, caller)
    missing = [action.dest for action in sub._actions if action.required]
    if missing:
        raise UserInputError(f"{caller}: missing {', '.join(f'{name}=...' for name in missing)}")
    return parser.parse_args(list(command))


def _command_parser(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> argparse.ArgumentParser:
    for word in command:
        verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = verbs.choices[word]
    return parser
