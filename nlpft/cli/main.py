"""The `nlpft` command line.

`main(argv) -> int` parses, dispatches and maps errors to exit codes: 0 success,
2 bad input (a `UserInputError`, or argparse's own usage errors), 1 internal error.
Subcommand modules import their heavy dependencies inside their handlers, so
`nlpft --help` starts instantly.

Shared conventions, added by `add_common_options` / `add_training_options`:
`--out DIR` (written atomically), `--seed`, `--config FILE` (YAML or JSON whose keys are
the long flag names; flags given on the command line win), and for training commands
`--epochs`, `--max-steps N` and `--resume`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nlpft import __version__
from nlpft.errors import UserInputError

EPILOG = """\
examples:
  nlpft corpus list
  nlpft embed train --algo word2vec --corpus lee --out runs/w2v
  nlpft embed eval --vectors runs/w2v
  nlpft embed neighbors --vectors runs/w2v government minister
  nlpft lm train --corpus austen.txt --out runs/lm
  nlpft lm generate --model runs/lm --prompt "It is a truth"
  nlpft models list
  nlpft encode --model minilm --input texts.txt --out vectors.npy
"""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so `main` owns the exit code."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


class UsageError(UserInputError):
    pass


def add_common_options(parser: argparse.ArgumentParser, out_required: bool = True) -> None:
    parser.add_argument("--out", required=out_required, metavar="DIR",
                        help="output directory; written atomically (a killed run leaves the old one or none)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)s)")
    parser.add_argument("--config", metavar="FILE",
                        help="YAML or JSON file of options, keys named like the flags (max-steps or max_steps); "
                             "flags on the command line override it")


def add_training_options(parser: argparse.ArgumentParser, default_epochs_help: str) -> None:
    parser.add_argument("--epochs", type=int, default=None, help=f"passes over the data ({default_epochs_help})")
    parser.add_argument("--max-steps", type=int, default=None, metavar="N",
                        help="stop after N optimizer steps: the quick smoke-test path")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last complete checkpoint of an interrupted run with the same --out")


def add_command_group(commands: argparse._SubParsersAction, name: str, **parser_options):
    """A command with verbs (`nlpft NAME VERB ...`); returns (group parser, verbs action).
    The group alone prints its help and exits with 2, as a usage error."""
    group = commands.add_parser(name, **parser_options)
    verbs = group.add_subparsers(dest="verb", metavar="VERB", parser_class=type(group))
    group.set_defaults(_handler=lambda args: (group.print_help(), 2)[1], _parser=group)
    return group, verbs


def load_config_file(path: str) -> dict:
    file = Path(path)
    if not file.is_file():
        raise UserInputError(f"{file}: config file not found; pass an existing YAML or JSON file to --config")
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # json/yaml each raise their own error types
        raise UserInputError(f"{file}: not valid {'JSON' if file.suffix == '.json' else 'YAML'} ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserInputError(f"{file}: must hold a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield sub
                yield from _subparsers(sub)


def _parse_with_config(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse once leniently to find the subcommand and --config, then again with the
    config file's values as defaults, so flags given on the command line win."""
    has_config = any(a == "--config" or a.startswith("--config=") for a in argv)
    if "-h" in argv or "--help" in argv or not has_config:
        return parser.parse_args(argv)  # no config file: one plain parse (and honest --help)
    required = [a for sub in _subparsers(parser) for a in sub._actions if a.required]
    for action in required:
        action.required = False
    try:
        args = parser.parse_args(argv)
    finally:
        for action in required:
            action.required = True
    if not getattr(args, "config", None):
        return parser.parse_args(argv)
    sub: argparse.ArgumentParser = args._parser
    values = load_config_file(args.config)
    known = {a.dest for a in sub._actions} - {"help", "config"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserInputError(
            f"{args.config}: unknown option(s) {', '.join(unknown)}; "
            f"see `{sub.prog} --help` for the names"
        )
    for action in sub._actions:
        if action.dest in values:
            action.required = False
    sub.set_defaults(**values)
    return parser.parse_args(argv)


def build_parser() -> ArgumentParser:
    from nlpft.cli import corpus as corpus_cli
    from nlpft.cli import embed as embed_cli
    from nlpft.cli import finetune as finetune_cli
    from nlpft.cli import lm as lm_cli
    from nlpft.cli import models as models_cli
    from nlpft.cli import pretrain as pretrain_cli

    parser = ArgumentParser(
        prog="nlpft",
        description="NLP pretraining and fine-tuning: static embeddings, language models, classifiers.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"nlpft {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    corpus_cli.register(commands)
    embed_cli.register(commands)
    lm_cli.register(commands)
    models_cli.register(commands)
    pretrain_cli.register(commands)
    finetune_cli.register(commands)
    return parser


class StoppedBySignal(KeyboardInterrupt):
    """Ctrl-C/SIGTERM outside a trainer's own handler (start-up, final evaluation): the run
    stops at once, keeping only complete checkpoints. Carries the signal's name."""


def _stop_at_once_on_signals() -> dict:
    """Make SIGINT/SIGTERM raise `StoppedBySignal`; returns the handlers replaced."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set them
        return {}

    def stop(signum, frame):
        raise StoppedBySignal(signal.Signals(signum).name)

    return {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}


def run_training(train) -> int:
    """Call `train()`; a Ctrl-C/SIGTERM that stopped it after writing a checkpoint becomes
    a one-line hint and the shell's 128 + signal exit code."""
    import signal

    # first, before the slow start-up (torch's import, tokenization, model loading): a signal
    # at any moment ends the run with that code; the trainers take over while training
    previous = _stop_at_once_on_signals()
    from nlpft.lm.trainer import Interrupted
    from nlpft.training.allocator import keep_freed_memory

    keep_freed_memory()  # a training step's large buffers are reused, not re-faulted (see allocator.py)
    try:
        train()
    except Interrupted as exc:
        print(f"stopped by {exc}: checkpoint written; rerun the same command with --resume to continue",
              file=sys.stderr)
        return 128 + int(getattr(signal, str(exc), signal.SIGINT))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = _parse_with_config(parser, argv)
        handler = getattr(args, "_handler", None)
        if handler is None:
            parser.print_help()
            return 2 if not argv else 0
        return int(handler(args) or 0)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except StoppedBySignal as exc:
        import signal

        print(f"stopped by {exc} before the run finished", file=sys.stderr)
        return 128 + int(getattr(signal, str(exc)))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `nlpft ... | head`: the reader left, which is fine
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    except Exception as exc:  # an internal error: say so, keep the traceback for a bug report
        import traceback

        traceback.print_exc()
        print(f"internal error: {type(exc).__name__}: {exc} (please report it)", file=sys.stderr)
        return 1


def entry() -> None:
    sys.exit(main())
