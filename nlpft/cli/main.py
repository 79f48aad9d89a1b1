"""The `nlpft` command line.

`main(argv) -> int` parses, dispatches and maps errors to exit codes: 0 success,
2 bad input (a `UserInputError`, or argparse's own usage errors), 1 internal error.
Subcommand modules import their heavy dependencies inside their handlers, so
`nlpft --help` starts instantly.

Shared conventions, added by `add_common_options` / `add_training_options`:
`--out DIR` (written atomically and safely: see nlpft/runners/output.py) with `--overwrite`,
`--seed`, `--config FILE` (YAML or JSON whose keys are the long flag names; flags given on
the command line win), and for training commands `--epochs`, `--max-steps N`, `--resume`,
`--max-memory GIB` (a cap on the whole run, see `nlpft.training.memory`) and, for those
with a training loop, `--report-to` (see `nlpft.training.reporting`). Commands that take a
model spec add `--offline` (`add_offline_option`): hub ids from the cache only.

Config values pass the same checks as flags: each goes through its option's `type=` and
`choices=` (a list for options that take several values, a real boolean for switches), so
`batch_size: [8, 16]` or `dim: 10.7` stop at once, naming the file and the key. Numeric
options use the range-checking types of `nlpft.options` (`positive_int`, `seed_int`, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import reprlib
import sys
from pathlib import Path

from nlpft.errors import UserInputError
from nlpft.options import (  # noqa: F401  (the CLI modules take the range-checked types from here)
    CONFIG_MAX_BYTES,
    NUMBER_TYPES,
    WHOLE_NUMBER_TYPES,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seed_int,
)
from nlpft.options import load_yaml as _load_yaml
from nlpft.training.reporting import REPORT_TO, REPORT_TO_HELP
from nlpft.version import __version__

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
  nlpft finetune --train polarity --out runs/clf
  nlpft export --model runs/bbc --format onnx --quantize int8 --out runs/bbc-onnx
  nlpft serve --model runs/clf --port 8000
  nlpft experiment run exp.yaml --out runs/exp
  nlpft compare runs/clf-a runs/clf-b --out report
"""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so `main` owns the exit code."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


class UsageError(UserInputError):
    pass


OUT_HELP = ("output directory, written atomically (a killed run leaves the old one or none); a new or empty "
            "directory, or an earlier nlpft output with --overwrite; never the current directory, an input "
            "or one holding an input; one run at a time (a second one is refused)")


def add_overwrite_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier nlpft output in --out (nlpft never deletes a directory it "
                             "did not write)")


def add_common_options(parser: argparse.ArgumentParser, out_required: bool = True) -> None:
    parser.add_argument("--out", required=out_required, metavar="DIR", help=OUT_HELP)
    add_overwrite_option(parser)
    parser.add_argument("--seed", type=seed_int, default=1, help="random seed (default: %(default)s)")
    add_config_option(parser)


OFFLINE_HELP = ("never contact the Hugging Face Hub: hub ids load from the local cache only, as with "
                "HF_HUB_OFFLINE=1 (without either, a hub id downloads what the cache lacks: configs, tokenizer "
                "files and safetensors weights, never code or pickles)")


def add_offline_option(parser: argparse.ArgumentParser) -> None:
    """--offline, for every command that takes a model spec (--model, --from, MODEL)."""
    parser.add_argument("--offline", action="store_true", help=OFFLINE_HELP)


@contextlib.contextmanager
def hub_offline_while(offline: bool):
    """With --offline, HF_HUB_OFFLINE=1 while the command runs: nlpft's loaders read it when
    they resolve a hub id, and any worker process inherits it."""
    if not offline:
        yield
        return
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="YAML or JSON file of options, keys named like the flags (max-steps or max_steps); "
                             "flags on the command line override it")


MAX_MEMORY_HELP = ("stop the run with exit code 2 once its memory (private resident memory, sampled every "
                   "0.2 s, whole run: reading, tokenizer training, encoding, training) passes GIB")


