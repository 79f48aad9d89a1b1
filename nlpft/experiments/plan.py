"""The plan of an experiment: its steps in dependency order, each with a content key.

A step's key is the sha256 of its command, its options (less those that only say where
and how it writes: out, resume, overwrite, quiet, threads), the content hashes of its input
files (`nlpft.data.fingerprint.input_sha256`: corpora, data files, vectors, models), the
keys of the steps it depends on, and the nlpft version; 12 hex digits of it name the
step's directory, `OUT/steps/<name>-<key>/`. A finished directory with the step's key is
its result: changing one step changes its key and the keys of everything downstream of
it, and nothing else.

Fine-tuning runs are steps too: one per backbone x grid point x seed, named
`ft-<backbone>[-<grid point>]-s<seed>`. Options the backbone does not use (its plug-in
says which: TF-IDF trains no optimiser) are left out of its runs: a grid over lr gives
TF-IDF one run per seed, keyed without lr.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from nlpft.errors import UserInputError
from nlpft.experiments.config import (
    ExperimentConfig,
    Launch,
    StepRef,
    _command_table,
    step_references,
)
from nlpft.finetune.methods import options_without_effect, searched_options
from nlpft.options import flag_of, option_settings

KEY_LENGTH = 12
LR_FAR = 10  # an lr this many times away from a backbone's default rates gets a note in the plan
# options that say where and how a step writes, not what it computes
NOT_IN_KEY = ("out", "resume", "overwrite", "quiet", "threads")
# options whose value is an input read from disk (or a name standing for one)
INPUT_FIELDS = ("corpus", "train", "valid", "test", "init_vectors", "tokenizer", "from_model", "model")


@dataclass
class Step:
    name: str
    kind: str                       # embed | lm | pretrain | finetune
    words: tuple                    # the nlpft command: ("embed", "train"), ("finetune",), ...
    options: dict                   # field name -> value, a StepRef for another step's output
    launch: Launch = field(default_factory=Launch)
    model: str | None = None        # finetune: the backbone as the config names it
    seed: int | None = None         # finetune: the seed
    backbone: str | None = None     # finetune: the backbones entry's name (model adds the grid point)
    key: str = ""
    inputs: dict = field(default_factory=dict)   # path -> content hash, for `status` to recheck

    @property
    def depends_on(self) -> list[str]:
        return list(dict.fromkeys(ref.step for ref in step_references(self.options)))

    @property
    def directory_name(self) -> str:
        return f"{self.name}-{self.key}"


@dataclass
class Plan:
    name: str
    steps: list                     # Step, dependencies first
    primary: str | None = None
    notes: list = field(default_factory=list)   # what the plan made of the config, e.g. options a backbone ignores

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def to_json(self, out: Path) -> dict:
        """The plan as `status` reads it; input paths relative to `out`, so an experiment
        moved with its inputs (or OUT next to them) still finds them."""
        return {"name": self.name, "primary": self.primary, "steps": [
            {"name": s.name, "kind": s.kind, "command": " ".join(s.words), "key": s.key, "dir": s.directory_name,
             "depends_on": s.depends_on, "model": s.model, "seed": s.seed,
             "inputs": {_relative(path, out): digest for path, digest in s.inputs.items()}}
            for s in self.steps]}


def _relative(path: str, out: Path) -> str:
    return os.path.relpath(path, out) if os.path.exists(path) else path


def recorded_input(path: str, out: Path) -> str:
    """The input `path` of plan.json as a path from here (see `Plan.to_json`)."""
    return str(out / path) if not os.path.isabs(path) and os.path.exists(out / path) else path


def build_plan(config: ExperimentConfig) -> Plan:
    """The steps of `config` in dependency order, each with its key."""
    from nlpft.version import __version__

    commands = _command_table()
    steps = [Step(name=spec.name, kind=spec.command, words=commands[spec.command][0], options=spec.options,
                  launch=spec.launch) for spec in config.steps.values()]
    steps = _dependencies_first(steps)
    notes = []
    if config.finetune is not None:
        finetune_steps, notes = _finetune_steps(config)
        steps += finetune_steps
    keys: dict[str, str] = {}
    for step in steps:
        _check_installed(step, config.source)
        step.inputs = _input_hashes(step)
        keyed_options = {k: _keyed_value(v, keys) for k, v in sorted(step.options.items())
                         if k not in NOT_IN_KEY and (k not in INPUT_FIELDS or step_references({k: v}))}
        # the inputs by content, not by path: a moved experiment keeps its keys
        contents = {name: [step.inputs[item] for item in _input_items(step, name)] for name in INPUT_FIELDS}
        material = {"command": list(step.words), "options": keyed_options, "inputs": contents,
                    "depends_on": [keys[d] for d in step.depends_on], "nlpft": __version__,
                    "launch": dataclasses.asdict(step.launch)}
        digest = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()
        step.key = keys[step.name] = digest[:KEY_LENGTH]
    return Plan(name=config.name, steps=steps, primary=config.primary, notes=notes)


def _keyed_value(value, keys: dict):
    """An option value as the key sees it: a step reference as that step's key (and the file
    in its output); in a list mixing references and inputs, each input as a stand-in (its
    content is hashed with the inputs), so that a moved experiment keeps its keys."""
    def one(item):
        if isinstance(item, StepRef):
            return f"step:{keys[item.step]}" + (f"/{item.file}" if item.file else "")
        return "input" if isinstance(value, list) else item

    return [one(item) for item in value] if isinstance(value, list) else one(value)


def _dependencies_first(steps: list[Step]) -> list[Step]:
    """Steps ordered so each follows those it depends on (the config has no cycles)."""
    by_name = {s.name: s for s in steps}
    ordered: list[Step] = []
    placed: set[str] = set()

    def place(step: Step) -> None:
        if step.name in placed:
            return
        for dependency in step.depends_on:
            place(by_name[dependency])
        placed.add(step.name)
        ordered.append(step)

    for step in steps:
        place(step)
    return ordered


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_") or "x"


def _finetune_steps(config: ExperimentConfig) -> tuple[list[Step], list[str]]:
    """The fine-tuning runs, and the notes saying which options a backbone does not use.

    An option the backbone plug-in says cannot change its training (`options_without_effect`:
    TF-IDF trains no optimiser, so lr is nothing to it) is left out of its runs, so it
    neither multiplies them (a grid over lr gives TF-IDF one run per seed) nor enters
    their keys (adding lr to the grid reuses the TF-IDF runs). A backbone that is a
    step's output is not there to ask yet, so every option applies to it."""
    spec = config.finetune
    steps, notes = [], []
    for index, backbone in enumerate(spec.backbones):
        label, grid = spec.backbone_labels[index], spec.grid_of(index)
        runs: dict = {}
        for point in _grid_points(grid):
            kept, options, point_notes = _run_options(config, index, point)
            runs.setdefault(tuple(kept.items()), options)
            notes += point_notes
        for kept, options in runs.items():
            point_name = "".join(f"-{_safe(k)}{_safe(str(v))}" for k, v in kept)
            for seed in spec.seeds:
                steps.append(Step(name=f"ft-{_safe(Path(label).name)}{point_name}-s{seed}", kind="finetune",
                                  words=("finetune",), options={**options, "model": backbone, "seed": seed},
                                  launch=spec.launch, model=label + point_name.replace("-", " ", 1).rstrip(),
                                  seed=seed, backbone=label))
    return steps, list(dict.fromkeys(notes))


