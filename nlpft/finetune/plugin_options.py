"""Options a task or backbone plug-in declares itself.

A plug-in class sets `options` to a frozen dataclass of `nlpft.options.option` fields (or
leaves it None): the tag task declares `--tag-scheme`, `--crf`, ...; BERT-style encoders
`--pooling`. Registering the plug-in (`tasks.register`, `backbones.register`) declares its
fields here, so `nlpft finetune` gets their flags, their --help section (titled by who
owns them) and their config keys with no other edit.

Users see one flat set of flags and config keys. `finetune` resolves the values given
(`FinetuneOptions.task_options` / `backbone_options`: a dict, or the dataclass itself) into
the selected plug-in's dataclass; a value for an option the selected plug-in does not
declare is an error naming the option and its owner. Options left at their defaults are
not given: the command line passes only the flags and config keys the user wrote.

Two plug-ins of one kind may declare the same option only through the same dataclass field
(one dataclass, or one inherited from); any other clash, with another plug-in's option or
with a core option of `nlpft finetune`, fails at registration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nlpft.errors import UserInputError
from nlpft.options import check_options, flag_of, option_settings

TASK = "task"
BACKBONE = "backbone"
OPTIONS_FIELD = {TASK: "task_options", BACKBONE: "backbone_options"}  # where FinetuneOptions holds them

# (kind, plug-in name) -> plug-in class, in registration order (--help lists sections so)
_DECLARED: dict[tuple[str, str], type] = {}


@dataclass(frozen=True)
class Section:
    """One --help section: the options owned by the same plug-ins."""

    title: str
    fields: tuple


def option_fields(plugin: type) -> tuple:
    """The option fields of the dataclass `plugin.options` (none when it declares none)."""
    options = getattr(plugin, "options", None)
    if options is None:
        return ()
    return tuple(f for f in dataclasses.fields(options) if option_settings(f) is not None)


def declare(kind: str, plugin: type) -> None:
    """Record `plugin`'s options; raises ValueError for an option that clashes with a core
    option or with another plug-in's (an identical field shared by one kind is fine)."""
    from nlpft.finetune.options import FinetuneOptions

    core_fields = dataclasses.fields(FinetuneOptions)
    core = {f.name for f in core_fields} | {flag_of(f) for f in core_fields}
    others = [(k, p) for (k, name), p in _DECLARED.items() if (k, name) != (kind, plugin.name)]
    for field in option_fields(plugin):
        if field.name in core or flag_of(field) in core:
            raise ValueError(f"{plugin.__name__} declares {flag_of(field)}, a core option of nlpft finetune")
        for other_kind, other in others:
            for theirs in option_fields(other):
                if theirs.name != field.name and flag_of(theirs) != flag_of(field):
                    continue
                if theirs is not field or other_kind != kind:
                    raise ValueError(f"{plugin.__name__} declares {flag_of(field)}, which {other.__name__} declares "
                                     "already; share the very dataclass field (within tasks or within backbones) "
                                     "or name the option differently")
    _DECLARED[(kind, plugin.name)] = plugin


def retract(kind: str, name: str) -> None:
    _DECLARED.pop((kind, name), None)


def declared_fields() -> list:
    """Every plug-in option field, each once, in registration order."""
    seen: dict = {}
    for plugin in _DECLARED.values():
        for field in option_fields(plugin):
            seen.setdefault(field.name, field)
    return list(seen.values())


def _owners(name: str) -> list[tuple[str, type]]:
    return [(kind, plugin) for (kind, _), plugin in _DECLARED.items()
            if any(f.name == name for f in option_fields(plugin))]


def kind_of(name: str) -> str | None:
    """TASK or BACKBONE for a declared option's field name; None for another name."""
    owners = _owners(name)
    return owners[0][0] if owners else None


def sections() -> list[Section]:
    """The --help sections: the options grouped by the plug-ins that own them."""
    grouped: dict[tuple, list] = {}
    for field in declared_fields():
        grouped.setdefault(tuple(_owners(field.name)), []).append(field)
    tasks_first = sorted(grouped.items(), key=lambda item: item[0][0][0] != TASK)  # stable: registration order
    return [Section(_title(owners), tuple(fields)) for owners, fields in tasks_first]


