"""argparse arguments generated from option dataclasses (see `nlpft.options.option`).

One field, one flag: its help text, type, choices and --help section come from the field,
and its dest is the field's name, so the config-file key is the field's name too
(`_parse_with_config` keys on dests). Fields marked `shared` are added by the shared
helpers of `nlpft.cli.main` (--out, --seed, --epochs, ...) and only read back here.
"""

from __future__ import annotations

import argparse
import dataclasses

from nlpft.options import choices_of, flag_of, option_settings

UNGROUPED = None  # fields without a group: listed under argparse's plain "options:"


def add_options(parser: argparse.ArgumentParser, cls, groups: tuple = (UNGROUPED,)) -> None:
    """Add an argument for every non-shared option field of `cls` whose group is in
    `groups` (in `groups`' order, then declaration order); sections are made as needed."""
    sections: dict = {}
    exclusive: dict = {}
    for group in groups:
        for field in dataclasses.fields(cls):
            settings = option_settings(field)
            if settings is None or settings["shared"] or settings["group"] != group:
                continue
            target = parser if group is UNGROUPED else _section(parser, sections, group)
            if settings["exclusive"]:
                if settings["exclusive"] not in exclusive:
                    exclusive[settings["exclusive"]] = target.add_mutually_exclusive_group(
                        required=settings["required"] is not False)
                target = exclusive[settings["exclusive"]]
            argument = _argument(field, settings)
            if settings["positional"]:  # argparse names a positional argument by its dest
                target.add_argument(argument.pop("dest"), **argument)
            else:
                target.add_argument(flag_of(field), **argument)


def add_given_only_options(parser: argparse.ArgumentParser, title: str, fields) -> None:
    """A --help section `title` with an argument for each option field in `fields`, whose
    dest appears in the parsed namespace only when given (a flag, or a config-file key):
    `given_values` then tells what the user chose from what was left at its default."""
    section = _section(parser, {}, title)
    for field in fields:
        argument = _argument(field, option_settings(field))
        default = None if field.default is dataclasses.MISSING else field.default
        # the help states the dataclass default: argparse's own default is SUPPRESS
        argument["help"] = argument["help"].replace("%(default)s", str(default))
        argument["default"] = argparse.SUPPRESS
        section.add_argument(flag_of(field), **argument)


def given_values(args: argparse.Namespace, fields) -> dict:
    """{field name: value} of the fields of `add_given_only_options` that were given."""
    return {field.name: getattr(args, field.name) for field in fields if hasattr(args, field.name)}


def _section(parser: argparse.ArgumentParser, sections: dict, title: str):
    if title not in sections:
        existing = [g for g in parser._action_groups if g.title == title]
        sections[title] = existing[0] if existing else parser.add_argument_group(title)
    return sections[title]


def _argument(field: dataclasses.Field, settings: dict) -> dict:
    help_text = settings["help"]() if callable(settings["help"]) else settings["help"]
    argument = {"dest": field.name, "help": help_text}
    default = None if field.default is dataclasses.MISSING else field.default
    if isinstance(default, bool):
        argument["action"] = "store_false" if default else "store_true"
        return argument
    argument["default"] = default
    for key in ("type", "metavar", "nargs"):
        if settings[key] is not None:
            argument[key] = settings[key]
    if settings["choices"] is not None:
        argument["choices"] = list(choices_of(settings))
    if settings["required"] and not settings["exclusive"] and not settings["positional"]:
        argument["required"] = True
    return argument


def from_args(cls, args: argparse.Namespace, **values):
    """An instance of `cls` from parsed arguments (fields not on the command line keep
    their defaults; `values` win)."""
    known = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**known, **values})