def _run_options(config: ExperimentConfig, index: int, point: dict) -> tuple[dict, dict, list[str]]:
    """(`point` less the options backbone `index` does not use, the options of its run there,
    notes on what was left out)."""
    spec = config.finetune
    backbone, label, own = spec.backbones[index], spec.backbone_labels[index], spec.backbone_options[index]
    options = {**spec.options, **own, **point}
    detectable = None if isinstance(backbone, StepRef) else backbone
    method = options.get("method", _finetune_default("method"))
    unused = options_without_effect(detectable, method)
    kept = {k: v for k, v in point.items() if k not in unused}
    grid = spec.grid_of(index)
    named = f"{label} with method {method}" if "method" in grid else label
    notes = _unused_notes(named, grid, {**spec.options, **own}, unused)
    options = {k: v for k, v in options.items() if k not in unused}
    notes += _far_lr_notes(config, index, options, method)
    if options.get("search"):
        searched = searched_options(detectable, method)
        _refuse_searched_grid(config, index, kept, searched)
        options, cut = _space_searched_by(options, searched, label)
        notes += cut
    return kept, options, notes


def _far_lr_notes(config: ExperimentConfig, index: int, options: dict, method: str) -> list[str]:
    """A note when a run's lr is over LR_FAR times away from every default rate of its
    backbone (`Backbone.default_lr_range`): one grid over lr for every backbone gives static
    vectors and the RNN LM (2e-3) a transformer's 2e-5, at which they barely learn. A
    backbone that is a step's output is known by the step's command (`Backbone.made_by`)."""
    from nlpft.finetune.backbones import backbone_class, backbone_names
    from nlpft.finetune.methods import training_backbones

    backbone, label = config.finetune.backbones[index], config.finetune.backbone_labels[index]
    try:  # YAML reads 2e-5 (no dot) as text; the command's own type takes either
        lr = float(options["lr"])
    except (KeyError, TypeError, ValueError):
        return []
    if isinstance(backbone, StepRef):
        command = config.steps[backbone.step].command
        classes = [backbone_class(name) for name in backbone_names() if command in backbone_class(name).made_by]
    else:
        classes = training_backbones(backbone, method)
    ranges = [cls.default_lr_range for cls in classes if cls.default_lr_range]
    if not ranges:
        return []
    low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
    if low / LR_FAR <= lr <= high * LR_FAR:
        return []
    default = f"{low:g}" if low == high else f"{low:g} to {high:g}"
    below = lr < low
    shared = "lr" not in config.finetune.backbone_options[index] and "lr" not in config.finetune.backbone_grids[index]
    advice = f"; give {label} an lr of its own in its backbones entry" if shared else ""
    return [f"lr {lr:g} is over {LR_FAR}x {'below' if below else 'above'} the default of {label} ({default}): its runs "
            f"may {'barely learn' if below else 'diverge'}{advice}"]


