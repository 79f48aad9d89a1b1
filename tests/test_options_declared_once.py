"""Options are declared once: every option of a training command (and of the other verbs of
embed, lm and corpus) is a field of its options dataclass, which generates the flag
(`nlpft.cli.options.add_options`), unless the field is marked shared and one of the shared
helpers of `nlpft.cli.main` / `nlpft.cli.corpus` adds it. So the config-file keys (and the
Python API's keywords) are the field names, and an options object built in Python holds
what the command line would parse."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys

import pytest

from nlpft.cli.corpus import add_corpus_options
from nlpft.cli.main import (
    add_common_options,
    add_offline_option,
    add_training_options,
    build_parser,
    option_names,
)
from nlpft.cli.options import add_options
from nlpft.data.options import CorpusListOptions, CorpusStatsOptions
from nlpft.embeddings.options import (
    EmbedEvalOptions,
    EmbedNeighborsOptions,
    EmbedTrainOptions,
)
from nlpft.errors import UserInputError
from nlpft.finetune import plugin_options
from nlpft.finetune.options import FinetuneOptions
from nlpft.lm.options import LMEvalOptions, LMGenerateOptions, LMTrainOptions
from nlpft.options import check_options, choices_of, flag_of, option_settings
from nlpft.pretrained.options import PretrainOptions
from nlpft.report.options import CompareOptions

TRAINING_COMMANDS = {
    "finetune": FinetuneOptions,
    "embed train": EmbedTrainOptions,
    "lm train": LMTrainOptions,
    "pretrain": PretrainOptions,
}
COMMANDS = {
    **TRAINING_COMMANDS,
    "embed eval": EmbedEvalOptions,
    "embed neighbors": EmbedNeighborsOptions,
    "lm eval": LMEvalOptions,
    "lm generate": LMGenerateOptions,
    "corpus list": CorpusListOptions,
    "corpus stats": CorpusStatsOptions,
    "compare": CompareOptions,
}
# what argparse compares when it parses: two actions alike in these are the same option
ACTION_SETTINGS = ("option_strings", "dest", "nargs", "const", "default", "type", "choices", "required", "help",
                   "metavar")


def _command_parser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in command.split():
        verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = verbs.choices[word]
    return parser


def _options(command: str) -> dict[str, argparse.Action]:
    """{dest: action} of every option of `command` but --help and --config."""
    actions = [a for a in _command_parser(command)._actions if a.dest not in ("help", "config")]
    assert len({a.dest for a in actions}) == len(actions), f"{command}: two flags share a dest"
    return {a.dest: a for a in actions}


def _option_fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if option_settings(f) is not None}


def _plugin_fields(command: str) -> dict[str, dataclasses.Field]:
    """finetune's task and backbone plug-ins declare options of their own (their dataclasses)."""
    return {f.name: f for f in plugin_options.declared_fields()} if command == "finetune" else {}


def _shared_dests() -> set[str]:
    """The dests every shared helper can add, in a scratch parser."""
    scratch = argparse.ArgumentParser()
    add_corpus_options(scratch, "")
    add_offline_option(scratch)
    add_common_options(scratch)
    add_training_options(scratch, "")
    return {a.dest for a in scratch._actions} - {"help", "config"}


def _generated(cls) -> dict[str, argparse.Action]:
    """{dest: action} that `add_options` makes for every non-shared field of `cls`."""
    groups = {option_settings(f)["group"] for f in _option_fields(cls).values()}
    scratch = argparse.ArgumentParser()
    add_options(scratch, cls, groups=tuple(groups))
    return {a.dest: a for a in scratch._actions if a.dest != "help"}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_is_one_field_and_every_field_one_flag(command):
    options, fields = _options(command), _option_fields(COMMANDS[command])
    plugins = _plugin_fields(command)
    assert not set(fields) & set(plugins)
    assert sorted(options) == sorted({**fields, **plugins}), "flags without a field, or fields without a flag"
    for name, field in {**fields, **plugins}.items():
        if option_settings(field)["positional"]:
            assert options[name].option_strings == [], f"{command}: {name} is not positional"
        else:
            assert flag_of(field) in options[name].option_strings, f"{command}: field {name} is not {flag_of(field)}"


@pytest.mark.parametrize("command", COMMANDS)
def test_config_keys_are_the_field_names(command):
    cls = COMMANDS[command]
    assert set(option_names(_command_parser(command))) == set(_option_fields(cls)) | set(_plugin_fields(command))


