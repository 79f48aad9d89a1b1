"""An experiment's YAML file, read and checked whole before anything runs.

    name: support-tickets
    data: {train: tickets.csv, text_col: body, label_col: queue}   # FinetuneOptions fields
    corpora: {domain: [tickets_unlabeled.txt]}                     # name -> what --corpus takes
    steps:                                                         # name -> {command: {options}}
      w2v: {embed: {algo: word2vec, corpus: domain, dim: 200}}
      lm:  {lm: {corpus: domain, init_vectors: w2v}}
      dapt: {pretrain: {from: minilm, corpus: domain, max_steps: 2000}}
    finetune:
      backbones: [tfidf, w2v, lm, dapt,                            # aliases, or step names
                  {name: minilm, model: minilm, grid: {lr: [2e-5, 5e-5]}}]
      seeds: [1, 2, 3]
      grid: {lr: [2e-5, 5e-5]}                                     # or search: {trials: 20}
      epochs: 3                                                    # any other FinetuneOptions field
    report: {primary: macro_f1}

The options of a step are the fields of the command's own options dataclass (the ones its
flags are generated from), so there is no second list: an unknown key, a bad value or a
rule the command enforces is reported here with its key path (`steps.w2v.embed.dimm: ...`).
Relative paths are relative to the YAML file. `corpus: NAME` names an entry of `corpora`;
a corpora entry may hold `data:train`, the training text of `data` after its split (no
validation or test row): the plan then adds the step `data-split` (`nlpft split`), which
needs one split for every seed, `data.split_seed` (or `data.valid` and `data.test` files);
`init_vectors`, `tokenizer`, `from` and a backbone may name a step, whose output is then
the value (an edge of the plan).

A backbones entry is a name or a mapping {name, model, grid, OPTION: VALUE}: settings that
backbone alone gets. Its options and its grid win over the finetune section's for it: an
option in its own grid or among its own options is dropped from the finetune grid for that
backbone (and the same option both in an entry's grid and beside it is an error, as in the
finetune section). The runs of a backbone are its grid's points x seeds; an option the
backbone does not use (see `nlpft.experiments.plan`) is left out of them.

`search: {trials: N, space: {lr: [1e-5, 1e-3, log]}}` in the finetune section makes every
run (backbone x grid point x seed) a `finetune --search N` of its own, with --search-space
when `space` is given; the run's output is the best trial's model (trials.csv beside it),
so the report compares the best model of each; each backbone gets the part of `space`
its search tunes (the plan cuts the rest). The grid and the search combine as an
outer and an inner loop: a grid option the search tunes would be overwritten by every
trial, so an option both in a grid and in `search.space` (or in the backbone's default
search space, `nlpft finetune --help`) is an error.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path

from nlpft.errors import UserInputError
from nlpft.options import CONFIG_MAX_BYTES, load_yaml

TOP_LEVEL = ("name", "data", "corpora", "steps", "finetune", "report")
# options the experiment decides for every step: where it writes and whether it resumes
MANAGED = ("out", "resume", "overwrite")
# a corpora item meaning the training text of `data`: the corpus file of the step SPLIT_STEP
DATA_TRAIN = "data:train"
SPLIT_STEP = "data-split"
# options whose value may name another step (its output directory becomes the value)
STEP_REFERENCES = {"lm": ("init_vectors",), "pretrain": ("from_model", "tokenizer"), "embed": ()}
STEP_COMMANDS = tuple(STEP_REFERENCES)  # the commands a step of the config may run
# options naming a file or directory: relative to the YAML file like every other path
PATH_OPTIONS = ("tokenizer",)
# YAML spellings of fields whose flag is not the field's name
KEY_ALIASES = {"from": "from_model", "max_memory": "max_memory_gb"}
LAUNCH_KEYS = ("launcher", "nproc_per_node", "nnodes")
TORCHRUN_COMMANDS = ("pretrain",)
FINETUNE_KEYS = ("backbones", "seeds", "grid", "search", *LAUNCH_KEYS)
SEARCH_KEYS = ("trials", "space")
# FinetuneOptions fields an experiment sets for each run, or takes in another form (search:)
NOT_FINETUNE_KEYS = (*MANAGED, "model", "seed", "task_options", "backbone_options", "search", "search_space")
REPORT_KEYS = ("primary",)
# backbones that are names, not paths (what --model takes besides a directory or a hub id)
NAMED_BACKBONES = ("tfidf",)


def _command_table() -> dict:
    """{YAML command name: (nlpft command words, options dataclass)}."""
    from nlpft.embeddings.options import EmbedTrainOptions
    from nlpft.finetune.options import FinetuneOptions
    from nlpft.lm.options import LMTrainOptions
    from nlpft.pretrained.options import PretrainOptions

    return {"embed": (("embed", "train"), EmbedTrainOptions), "lm": (("lm", "train"), LMTrainOptions),
            "pretrain": (("pretrain",), PretrainOptions),
            "split": (("split",), FinetuneOptions)}  # the plan's own step for data:train, not the config's


@dataclass(frozen=True)
class Launch:
    """How a step's process starts: plain `python -m nlpft`, or torchrun."""
    launcher: str = "python"
    nproc_per_node: int = 1
    nnodes: int = 1