def _space_searched_by(options: dict, searched: frozenset, label: str) -> tuple[dict, list[str]]:
    """The run's --search-space cut to what its backbone searches (a range for a
    transformer's lr is nothing to TF-IDF, whose search tunes its C), and a note of the cut."""
    space = json.loads(options.get("search_space") or "{}")
    left_out = [k for k in space if k not in searched]
    if not left_out:
        return options, []
    space = {k: v for k, v in space.items() if k in searched}
    options = {k: v for k, v in options.items() if k != "search_space"}
    if space:
        options["search_space"] = json.dumps(space)
    note = (f"search.space {', '.join(left_out)} {'does' if len(left_out) == 1 else 'do'} not apply to {label} "
            f"(its search tunes {', '.join(sorted(searched))})")
    return options, [note]


def _refuse_searched_grid(config: ExperimentConfig, index: int, point: dict, searched: frozenset) -> None:
    """A grid over a parameter the backbone's search tunes would be overridden by every trial."""
    both = [key for key in point if key in searched]
    if both:
        spec = config.finetune
        where = f"finetune.backbones[{index}]" if both[0] in spec.backbone_grids[index] else "finetune"
        raise UserInputError(f"{config.source}: {where}.grid.{both[0]}: the search of {spec.backbone_labels[index]} "
                             f"may tune {both[0]} (finetune.search); grid it or search it, not both")


def _grid_points(grid: dict) -> list[dict]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def _finetune_default(name: str):
    from nlpft.finetune.options import FinetuneOptions

    return next(f.default for f in dataclasses.fields(FinetuneOptions) if f.name == name)


