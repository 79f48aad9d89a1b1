"""The hyperparameter search space of `nlpft finetune --search N`, declared once.

Each backbone declares its space (`Backbone.search_space(opts)`: a {name: `Param`} mapping
whose names are finetune options, e.g. `lr`, `batch_size`, `head_c`); `--help` lists it
(`search_help`) and the config file's `search_space:` mapping overrides parts of it
(`resolve_space`). In the config file a range is `[low, high]` or `[low, high, log]` and a
choice is a list of values, e.g.

    search_space:
      lr: [1.0e-5, 1.0e-3, log]
      batch_size: [16, 32]

A parameter keeps its declared kind: a range stays a range (whole numbers for a whole-number
option), a choice stays a choice; every value passes the option's own range check.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass

from nlpft.errors import UserInputError

LOG = "log"


@dataclass(frozen=True)
class Param:
    """One searched option: a range (`low`..`high`, log-uniform when `log`; whole numbers
    when `whole`) or a choice among `choices`."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    whole: bool = False
    choices: tuple = ()

    @property
    def is_choice(self) -> bool:
        return bool(self.choices)

    def describe(self) -> str:
        if self.is_choice:
            return "|".join(f"{c:g}" if isinstance(c, float) else str(c) for c in self.choices)
        return f"{self.low:g}..{self.high:g}" + (" log" if self.log else "")

    def to_json(self) -> list:
        """The config-file form of this parameter."""
        if self.is_choice:
            return list(self.choices)
        return [self.low, self.high, *([LOG] if self.log else [])]


def describe_space(space: dict[str, Param]) -> str:
    return ", ".join(f"{name} {param.describe()}" for name, param in space.items())


def space_to_json(space: dict[str, Param]) -> dict:
    return {name: param.to_json() for name, param in space.items()}


def search_space_text(text) -> str:
    """argparse type of --search-space: a JSON object (the config file's `search_space:`
    mapping arrives here as JSON). Its keys and ranges are checked against the backbone's
    space once the backbone is known (`resolve_space`)."""
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"is not a JSON object ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must map parameter names to [low, high], [low, high, log] or choices")
    return text if isinstance(text, str) else json.dumps(text)


search_space_text.accepts_mapping = True  # the config file may give a mapping (see nlpft.cli.main)


def resolve_space(declared: dict[str, Param], overrides: str | None, model: str) -> dict[str, Param]:
    """The declared space with the `--search-space` / config `search_space` entries put in;
    UserInputError naming the key for an unknown parameter or a bad range."""
    if not overrides:
        return dict(declared)
    given = json.loads(overrides)
    space = dict(declared)
    for name, spec in given.items():
        if name not in declared:
            raise UserInputError(f"search_space: {name!r} is not a searched parameter of --model {model}; "
                                 f"it searches {', '.join(declared)}")
        space[name] = _override(name, declared[name], spec)
    return space


def _override(name: str, declared: Param, spec) -> Param:
    def bad(reason: str) -> UserInputError:
        expected = ("a list of choices" if declared.is_choice
                    else "[low, high]" + ("" if declared.whole else " or [low, high, log]"))
        return UserInputError(f"search_space: {name}: {spec!r} {reason}; expected {expected}")

    items = spec if isinstance(spec, list) else [spec]  # `batch_size: 16` is a choice of one
    if declared.is_choice:
        if not items or any(isinstance(v, (bool, dict, list)) or v is None for v in items):
            raise bad("is not a list of plain values")
        return Param(choices=tuple(_checked(name, v, bad) for v in items))
    log = len(items) == 3 and items[2] == LOG
    if len(items) != (3 if log else 2) or (log and declared.whole):
        raise bad("is not a range")
    low, high = (_checked(name, v, bad) for v in items[:2])
    if declared.whole and not all(float(v).is_integer() for v in (low, high)):
        raise bad("must be whole numbers")
    if not low < high:
        raise bad("must have low below high")
    if log and low <= 0:
        raise bad("must be above 0 for a log range")
    return Param(low=int(low) if declared.whole else float(low), high=int(high) if declared.whole else float(high),
                 log=log, whole=declared.whole)


def _checked(name: str, value, bad):
    """`value` through the finetune option's own type (the range check of its flag)."""
    from nlpft.finetune.options import FinetuneOptions
    from nlpft.options import option_settings

    if isinstance(value, str):  # YAML reads 1e-5 (no dot) as text
        value = _number(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad(f"holds {value!r}, not a number")
    field = next(f for f in dataclasses.fields(FinetuneOptions) if f.name == name)
    convert = (option_settings(field) or {}).get("type")
    if convert is not None:
        try:
            return convert(value)
        except argparse.ArgumentTypeError as exc:
            raise bad(f"holds {value!r}, which {exc}") from None
    return value


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def search_help() -> str:
    """--search's help: the method, then each backbone's space (backbones with the same space
    share a line)."""
    from nlpft.finetune.backbones import backbone_class, backbone_names

    by_space: dict[str, list[str]] = {}
    for name in backbone_names():
        by_space.setdefault(describe_space(backbone_class(name).search_parameters), []).append(name)
    spaces = "; ".join(f"{', '.join(names)}: {space}" for space, names in by_space.items())
    return ("N trials of hyperparameter search with Optuna (TPE sampler, median pruner on each evaluation's "
            "validation score), chosen on the validation split only; the best trial's model is the output, with "
            "trials.csv and a search section in report.md; --resume continues a killed search. Needs pip install "
            f"'nlpft[search]'. Searched (override with --search-space or the config key search_space): {spaces}")