@dataclass(frozen=True)
class StepSpec:
    name: str
    command: str                 # embed | lm | pretrain
    options: dict                # field name -> value; a step reference is a `StepRef`
    launch: Launch = field(default_factory=Launch)


@dataclass(frozen=True)
class StepRef:
    """An option value (or an item of a list value) that is another step's output
    directory, or the file `file` in it."""
    step: str
    file: str | None = None


def step_references(options: dict) -> list:
    """The `StepRef`s among option values, list items included."""
    found = []
    for value in options.values():
        found += [item for item in (value if isinstance(value, list) else [value]) if isinstance(item, StepRef)]
    return found


@dataclass(frozen=True)
class FinetuneSpec:
    backbones: list              # each: a name or path (str) or a StepRef
    backbone_labels: list        # the names the config gave them
    seeds: list
    grid: dict                   # option -> list of values
    options: dict                # data + the other finetune keys: FinetuneOptions fields
    launch: Launch = field(default_factory=Launch)
    backbone_options: list = field(default_factory=list)   # per backbone: options it alone gets
    backbone_grids: list = field(default_factory=list)     # per backbone: its own grid

    def grid_of(self, index: int) -> dict:
        """The grid of backbone `index`: its own, then the finetune grid's options it sets
        neither in its own grid nor as an option of its own (the entry wins)."""
        own, own_grid = self.backbone_options[index], self.backbone_grids[index]
        shared = {k: v for k, v in self.grid.items() if k not in own and k not in own_grid}
        return {**shared, **own_grid}


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    source: Path
    corpora: dict
    steps: dict = field(default_factory=dict)      # name -> StepSpec
    finetune: FinetuneSpec | None = None
    primary: str | None = None


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read and check the YAML file `path`; UserInputError (one line, with the key path)
    for anything wrong in it."""
    file = Path(path)
    if not file.is_file():
        raise UserInputError(f"{file}: experiment file not found; pass an existing YAML file")
    if file.stat().st_size > CONFIG_MAX_BYTES:
        raise UserInputError(f"{file}: too big for an experiment file (the limit is {CONFIG_MAX_BYTES:,} bytes)")
    import yaml

    try:
        data = load_yaml(file.read_text(encoding="utf-8"))
    except UserInputError as exc:
        raise UserInputError(f"{file}: {exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{file}: not valid YAML ({exc})") from None
    try:
        return parse_experiment(data, file)
    except UserInputError as exc:
        raise UserInputError(f"{file}: {exc}") from None


def parse_experiment(data, source: Path) -> ExperimentConfig:
    base = source.resolve().parent
    data = _mapping(data, "the file")
    _refuse_unknown(data, TOP_LEVEL, "", "top-level key")
    name = str(data.get("name") or source.stem)
    corpora = _corpora(_mapping(data.get("corpora") or {}, "corpora"), base)
    raw_steps = _mapping(data.get("steps") or {}, "steps")
    steps = {step: _step(step, spec, corpora, raw_steps, base) for step, spec in raw_steps.items()}
    _refuse_cycles(steps)
    split = _split_step(steps, corpora, _mapping(data.get("data") or {}, "data"), base)
    finetune = None
    if data.get("finetune") is not None:
        finetune = _finetune(_mapping(data["finetune"], "finetune"), _mapping(data.get("data") or {}, "data"),
                             steps, base)
    elif data.get("data") and split is None:
        raise UserInputError("data: given without a finetune section or a data:train corpus, so nothing would use it")
    if split is not None:
        steps = {SPLIT_STEP: split, **steps}
    report = _mapping(data.get("report") or {}, "report")
    _refuse_unknown(report, REPORT_KEYS, "report.", "key")
    return ExperimentConfig(name=name, source=source, corpora=corpora, steps=steps, finetune=finetune,
                            primary=report.get("primary"))


def _mapping(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise UserInputError(f"{where}: must be a mapping of names to values, not {type(value).__name__}")
    return {str(k): v for k, v in value.items()}


def _refuse_unknown(data: dict, known, prefix: str, what: str, owner: str = "") -> None:
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(known)})"
            raise UserInputError(f"{prefix}{key}: unknown {what}{owner}{hint}")


def _local(value: str, base: Path) -> str:
    """A path relative to the YAML file, made absolute; anything else (a dataset or model
    name, hf:NAME) as given."""
    candidate = base / value
    return str(candidate) if not Path(value).is_absolute() and candidate.exists() else value


def _corpora(corpora: dict, base: Path) -> dict:
    resolved = {}
    for name, specs in corpora.items():
        specs = [specs] if isinstance(specs, str) else specs
        if not isinstance(specs, list) or not specs or not all(isinstance(s, str) for s in specs):
            raise UserInputError(f"corpora.{name}: must be a file, a corpus name or a list of them")
        resolved[name] = [_local(spec, base) for spec in specs]
    return resolved


def _fields(cls) -> dict:
    return {f.name: f for f in dataclasses.fields(cls)}


def _step(name: str, spec, corpora: dict, all_steps: dict, base: Path) -> StepSpec:
    from nlpft.finetune.tasks.base import SPLIT_CORPUS_FILE

    commands = {command: entry for command, entry in _command_table().items() if command in STEP_COMMANDS}
    if name == SPLIT_STEP:
        raise UserInputError(f"steps.{name}: the name is the plan's own (the split behind data:train); rename it")
    spec = _mapping(spec, f"steps.{name}")
    if len(spec) != 1:
        raise UserInputError(f"steps.{name}: must hold exactly one command ({', '.join(commands)}), "
                             f"not {', '.join(spec) or 'none'}")
    command, options = next(iter(spec.items()))
    if command not in commands:
        _refuse_unknown({command: None}, list(commands), f"steps.{name}.", "command")
    words, cls = commands[command]
    prefix = f"steps.{name}.{command}."
    options = {KEY_ALIASES.get(k, k).replace("-", "_"): v for k, v in _mapping(options or {}, prefix[:-1]).items()}
    launch = _launch(options, prefix, command in TORCHRUN_COMMANDS)
    known = [n for n in _fields(cls) if n not in MANAGED]
    _refuse_unknown(options, known, prefix, "option of", f" {' '.join(words)}")
    if "corpus" not in options:
        raise UserInputError(f"{prefix}corpus: missing; name an entry of corpora ({', '.join(corpora) or 'none'})")
    resolved = {}
    for key, value in options.items():
        if key == "corpus":
            if not isinstance(value, str) or value not in corpora:
                raise UserInputError(f"{prefix}corpus: {value!r} is no entry of corpora "
                                     f"({', '.join(corpora) or 'none defined'})")
            resolved[key] = [StepRef(SPLIT_STEP, SPLIT_CORPUS_FILE) if item == DATA_TRAIN else item
                             for item in corpora[value]]
        elif key in STEP_REFERENCES[command] and isinstance(value, str) and value in all_steps:
            if value == name:
                raise UserInputError(f"{prefix}{key}: refers to its own step")
            resolved[key] = StepRef(value)
        elif key in STEP_REFERENCES[command] and isinstance(value, str):
            resolved[key] = _literal_model(value, f"{prefix}{key}", all_steps, base)
        elif key in PATH_OPTIONS and isinstance(value, str):
            resolved[key] = _local(value, base)
        else:
            resolved[key] = value
    _check_with_dataclass(cls, resolved, prefix)
    return StepSpec(name=name, command=command, options=resolved, launch=launch)


def _literal_model(value: str, where: str, steps: dict, base: Path) -> str:
    """A model, vectors or tokenizer given by path, alias or hub id; a bare word that is
    none of these is a reference to a step that does not exist."""
    from nlpft.pretrained.aliases import ALIASES, KNOWN_HUB_IDS

    resolved = _local(value, base)
    if Path(resolved).exists() or value in ALIASES or value in KNOWN_HUB_IDS or "/" in value \
            or value in NAMED_BACKBONES:
        return resolved
    raise UserInputError(f"{where}: {value!r} is no step ({', '.join(steps) or 'none defined'}), file, "
                         "alias or hub id")


def _launch(options: dict, prefix: str, torchrun_allowed: bool) -> Launch:
    given = {k: options.pop(k) for k in LAUNCH_KEYS if k in options}
    if not given:
        return Launch()
    launcher = given.get("launcher", "python")
    if launcher not in ("python", "torchrun"):
        raise UserInputError(f"{prefix}launcher: {launcher!r} is not python or torchrun")
    if launcher == "torchrun" and not torchrun_allowed:
        raise UserInputError(f"{prefix}launcher: torchrun applies to pretrain and finetune steps only")
    for key in ("nproc_per_node", "nnodes"):
        value = given.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserInputError(f"{prefix}{key}: must be a whole number of at least 1, not {value!r}")
    if launcher != "torchrun" and (given.get("nproc_per_node", 1) > 1 or given.get("nnodes", 1) > 1):
        raise UserInputError(f"{prefix}nproc_per_node: needs launcher: torchrun")
    return Launch(launcher, given.get("nproc_per_node", 1), given.get("nnodes", 1))


def _placeholders(values: dict) -> dict:
    """`values` with each step reference replaced by a stand-in path, so the dataclass can
    check everything else (the referenced output does not exist yet)."""
    def stand_in(value):
        return f"<output of step {value.step}>" if isinstance(value, StepRef) else value

    return {k: ([stand_in(item) for item in v] if isinstance(v, list) else stand_in(v)) for k, v in values.items()}


def _check_with_dataclass(cls, values: dict, prefix: str) -> None:
    """Build the command's options dataclass and run its own `validate`: a bad value or a
    broken rule is reported with the key path of the option it names."""
    try:
        options = cls(**{"out": "<experiment step>", **_placeholders(values)})
        options.validate()
    except UserInputError as exc:
        raise UserInputError(_keyed(str(exc), cls, prefix)) from None
    except TypeError as exc:  # a required field left out
        raise UserInputError(f"{prefix[:-1]}: {exc}") from None


def _keyed(message: str, cls, prefix: str) -> str:
    """The message of a dataclass check, its leading flag (`--dim must ...`) turned into
    the key path (`steps.w2v.embed.dim must ...`)."""
    from nlpft.options import flag_of

    for f in dataclasses.fields(cls):
        flag = flag_of(f)
        if message.startswith((flag + " ", flag + ":")):
            rest = message[len(flag):].lstrip(": ")
            # a list item (finetune.seeds[1].) is itself the value of the option
            where = prefix[:-1] if prefix.endswith("].") else f"{prefix}{f.name}"
            return f"{where}: {rest}"
    return f"{prefix[:-1]}: {message}"


def _refuse_cycles(steps: dict) -> None:
    def references(step: StepSpec) -> list[str]:
        return [ref.step for ref in step_references(step.options) if ref.step in steps]

    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name):] + [name]
            raise UserInputError(f"steps: cycle {' -> '.join(cycle)}; a step cannot depend on its own output")
        state[name] = "visiting"
        for dependency in references(steps[name]):
            visit(dependency, path + [name])
        state[name] = "done"

    for name in steps:
        visit(name, [])


def _split_step(steps: dict, corpora: dict, data: dict, base: Path) -> StepSpec | None:
    """The step writing the split of `data` whose training text `data:train` names, when a
    step reads it. One split must serve every fine-tuning seed (else each seed's test rows
    would be in another seed's corpus): data.split_seed, or valid and test files."""
    from nlpft.finetune.options import FinetuneOptions

    readers = [name for name, spec in steps.items()
               if any(ref.step == SPLIT_STEP for ref in step_references(spec.options))]
    if not readers:
        return None
    entry = next(name for name, items in corpora.items() if DATA_TRAIN in items)
    where = f"corpora.{entry}: {DATA_TRAIN}"
    data = {k.replace("-", "_"): v for k, v in data.items()}
    known = [n for n in _fields(FinetuneOptions) if n not in NOT_FINETUNE_KEYS] + _plugin_option_names()
    _refuse_unknown(data, known, "data.", "option of", " finetune")
    if "train" not in data:
        raise UserInputError(f"{where} is the training text of data, but data.train is missing")
    if data.get("split_seed") is None and not (data.get("valid") and data.get("test")):
        raise UserInputError(f"{where} needs one split for every seed, so that no test row reaches step "
                             f"{readers[0]}: set data.split_seed (e.g. 13), or give data.valid and data.test")
    reading = {f.name for f in split_option_fields()} - {"seed", "out"}  # the split's seed: data.split_seed
    options = {k: (_local(v, base) if k in ("train", "valid", "test") and isinstance(v, str) else v)
               for k, v in data.items() if k in reading}
    return StepSpec(name=SPLIT_STEP, command="split", options=options)


def _finetune(section: dict, data: dict, steps: dict, base: Path) -> FinetuneSpec:
    from nlpft.finetune.options import FinetuneOptions

    plugin_keys = _plugin_option_names()
    known = [n for n in _fields(FinetuneOptions) if n not in NOT_FINETUNE_KEYS] + plugin_keys
    data = {k.replace("-", "_"): v for k, v in data.items()}
    section = {KEY_ALIASES.get(k, k).replace("-", "_"): v for k, v in section.items()}
    _refuse_unknown(data, known, "data.", "option of", " finetune")
    launch = _launch(section, "finetune.", torchrun_allowed=True)
    _refuse_unknown(section, [*FINETUNE_KEYS, *known], "finetune.", "option of", " finetune")
    search = _search(section.pop("search", None))
    for key in ("train", "valid", "test"):
        if isinstance(data.get(key), str):
            data[key] = _local(data[key], base)
    if "train" not in data:
        raise UserInputError("data.train: missing; name the labeled training file or dataset")
    backbones = section.pop("backbones", None)
    if not isinstance(backbones, list) or not backbones:
        raise UserInputError("finetune.backbones: must be a list of backbones (tfidf, minilm, a step name, ...)")
    seeds = section.pop("seeds", [1])
    seeds = seeds if isinstance(seeds, list) else [seeds]
    grid = _grid(section.pop("grid", None), "finetune", section, known)
    options = {**data, **section, **search}
    entries = [_backbone(entry, f"finetune.backbones[{i}]", known, steps, base) for i, entry in enumerate(backbones)]
    labels = [label for label, _, _, _ in entries]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise UserInputError(f"finetune.backbones: {repeated[0]!r} appears twice; give one a name: "
                             "{name: NAME, model: ...}")
    for index, seed in enumerate(seeds):
        _check_finetune({**options, "seed": seed}, f"finetune.seeds[{index}].", plugin_keys)
    _check_grid(grid, options, "finetune", plugin_keys)
    searched = json.loads(search.get("search_space") or "{}")
    for where, each in [("finetune", grid), *((f"finetune.backbones[{i}]", e[3]) for i, e in enumerate(entries))]:
        both = sorted(set(each) & set(searched))
        if both:
            raise UserInputError(f"{where}.grid.{both[0]}: also in finetune.search.space; grid it or search it, "
                                 "not both")
    for index, (_, _, own, own_grid) in enumerate(entries):
        where = f"finetune.backbones[{index}]"
        _check_finetune({**options, **own}, f"{where}.", plugin_keys)
        _check_grid(own_grid, {**options, **own}, where, plugin_keys)
    return FinetuneSpec(backbones=[model for _, model, _, _ in entries], backbone_labels=labels, seeds=seeds,
                        grid=grid, options=options, launch=launch,
                        backbone_options=[own for _, _, own, _ in entries],
                        backbone_grids=[own_grid for _, _, _, own_grid in entries])


def _search(raw) -> dict:
    """The options of `finetune: {search: {trials: N, space: {...}}}`: {"search": N,
    "search_space": JSON} (nothing without it). The space's keys and ranges are checked
    against what some backbone searches; the plan checks each backbone's own."""
    if raw is None:
        return {}
    search = _mapping(raw, "finetune.search")
    _refuse_unknown(search, SEARCH_KEYS, "finetune.search.", "key")
    trials = search.get("trials")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise UserInputError(f"finetune.search.trials: must be a whole number of at least 1, not {trials!r}")
    options = {"search": trials}
    if search.get("space") is not None:
        space = _mapping(search["space"], "finetune.search.space")
        _check_search_space(space)
        options["search_space"] = json.dumps(space)
    return options


def _check_search_space(space: dict) -> None:
    from nlpft.finetune.backbones import backbone_class, backbone_names
    from nlpft.finetune.search_space import resolve_space

    declared: dict = {}
    for name in backbone_names():
        for parameter, spec in backbone_class(name).search_parameters.items():
            declared.setdefault(parameter, spec)
    _refuse_unknown(space, list(declared), "finetune.search.space.", "parameter", ", which no backbone searches")
    try:
        resolve_space(declared, json.dumps(space), "any backbone")
    except UserInputError as exc:  # "search_space: lr: ..." -> "finetune.search.space.lr: ..."
        raise UserInputError(str(exc).replace("search_space: ", "finetune.search.space.", 1)) from None


def _grid(raw, where: str, fixed: dict, known: list) -> dict:
    """The `grid` mapping of `where` (finetune, or a backbones entry): known options, each a
    list of values, none also given as a plain option beside it."""
    grid = _mapping(raw or {}, f"{where}.grid")
    _refuse_unknown(grid, known, f"{where}.grid.", "option of", " finetune")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UserInputError(f"{where}.grid.{key}: must be a list of values to try")
    overlap = sorted(set(grid) & set(fixed))
    if overlap:
        raise UserInputError(f"{where}.{overlap[0]}: also in {where}.grid; give it in one place")
    return grid


def _check_grid(grid: dict, options: dict, where: str, plugin_keys: list) -> None:
    for key, values in grid.items():
        for index, value in enumerate(values):
            _check_finetune({**options, key: value}, f"{where}.grid.{key}[{index}].", plugin_keys)


def _backbone(entry, where: str, known: list, steps: dict, base: Path) -> tuple[str, object, dict, dict]:
    """(label, model, options of its own, grid of its own) of one backbones entry: a name,
    or a mapping {name: LABEL, model: MODEL, grid: {...}, OPTION: VALUE, ...} for settings
    this backbone alone gets."""
    if isinstance(entry, str):
        label, model, own, own_grid = entry, entry, {}, {}
    elif isinstance(entry, dict):
        own = {str(k).replace("-", "_"): v for k, v in entry.items()}
        label, model = own.pop("name", None), own.pop("model", None)
        model = model or label
        label = label or model
        if not isinstance(model, str) or not isinstance(label, str):
            raise UserInputError(f"{where}: a mapping needs model: (a backbone or step) and may have name:")
        own_grid = own.pop("grid", None)
        _refuse_unknown(own, known, f"{where}.", "option of", " finetune")
        own_grid = _grid(own_grid, where, own, known)
    else:
        raise UserInputError(f"{where}: {entry!r} is not a backbone name or a mapping")
    resolved = StepRef(model) if model in steps else _literal_model(model, where, steps, base)
    return label, resolved, own, own_grid


def plugin_option_fields() -> list:
    """The option fields tasks and backbones declare themselves (--pooling, --crf, ...),
    once their registries are loaded."""
    from nlpft.finetune.backbones import backbone_names
    from nlpft.finetune.plugin_options import declared_fields
    from nlpft.finetune.tasks import task_names

    backbone_names(), task_names()  # registering the plug-ins declares their options
    return declared_fields()


def split_option_fields() -> list:
    """The option fields `nlpft split` takes: finetune's data options, --seed, --out and
    the options the tasks declare (--tag-col, ...), as its parser adds them."""
    from nlpft.finetune import plugin_options
    from nlpft.finetune.options import DATA, FinetuneOptions
    from nlpft.options import option_settings

    return [f for f in [*dataclasses.fields(FinetuneOptions), *plugin_option_fields()]
            if (option_settings(f) or {}).get("group") == DATA or f.name in ("seed", "out")
            or plugin_options.kind_of(f.name) == plugin_options.TASK]


def _plugin_option_names() -> list[str]:
    return [f.name for f in plugin_option_fields()]


def _check_finetune(values: dict, prefix: str, plugin_keys: list) -> None:
    """FinetuneOptions' own checks; plug-in options are checked by the step that uses
    them, since which plug-in takes them depends on the backbone."""
    from nlpft.finetune.options import FinetuneOptions

    core = {k: v for k, v in values.items() if k not in plugin_keys}
    _check_with_dataclass(FinetuneOptions, {**core, "model": "tfidf"}, prefix)