@pytest.mark.parametrize("command", COMMANDS)
def test_no_flag_is_declared_by_hand(command):
    """A field's flag is the one `add_options` generates from it, or, for a shared field,
    one a shared helper adds; nothing else adds a flag."""
    cls = COMMANDS[command]
    options, generated, shared_dests = _options(command), _generated(cls), _shared_dests()
    for name, field in _option_fields(cls).items():
        if option_settings(field)["shared"]:
            assert name in shared_dests, f"{command}: {name} is marked shared, but no shared helper adds it"
            continue
        for setting in ACTION_SETTINGS:
            assert getattr(options[name], setting) == getattr(generated[name], setting), (
                f"{command}: {flag_of(field)} is not the flag its field generates ({setting} differs)")


@pytest.mark.parametrize("command", COMMANDS)
def test_shared_fields_match_the_flags_the_helpers_add(command):
    """A shared field's default, type and choices are its flag's, so an options object built
    in Python holds what the command line parses and `check_options` checks a value as
    argparse checks the flag."""
    options = _options(command)
    for name, field in _option_fields(COMMANDS[command]).items():
        settings, action = option_settings(field), options[name]
        default = None if field.default is dataclasses.MISSING else field.default
        assert action.default == default, f"{command}: {flag_of(field)} defaults to {action.default!r}"
        if action.nargs != 0:  # a switch has no type
            assert action.type == settings["type"], f"{command}: {flag_of(field)} is typed {action.type}"
        choices = choices_of(settings)
        assert (list(action.choices) if action.choices else None) == (list(choices) if choices else None)


@pytest.mark.parametrize(("options", "message"), [
    (EmbedTrainOptions(corpus=["lee"], out="o", dim=0), "--dim must be at least 1, not 0"),
    (EmbedTrainOptions(corpus=["lee"], out="o", algo="glove2"), "--algo: invalid choice: 'glove2'"),
    (EmbedTrainOptions(corpus=["lee"], out="o", min_n=5, max_n=3), "--min-n must be at least 1 and at most --max-n"),
    (LMTrainOptions(corpus=["lee"], out="o", hidden_dim=-3), "--hidden-dim must be at least 1, not -3"),
    (LMTrainOptions(corpus=["lee"], out="o", num_layers=1.5), "--layers 1.5 is not a whole number"),
    (LMTrainOptions(corpus=["lee"], out="o", streaming=True), "--streaming reads a corpus of unknown length"),
    (PretrainOptions(corpus=["lee"], out="o", arch="gpt2", batch_size=0), "--batch-size must be at least 1, not 0"),
    (PretrainOptions(corpus=["lee"], out="o", arch="gpt2", from_model="minilm"), "pass either --arch gpt2|bert"),
    (PretrainOptions(corpus=["lee"], out="o", arch="gpt2", max_memory_gb=0), "--max-memory must be above 0"),
])
def test_validate_words_a_bad_value_as_the_command_line_does(options, message):
    with pytest.raises(UserInputError) as caught:
        options.validate()
    assert message in str(caught.value)


@pytest.mark.parametrize(("options", "message"), [
    (EmbedNeighborsOptions(vectors="v", analogy=["king", "man"]), "--analogy takes 3 values, not 2"),
    (CorpusStatsOptions(corpus="austen.txt"), "PATH takes a list of values, not 'austen.txt'"),
    (CorpusStatsOptions(corpus=[]), "PATH takes one or more values, not 0"),
    (LMGenerateOptions(model="m", top_k=0), "--top-k must be at least 1, not 0"),
])
def test_options_that_take_several_values_are_checked_item_by_item(options, message):
    with pytest.raises(UserInputError) as caught:
        check_options(options)
    assert message in str(caught.value)


def test_validating_options_loads_nothing_heavy():
    """An options object is checked before anything runs (a config file's, a Python call's)
    without importing torch, transformers or gensim."""
    script = ("import sys\n"
              "from nlpft.embeddings.options import EmbedTrainOptions\n"
              "from nlpft.lm.options import LMTrainOptions\n"
              "from nlpft.pretrained.options import PretrainOptions\n"
              "EmbedTrainOptions(corpus=['lee'], out='o', algo='fasttext').resolved()\n"
              "LMTrainOptions(corpus=['lee'], out='o', max_steps=5, streaming=True).validate()\n"
              "PretrainOptions(corpus=['lee'], out='o', arch='bert', objective='mlm+nsp', name='mine').validate()\n"
              "print(sorted(m for m in ('torch', 'transformers', 'gensim', 'datasets') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