def add_training_options(parser: argparse.ArgumentParser, default_epochs_help: str,
                         max_memory_default: float | None = None, max_memory_help: str = "",
                         reports_training: bool = True) -> None:
    """The options every training command shares; `reports_training` False for a command
    whose training `--report-to` does not cover (embed train)."""
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help=f"passes over the data ({default_epochs_help})")
    parser.add_argument("--max-steps", type=positive_int, default=None, metavar="N",
                        help="stop after N optimizer steps: the quick smoke-test path")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last complete checkpoint of an interrupted run with the same --out")
    default_help = (f"default: {max_memory_default:g} GiB" if max_memory_default is not None
                    else "default: 80%% of physical memory")
    parser.add_argument("--max-memory", dest="max_memory_gb", type=positive_float, default=max_memory_default,
                        metavar="GIB", help=f"{MAX_MEMORY_HELP}{max_memory_help} ({default_help})")
    if reports_training:
        parser.add_argument("--report-to", choices=REPORT_TO, default="none", help=REPORT_TO_HELP)


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
    size = file.stat().st_size
    if size > CONFIG_MAX_BYTES:
        raise UserInputError(f"{file}: {size:,} bytes is too big for a config file (the limit is "
                             f"{CONFIG_MAX_BYTES:,}); it should hold a few option names and values")
    is_json = file.suffix.lower() == ".json"
    try:
        text = file.read_text(encoding="utf-8")
        data = json.loads(text) if is_json else _load_yaml(text)
    except UserInputError as exc:
        raise UserInputError(f"{file}: {exc}") from None
    except Exception as exc:  # json/yaml each raise their own error types
        raise UserInputError(f"{file}: not valid {'JSON' if is_json else 'YAML'} ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserInputError(f"{file}: must hold a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60


def _expected(action: argparse.Action) -> str:
    """What an option takes, for a config error: "true or false", "a list of ...", ..."""
    if action.nargs == 0:
        return "true or false"
    kind = "a text"
    if action.choices is not None:
        kind = "one of " + ", ".join(map(str, action.choices))
    elif action.type in WHOLE_NUMBER_TYPES:
        kind = "a whole number"
    elif action.type in NUMBER_TYPES:
        kind = "a number"
    if action.nargs in ("+", "*") or isinstance(action.nargs, int):
        return f"a list, each item {kind}"
    return kind


def _config_value(parser: argparse.ArgumentParser, action: argparse.Action, value, file: str):
    """`value` from the config file, checked and converted by `action` exactly like the
    same value given as a flag. Raises UserInputError naming the file, key and value."""
    def wrong(reason: str) -> UserInputError:
        return UserInputError(f"{file}: {action.dest}: {_short.repr(value)} is not valid ({reason}); "
                              f"expected {_expected(action)}")

    if action.nargs == 0:  # a switch: the key names its dest, so the boolean is the value itself
        if not isinstance(value, bool):
            raise wrong("a switch takes true or false")
        return value
    if isinstance(value, dict) and getattr(action.type, "accepts_mapping", False):
        value = json.dumps(value)  # a mapping option (finetune's search_space) reads JSON text
    takes_list = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if not takes_list and isinstance(value, list):
        raise wrong("one value, not a list")
    items = value if isinstance(value, list) else [value]  # `corpus: austen.txt` is a list of one
    if action.nargs == "+" and not items:
        raise wrong("the list is empty")
    if isinstance(action.nargs, int) and len(items) != action.nargs:
        raise wrong(f"{len(items)} items, not {action.nargs}")
    converted = []
    for item in items:
        if item is None or isinstance(item, (bool, dict, list)):
            raise wrong(f"{_short.repr(item)} is not a plain value")
        try:  # argparse's own conversion and choice check, as for a flag
            result = parser._get_value(action, str(item))
            parser._check_value(action, result)
        except argparse.ArgumentError as exc:
            raise wrong(exc.message) from None
        converted.append(result)
    return converted if takes_list else converted[0]


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
    apply_option_values(args._parser, load_config_file(args.config), args.config)
    return parser.parse_args(argv)


def option_names(sub: argparse.ArgumentParser) -> list[str]:
    """The option names (dests) a command takes from a config file or as Python keywords."""
    return [a.dest for a in sub._actions if a.dest not in ("help", "config")]


def apply_option_values(sub: argparse.ArgumentParser, values: dict, source: str) -> None:
    """Make `values` ({option name: value}, from a config file or the Python API) the
    defaults of the command `sub`, each checked and converted as its flag would be; an
    unknown name is an error naming `source` and the closest known name."""
    known = option_names(sub)
    unknown = sorted(set(values) - set(known))
    if unknown:
        import difflib

        hints = [f"{name} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(name, known, n=1))
                 else name for name in unknown]
        raise UserInputError(f"{source}: unknown option(s) {', '.join(hints)}; see `{sub.prog} --help` for the names")
    checked = {}
    for action in sub._actions:
        if values.get(action.dest) is not None:  # null: as if the key were absent
            checked[action.dest] = _config_value(sub, action, values[action.dest], source)
            action.required = False
    sub.set_defaults(**checked)


def build_parser() -> ArgumentParser:
    from nlpft.cli import compare as compare_cli
    from nlpft.cli import corpus as corpus_cli
    from nlpft.cli import embed as embed_cli
    from nlpft.cli import experiment as experiment_cli
    from nlpft.cli import export as export_cli
    from nlpft.cli import finetune as finetune_cli
    from nlpft.cli import lm as lm_cli
    from nlpft.cli import models as models_cli
    from nlpft.cli import pretrain as pretrain_cli
    from nlpft.cli import serve as serve_cli

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
    export_cli.register(commands)
    experiment_cli.register(commands)
    serve_cli.register(commands)
    compare_cli.register(commands)
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


def run_training(train, max_memory_gb: float | None = None) -> int:
    """Call `train()` under the `--max-memory` cap; a Ctrl-C/SIGTERM that stopped it after
    writing a checkpoint becomes a one-line hint and the shell's 128 + signal exit code."""
    import signal

    # first, before the slow start-up (torch's import, tokenization, model loading): a signal
    # at any moment ends the run with that code; the trainers take over while training
    previous = _stop_at_once_on_signals()
    from nlpft.errors import Interrupted
    from nlpft.training.allocator import keep_freed_memory
    from nlpft.training.memory import MemoryCap

    keep_freed_memory()  # a training step's large buffers are reused, not re-faulted (see allocator.py)
    try:
        with MemoryCap(max_memory_gb):
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
        with hub_offline_while(getattr(args, "offline", False)):
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
