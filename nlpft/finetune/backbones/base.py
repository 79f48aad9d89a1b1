"""The `Backbone` plug-in: what turns text into the task's outputs, for training and inference.

One object serves both: `finetune` makes it from the --model value (`detect_backbone`),
`predict`/`evaluate` from the name saved in finetune.json (`backbone_class`) and the model
directory. Its hooks:

detect        `detect(spec)`: does this --model value name this backbone? Plug-ins are
              asked in registration order; `fallback` ones (Hugging Face: any alias, hub id
              or model directory) after every other
defaults      `default_epochs`, `default_lr(parameters)`, `default_lr_range` (the lowest and
              highest default rate: `nlpft experiment` notes an lr far outside it),
              `made_by` (the experiment step commands whose output it fine-tunes),
              `uses_precision` (whether
              --precision applies), `bf16_inference` (whether predict's --precision auto may
              autocast to bf16), `word_level` (report [UNK] rates), `every_rank` (train in
              every torchrun process)
search        `search_parameters` (what `finetune --search` tunes, listed in --help) and
              `search_space(opts)`, the space for one run (the default: those parameters)
unused        `ignored_options`: the options of `nlpft finetune` its training never reads
              (TF-IDF: the shared trainer's, `TRAINER_OPTIONS`); `unused_options()` adds
              --precision without `uses_precision` and the other backbones' own options.
              `nlpft experiment` runs a grid over such an option once for this backbone
checks        `check(opts, task)`: a task whose head it cannot build (`heads`, `supports`)
              or options it cannot honour (`check_options`), before anything loads
training      `prepare(opts)` -> `Prepared` (tokenizer, pad id, max length, framing ids and
              `build_model(task)`), `training_extras(model, lr, opts)` (optimizer, callbacks:
              ULMFiT's discriminative rates and gradual unfreezing), `save_weights`,
              `save(work, prepared)` (files beside the weights, e.g. tokenizer.json), and
              `fit(...)`: the base runs the shared trainer (`nlpft.finetune.fit`); a backbone
              that trains itself (TF-IDF + scikit-learn) overrides it
inference     `load(model_dir, meta, task)` -> `Prepared` with `model` set, `logits(prepared, task,
              rows, batch_size)`: the base batches the task's encoding through the model
export        `exports_onnx`: `nlpft export --format onnx` can write its models as a graph of
              the logits, and `load_inputs(model_dir, meta, task)` gives the `Prepared` without
              the torch model, for ONNX Runtime to stand in (`nlpft.finetune.onnx_runtime`)

options       `options`: a frozen dataclass of the options only this backbone takes (BERT-style
              encoders: --pooling), declared with `nlpft.options.option`; registering adds
              their flags, --help section (titled by `owner_name`) and config keys
              (`nlpft.finetune.plugin_options`). Training finds them resolved in
              `opts.backbone_options`, inference reads them with `saved_options(meta)`

A new backbone is one module with a `Backbone` subclass plus one `register(...)` line in
`nlpft/finetune/backbones/__init__.py`. Backbone modules import torch and transformers
inside their methods, so listing the registry for `--help` stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from nlpft.errors import UserInputError
from nlpft.finetune import plugin_options
from nlpft.finetune.search_space import Param

if TYPE_CHECKING:  # numpy loads when a method needs it: listing the plug-ins stays cheap
    import numpy as np


# the options of `nlpft finetune` that only the shared trainer (`nlpft.finetune.fit`) reads
TRAINER_OPTIONS = frozenset({"epochs", "max_steps", "lr", "batch_size", "grad_accum", "warmup", "scheduler",
                             "weight_decay", "class_weights", "patience", "eval_every", "checkpoint_every",
                             "group_by_length"})


@dataclass
class Prepared:
    """What the shared training and inference path needs from a backbone."""

    tokenizer: object  # an nlpft TextTokenizer
    pad_id: int
    max_length: int
    build_model: Callable | None = None  # (task) -> model; training only
    prefix_ids: tuple = ()
    suffix_ids: tuple = ()
    processing_class: object = None  # saved with the model by the trainer (Hugging Face tokenizers)
    model: object = None  # inference: the loaded model


class Backbone:
    name: ClassVar[str]  # saved as finetune.json "backbone"
    summary: ClassVar[str]  # --help: which --model values select it, and what it is
    fallback: ClassVar[bool] = False
    default_epochs: ClassVar[float] = 3.0
    uses_precision: ClassVar[bool] = True
    bf16_inference: ClassVar[bool] = False
    word_level: ClassVar[bool] = False
    every_rank: ClassVar[bool] = True
    exports_onnx: ClassVar[bool] = False
    heads: ClassVar[tuple] = ("sequence-classification",)  # the task heads (`Task.head`) it can build
    options: ClassVar[type | None] = None  # the dataclass of this backbone's own options (see plugin_options)
    owner: ClassVar[str | None] = None  # who owns those options, in --help and errors, e.g. "BERT-style encoders"
    owner_models: ClassVar[str | None] = None  # the --model values that select it, e.g. "--model minilm, ..."
    # fine-tuning a pretrained transformer: the usual 1e-5..1e-4 plus the higher rates small
    # models (under 10M parameters, default 5e-4) need; trials that diverge are pruned early
    search_parameters: ClassVar[dict[str, Param]] = {
        "lr": Param(1e-5, 1e-3, log=True), "batch_size": Param(choices=(8, 16, 32)),
        "epochs": Param(2, 5, whole=True), "weight_decay": Param(0.0, 0.1), "warmup": Param(0.0, 0.2)}
    # options of `nlpft finetune` its training never reads: the shared trainer fits no
    # scikit-learn head, so --head-c is TF-IDF's and the frozen encoder's alone
    ignored_options: ClassVar[frozenset[str]] = frozenset({"head_c"})
    default_lr_range: ClassVar[tuple[float, float] | None] = None  # None: --lr is nothing to it
    made_by: ClassVar[tuple[str, ...]] = ()  # experiment step commands (embed, lm, pretrain) whose output it reads

    def __init__(self, spec: str):
        self.spec = spec

    @classmethod
    def detect(cls, spec: str) -> bool:
        raise NotImplementedError

    @classmethod
    def owner_name(cls) -> str:
        return cls.owner or f"the {cls.name} backbone"

    @classmethod
    def owner_description(cls) -> str:
        """Who takes this backbone's options, for an error: "BERT-style encoders (--model minilm, ...)"."""
        return f"{cls.owner_name()} ({cls.owner_models or f'--model {cls.name}'})"

    @classmethod
    def saved_options(cls, meta: dict, bad=None):
        """This backbone's own options as finetune.json saved them (None when it declares none)."""
        return plugin_options.saved(plugin_options.BACKBONE, cls, meta, bad)

    @classmethod
    def unused_options(cls) -> frozenset[str]:
        """The options of `nlpft finetune` that cannot change what this backbone trains: those it
        ignores, --precision when it does not use it, and the options only other backbones
        declare."""
        own = {f.name for f in plugin_options.option_fields(cls)}
        others = {f.name for f in plugin_options.declared_fields()
                  if plugin_options.kind_of(f.name) == plugin_options.BACKBONE} - own
        return cls.ignored_options | others | (frozenset() if cls.uses_precision else {"precision"})

    def check(self, opts, task) -> None:
        """Refuse a task or options this backbone cannot honour (UserInputError), before
        anything loads."""
        if not self.supports(task):
            raise UserInputError(f"--model {opts.model} ({self.name}) cannot do --task {task.name}; "
                                 "pick another backbone")
        self.check_options(opts)

    def supports(self, task) -> bool:
        """Whether this backbone can build `task`'s head."""
        return task.head in self.heads

    def check_options(self, opts) -> None:
        """Refuse option values this backbone cannot honour (its own options are resolved in
        `opts.backbone_options`; one it does not declare never reaches it)."""

    def search_space(self, opts) -> dict[str, Param]:
        """What `finetune --search` tunes for this run (a backbone whose space depends on the
        options, e.g. on the fine-tuning method, overrides this)."""
        return dict(self.search_parameters)

    # -- training ---------------------------------------------------------------------------
    def prepare(self, opts) -> Prepared:
        raise NotImplementedError

    def default_lr(self, parameters: int) -> float:
        raise NotImplementedError

    def default_lr_note(self, lr: float) -> str | None:
        """A line saying why the default learning rate is not the usual one, or None."""
        return None

    def training_extras(self, model, lr: float, opts) -> tuple:
        """(optimizer or None, extra trainer callbacks, the epoch from which patience counts)."""
        return None, [], 0.0

    def save_weights(self, model, directory: Path) -> None:
        """The whole module's weights (keep-best), under the names they are loaded back by."""
        from nlpft.training.weights import save_model

        save_model(model, str(Path(directory) / "model.safetensors"))

    def save(self, work: Path, prepared: Prepared) -> None:
        """Files the trainer's save_model does not write (e.g. a word-level tokenizer.json)."""

    def fit(self, opts, task, splits, work: Path, output) -> dict:
        """Train on `splits` into `work`; returns what the outputs report (see `nlpft.finetune.fit`)."""
        from nlpft.finetune.fit import train_neural

        return train_neural(self, opts, task, splits, work, output)

    # -- inference --------------------------------------------------------------------------
    def load(self, model_dir: Path, meta: dict, task) -> Prepared:
        raise NotImplementedError

    def load_inputs(self, model_dir: Path, meta: dict, task) -> Prepared:
        """`load` without the model: what turns rows into its inputs (backbones that
        `exports_onnx`)."""
        raise NotImplementedError

    def logits(self, prepared: Prepared, task, rows: list, batch_size: int) -> tuple[np.ndarray, int]:
        """(logits, how many texts were cut at the length limit) for `rows`."""
        import numpy as np
        import torch

        from nlpft.training.weights import model_tensors, refuse_non_finite

        if isinstance(prepared.model, torch.nn.Module):  # an ONNX export was checked when it was written
            refuse_non_finite(model_tensors(prepared.model), self.spec)
        dataset, encoded = task.encode(prepared, rows, with_targets=False)
        collate = task.collator(prepared.pad_id)
        order = np.argsort(dataset.lengths(), kind="stable")  # similar lengths together
        per_row: list = [None] * len(dataset)  # one per item: a long text may be several windows
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                index = order[start:start + batch_size]
                batch = collate([dataset[int(i)] for i in index])
                out = prepared.model(**batch)["logits"].float().numpy()
                for position, row in enumerate(index):
                    per_row[int(row)] = out[position]
        return task.collect_logits(per_row, dataset), encoded.truncated


_REGISTRY: dict[str, type[Backbone]] = {}


def register(backbone: type[Backbone]) -> type[Backbone]:
    """Add `backbone` (and its options: a clash with another's fails here, see plugin_options)."""
    plugin_options.declare(plugin_options.BACKBONE, backbone)
    _REGISTRY[backbone.name] = backbone
    return backbone


def unregister(name: str) -> None:
    """Remove a plug-in (tests register their own for a while)."""
    _REGISTRY.pop(name, None)
    plugin_options.retract(plugin_options.BACKBONE, name)


def backbone_names() -> list[str]:
    return list(_REGISTRY)


def backbone_class(name: str) -> type[Backbone]:
    return _REGISTRY[name]


def detect_backbone(spec: str) -> Backbone:
    """The backbone that --model `spec` names; a fallback backbone raises for a bad name."""
    ordered = [b for b in _REGISTRY.values() if not b.fallback] + [b for b in _REGISTRY.values() if b.fallback]
    for backbone in ordered:
        if backbone.detect(spec):
            return backbone(spec)
    raise UserInputError(f"{spec}: not a backbone nlpft knows; --model takes {backbone_help()}")


def backbone_help() -> str:
    return "; ".join(b.summary for b in _REGISTRY.values())
