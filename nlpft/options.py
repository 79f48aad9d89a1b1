"""Options declared once: a dataclass field carries its help text, flag, type and choices.

    @dataclass
    class Options:
        batch_size: int = option(16, "default: %(default)s", type=positive_int, group="optimisation")

`nlpft.cli.options` turns such fields into argparse arguments (and so into config-file
keys, which are the arguments' dests); `check_options` runs the same types and choices
over a dataclass built in Python, so the API rejects a value with the very message the
command line gives.

The range-checking types below accept the text argparse hands them and, for the Python
API, a number of the right kind; they raise `argparse.ArgumentTypeError`, which argparse
reports as a usage error and `check_options` as a `UserInputError` naming the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Sequence

from nlpft.errors import SEED_LIMIT, UserInputError

# metadata key under which `option` stores its settings on a dataclass field
OPTION = "nlpft_option"


def option(default=dataclasses.MISSING, help: str = "", *, flag: str | None = None,
           type: Callable | None = None, choices: Sequence | Callable[[], Sequence] | None = None,
           group: str | None = None, metavar: str | None = None, exclusive: str | None = None,
           nargs: str | int | None = None, positional: bool = False, shared: bool = False,
           fingerprinted: bool = False, required: bool | None = None):
    """A dataclass field that is also a command-line option.

    help          the --help text (argparse's %(default)s works); a callable is asked at
                  parser-build time (e.g. to list what a registry holds)
    flag          the long flag (default: --field-name); a bool field whose default is True
                  is a switch that turns it off (give it a flag such as --no-group-by-length)
    type          converts and range-checks the text of a flag (the types in this module)
    choices       the allowed values, or a callable returning them (a registry's names)
    group         the --help section
    exclusive     the name of a one-of group: exactly one of its flags must be given, or at
                  most one where its fields say required=False
    nargs         how many values the flag takes, as argparse counts them ("+", "*", or a
                  number); the field holds a list of them
    positional    given by position, not by a flag (named by its metavar in messages)
    shared        the flag is added by the CLI's shared helpers (--out, --seed, --epochs, ...),
                  not from this field; the field still receives its value
    fingerprinted the option shapes the data, labels or model: a resumed run must repeat it
    required      the flag must be given (for a field without a default); see `exclusive`
    """
    metadata = {OPTION: {"help": help, "flag": flag, "type": type, "choices": choices, "group": group,
                         "metavar": metavar, "exclusive": exclusive, "nargs": nargs, "positional": positional,
                         "shared": shared, "fingerprinted": fingerprinted, "required": required}}
    return dataclasses.field(default=default, metadata=metadata)


def option_settings(field: dataclasses.Field) -> dict | None:
    """The settings `option` stored on `field`, or None for a plain field."""
    return field.metadata.get(OPTION)


def flag_of(field: dataclasses.Field) -> str:
    """The long flag of `field`; for a positional argument, its metavar (as argparse names it)."""
    settings = option_settings(field) or {}
    if settings.get("positional"):
        return settings.get("metavar") or field.name
    return settings.get("flag") or "--" + field.name.replace("_", "-")


def choices_of(settings: dict) -> Sequence | None:
    choices = settings.get("choices")
    return choices() if callable(choices) else choices


def check_options(options) -> None:
    """Run every option's type and choices over the values of the dataclass `options`.
    Raises UserInputError naming the flag, worded as the command line words it."""
    for field in dataclasses.fields(options):
        settings = option_settings(field)
        value = getattr(options, field.name)
        if settings is None or value is None:
            continue
        flag = flag_of(field)
        for item in _values(flag, settings.get("nargs"), value):
            _check_value(flag, settings, item)


def _values(flag: str, nargs, value) -> list:
    """The values an option holds: itself, or the items of the list a flag with `nargs` takes."""
    if nargs is None:
        return [value]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise UserInputError(f"{flag} takes a list of values, not {value!r}")
    if (isinstance(nargs, int) and len(value) != nargs) or (nargs == "+" and not value):
        raise UserInputError(f"{flag} takes {'one or more' if nargs == '+' else nargs} values, not {len(value)}")
    return list(value)


def _check_value(flag: str, settings: dict, value) -> None:
    convert = settings.get("type")
    if convert is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise UserInputError(f"{flag} must be a single value, not {value!r}")
        try:
            convert(value)
        except argparse.ArgumentTypeError as exc:
            raise UserInputError(f"{flag} {exc}") from None
    choices = choices_of(settings)
    if choices is not None and value not in choices:
        raise UserInputError(f"{flag}: invalid choice: {value!r} (choose from {', '.join(map(repr, choices))})")


def fingerprinted_options(options) -> dict:
    """{--field-name: value} for the options marked `fingerprinted`, in declaration order
    (named after the field, not a negating flag, so a saved fingerprint reads plainly)."""
    return {"--" + f.name.replace("_", "-"): getattr(options, f.name) for f in dataclasses.fields(options)
            if (option_settings(f) or {}).get("fingerprinted")}


# a config file is a handful of options: anything bigger is a mistake (or an attack)
CONFIG_MAX_BYTES = 1 << 20


def load_yaml(text: str):
    """YAML without aliases: `*name` can repeat a value exponentially often (the "billion
    laughs"), and options never need one."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise UserInputError(f"line {mark.line + 1}: YAML aliases (*name) are not allowed in config "
                                     "files; write the value out")
            return super().compose_node(parent, index)

    return yaml.load(text, Loader=NoAliasLoader)  # safe: a SafeLoader subclass builds plain data only


# -- argparse types that check ranges: one place, the same wording everywhere ------------
def _integer(text) -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if isinstance(text, float):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _real(text) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def positive_float(text) -> float:
    value = _real(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {value}")
    return value


def non_negative_float(text) -> float:
    value = _real(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def seed_int(text) -> int:
    value = _integer(text)
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be from 0 to {SEED_LIMIT - 1}, not {value}")
    return value


WHOLE_NUMBER_TYPES = (int, positive_int, non_negative_int, seed_int)
NUMBER_TYPES = (float, positive_float, non_negative_float)