def _unused_notes(label: str, grid: dict, options: dict, unused: frozenset) -> list[str]:
    """"grid lr does not apply to tfidf (one run per seed)", and the like for options given."""
    notes = []
    dropped = [k for k in grid if k in unused]
    if dropped:
        rest = [k for k in grid if k not in unused]
        runs = f"one run per seed and value of {', '.join(rest)}" if rest else "one run per seed"
        notes.append(f"grid {', '.join(dropped)} {'does' if len(dropped) == 1 else 'do'} not apply to {label} ({runs})")
    given = [k for k in options if k in unused and k not in grid]
    if given:
        notes.append(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to {label} (left out of "
                     "its runs)")
    return notes


def _check_installed(step: Step, source) -> None:
    """Every name of `nlpft corpus list` the step reads is on this machine: a missing one is an
    error of the plan (dry run included), not of each step that reads it."""
    from nlpft.data.registry import load_registry

    registry = None
    for name in INPUT_FIELDS:
        for item in _input_items(step, name):
            if os.path.exists(item):
                continue
            registry = registry or load_registry()
            entry = registry.get(item)
            if entry is not None and entry.path() is None:
                raise UserInputError(f"{source}: step {step.name}, {name}: {item!r} is not on this machine; to get "
                                     f"it: {entry.obtain}")


def _input_hashes(step: Step) -> dict:
    """{path or name: content hash} of the step's inputs (step references excluded: their
    keys stand for them)."""
    return {item: content_hash(item) for name in INPUT_FIELDS for item in _input_items(step, name)}


def content_hash(item: str) -> str | None:
    """The content hash of an input: a file's or directory's (`input_sha256`); for a name
    of `nlpft corpus list` (austen, bbc-news, ...) the sha256 its registry entry records;
    for any other name (tfidf, minilm, hf:NAME) the name itself."""
    from nlpft.data.fingerprint import input_sha256
    from nlpft.data.registry import load_registry

    if not os.path.exists(item):
        entry = load_registry().get(item)
        if entry is not None:
            return entry.sha256
    return input_sha256(item)


def _input_items(step: Step, name: str) -> list[str]:
    value = step.options.get(name)
    return [item for item in (value if isinstance(value, list) else [value]) if isinstance(item, str)]


def step_argv(step: Step, directories: dict, out: Path, threads: int | None, resume: bool) -> list[str]:
    """The nlpft command line of `step` (without the launcher): its options as flags, each
    step reference replaced by that step's directory, `--out`, a thread budget where the
    config sets none, and `--resume` when resuming."""
    fields = _option_fields(step)
    argv = list(step.words)
    def path_of(item):
        if not isinstance(item, StepRef):
            return item
        return str(directories[item.step] / item.file) if item.file else str(directories[item.step])

    for name, value in step.options.items():
        value = [path_of(item) for item in value] if isinstance(value, list) else path_of(value)
        argv += _flag_values(fields[name], value)
    if threads is not None and step.options.get("threads") is None and "threads" in fields:
        argv += ["--threads", str(threads)]
    argv += ["--out", str(out), "--quiet"] if "quiet" in fields else ["--out", str(out)]
    if resume:
        argv.append("--resume")
    return argv


def launcher_argv(step: Step, python: str) -> list[str]:
    """How the step's process starts: `python -m nlpft`, or torchrun with its process counts."""
    if step.launch.launcher == "torchrun":
        return ["torchrun", "--nproc-per-node", str(step.launch.nproc_per_node), "--nnodes",
                str(step.launch.nnodes), "-m", "nlpft"]
    return [python, "-m", "nlpft"]


def _option_fields(step: Step) -> dict:
    """{name: dataclass field} of the options the step's command takes (for finetune, with
    those its plug-ins declare)."""
    if step.kind == "finetune":
        from nlpft.experiments.config import plugin_option_fields
        from nlpft.finetune.options import FinetuneOptions

        return {f.name: f for f in [*dataclasses.fields(FinetuneOptions), *plugin_option_fields()]}
    if step.kind == "split":
        from nlpft.experiments.config import split_option_fields

        return {f.name: f for f in split_option_fields()}
    return {f.name: f for f in dataclasses.fields(_command_table()[step.kind][1])}


def _flag_values(option_field: dataclasses.Field, value) -> list[str]:
    """The command-line words that give `value` to the option `option_field`."""
    if value is None:
        return []
    flag = flag_of(option_field)
    default = option_field.default
    if isinstance(default, bool) or isinstance(value, bool):
        return [flag] if bool(value) != bool(default) else []
    settings = option_settings(option_field) or {}
    if isinstance(value, list) or settings.get("nargs"):
        return [flag, *map(str, value if isinstance(value, list) else [value])]
    if isinstance(value, dict):
        return [flag, json.dumps(value)]
    return [flag, str(value)]