def _title(owners: tuple) -> str:
    """"--task tag", "--model: static vectors, the RNN LM" (one kind owns an option)."""
    if owners[0][0] == TASK:
        return " | ".join(f"--task {plugin.name}" for _, plugin in owners)
    return "--model: " + ", ".join(plugin.owner_name() for _, plugin in owners)


def _describe_owners(name: str) -> str:
    """"--task tag", "BERT-style encoders (--model minilm, ...)": who takes option `name`."""
    return " or ".join(f"--task {p.name}" if kind == TASK else p.owner_description() for kind, p in _owners(name))


def split_given(values: Mapping) -> dict:
    """{"task_options": {...}, "backbone_options": {...}} of the plug-in option values given
    (e.g. on the command line), each under the kind of plug-in that declares it."""
    split: dict = {field: {} for field in OPTIONS_FIELD.values()}
    for name, value in values.items():
        kind = kind_of(name)
        if kind is None:
            raise UserInputError(f"unknown option {name!r}; see `nlpft finetune --help` for the names")
        split[OPTIONS_FIELD[kind]][name] = value
    return split


def resolve(kind: str, plugin: type, given, selected: str):
    """The options dataclass of `plugin` (None when it declares none) from `given`: None (all
    defaults), that dataclass itself, or a mapping of values. A value for an option that
    `plugin` does not declare is a UserInputError naming the option, its owner and
    `selected` (how the user picked `plugin`, e.g. "--task single")."""
    options_class = getattr(plugin, "options", None)
    if options_class is not None and isinstance(given, options_class):
        values = None
    elif given is None:
        values = {}
    elif isinstance(given, Mapping):
        values = dict(given)
    elif dataclasses.is_dataclass(given) and not isinstance(given, type):  # another plug-in's: each value given
        values = {f.name: getattr(given, f.name) for f in dataclasses.fields(given)}
    else:
        raise UserInputError(f"{OPTIONS_FIELD[kind]} must be a dict of option values, not {type(given).__name__}")
    if values is not None:
        own = {f.name for f in dataclasses.fields(options_class)} if options_class is not None else set()
        for name in values:
            if name not in own:
                raise UserInputError(_not_for(name, selected, plugin))
        if options_class is None:
            return None
        given = options_class(**values)
    check_options(given)
    validate = getattr(given, "validate", None)
    if validate is not None:
        validate()
    return given


def _not_for(name: str, selected: str, plugin: type) -> str:
    owners = _owners(name)
    if owners:
        flag = next(flag_of(f) for f in option_fields(owners[0][1]) if f.name == name)
        return f"{flag} applies to {_describe_owners(name)}, not to {selected}"
    takes = ", ".join(flag_of(f) for f in option_fields(plugin)) or "no options of its own"
    return f"unknown option {name!r}; {selected} takes {takes}"


def saved(kind: str, plugin: type, meta: dict, bad: Callable[[str], Exception] | None = None):
    """The options `plugin` was trained with, back from finetune.json's "options" (older
    files kept them flat among the core options). `bad(problem)` makes the error raised
    for a damaged file."""
    options_class = getattr(plugin, "options", None)
    if options_class is None:
        return None
    saved_options = meta.get("options") or {}
    values = saved_options.get(OPTIONS_FIELD[kind])
    if values is None:  # a finetune.json written before plug-ins declared their options
        values = {f.name: saved_options[f.name] for f in dataclasses.fields(options_class) if f.name in saved_options}
    fail = bad or (lambda problem: UserInputError(f"finetune.json: {problem}"))
    if not isinstance(values, dict):
        raise fail(f"field 'options.{OPTIONS_FIELD[kind]}' is not an object")
    own = {f.name for f in dataclasses.fields(options_class)}
    unknown = sorted(set(values) - own)
    if unknown:
        raise fail(f"field 'options.{OPTIONS_FIELD[kind]}' holds {', '.join(unknown)}, which {plugin.name} does "
                   "not declare")
    options = options_class(**values)
    try:
        check_options(options)
    except UserInputError as exc:
        raise fail(f"field 'options.{OPTIONS_FIELD[kind]}': {exc}") from None
    return options
