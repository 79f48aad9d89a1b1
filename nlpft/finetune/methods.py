"""How a backbone is trained (`--method`): the registry, the `auto` rule and the check that
each class has the examples a method needs.

standard  the backbone's own training (`Backbone.fit`: the shared trainer, or TF-IDF's fit)
frozen    a BERT-style encoder left as it is, its mean-pooled sentence embeddings + logistic
          regression (`backbones.frozen_encoder`)
contrastive  the encoder first tuned on same/different-class pairs (SetFit), then read as
          frozen reads it (`backbones.contrastive_encoder`)
auto      one of the above by `AUTO_RULE`

A method other than standard trains through a backbone plug-in of its own, saved under
that backbone's name in finetune.json, so predict and evaluate need nothing new.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from nlpft.errors import UserInputError

SMALL_DATA_LIMIT = 100  # training examples in the smallest class below which auto leaves standard fine-tuning
#: tried in order on small data, the first that fits the backbone and the input wins. On the
#: polarity sentences contrastive is 2-5 accuracy points above frozen at 8-64 examples per class
#: and at the README's 70 (benchmarks/small-data); it compares single texts, so text pairs get frozen
SMALL_DATA_METHODS = ("contrastive", "frozen")
AUTO_RULE = ("contrastive (frozen for text pairs) when the backbone is a BERT-style Hugging Face encoder, the task "
             f"is single or multi and the smallest class has fewer than {SMALL_DATA_LIMIT} training examples; "
             "otherwise standard")
CLASS_KINDS = ("class", "label-set")  # tasks whose rows fall into classes that can be counted


@dataclass(frozen=True)
class Method:
    name: str
    summary: str  # one line for --help
    min_per_class: int = 1  # training examples each class needs
    backbone: str | None = None  # the backbone plug-in it trains through; None: the detected one
    needs: str = ""  # what `supports` asks for, as the error says it

    def supports(self, backbone, task) -> bool:
        if self.backbone is None:
            return True
        from nlpft.finetune.backbones import backbone_class

        return self.fits(backbone) and backbone_class(self.backbone)(backbone.spec).supports(task)

    def fits(self, backbone) -> bool:
        """Whether this method can train `backbone`, whatever the task."""
        from nlpft.finetune.backbones.hf_encoder import HFEncoder

        return self.backbone is None or isinstance(backbone, HFEncoder)

    def training_backbone(self, backbone):
        """What trains: `backbone` itself, or this method's plug-in over the same --model."""
        if self.backbone is None:
            return backbone
        from nlpft.finetune.backbones import backbone_class

        return backbone_class(self.backbone)(backbone.spec)


METHODS = {
    "standard": Method("standard", "the backbone's own training (transformers: the whole model fine-tuned)"),
    "frozen": Method("frozen", "BERT-style encoders: the encoder frozen, its mean-pooled sentence embeddings + "
                               "logistic regression; seconds on a CPU", min_per_class=2, backbone="frozen-encoder",
                     needs="a BERT-style Hugging Face encoder (such as minilm) and --task single, multi or regression"),
    "contrastive": Method("contrastive", "BERT-style encoders, few-shot (SetFit): the encoder tuned on same/different-"
                                         "class pairs of training rows, then its embeddings + logistic regression; "
                                         "about two minutes for a few hundred rows on a CPU", min_per_class=2,
                          backbone="contrastive-encoder",
                          needs="a BERT-style Hugging Face encoder (such as minilm), --task single or multi, and "
                                "single texts (for text pairs use --method frozen or --method standard)"),
}


@dataclass(frozen=True)
class Choice:
    method: Method
    reason: str  # e.g. "auto: 80 training examples in the smallest class ('neg'), fewer than 100"
    backbone: object  # what trains


def method_names() -> list[str]:
    return [*METHODS, "auto"]


def method_help() -> str:
    return "; ".join(f"{m.name}: {m.summary}" for m in METHODS.values()) + f"; auto: {AUTO_RULE}"


def choose_method(opts, backbone, task, train_rows: list) -> Choice:
    """The method of `opts.method` (auto resolved) for the detected `backbone` and `task`,
    checked against the training rows; raises UserInputError before any model loads."""
    name = opts.method
    if name == "auto":
        name, reason = _auto(backbone, task, train_rows)
    else:
        reason = "--method " + name
    if name not in METHODS:
        raise UserInputError(f"unknown --method {name!r}; choose one of {', '.join(method_names())}")
    method = METHODS[name]
    if not method.supports(backbone, task):
        raise UserInputError(f"--method {name} needs {method.needs}; --model {backbone.spec} is {backbone.name} "
                             f"with --task {task.name}: use --method standard")
    _check_examples_per_class(method, task, train_rows)
    chosen = method.training_backbone(backbone)
    chosen.check(opts, task)
    return Choice(method, reason, chosen)


def training_backbones(spec: str | None, method: str) -> list[type]:
    """The backbone classes a run of `--model spec --method method` may train through, told
    before any data is read: auto may pick any method that fits the backbone. For a spec
    that names no backbone yet (None: a model still to be made; or one that detection
    refuses), every registered backbone."""
    from nlpft.finetune.backbones import backbone_class, backbone_names, detect_backbone

    try:
        backbone = detect_backbone(spec) if spec is not None else None
    except UserInputError:
        backbone = None
    if backbone is None:
        return [backbone_class(name) for name in backbone_names()]
    methods = [m for m in (METHODS.values() if method == "auto" else [METHODS.get(method)]) if m is not None]
    return [type(m.training_backbone(backbone)) for m in methods if m.fits(backbone)]


def options_without_effect(spec: str | None, method: str) -> frozenset[str]:
    """The options of `nlpft finetune` that cannot change a run of `--model spec --method
    method`: those every backbone it may train through leaves unused."""
    candidates = training_backbones(spec, method)
    return frozenset.intersection(*(c.unused_options() for c in candidates)) if candidates else frozenset()


def searched_options(spec: str | None, method: str) -> frozenset[str]:
    """The parameters `finetune --search` may tune in such a run (any backbone's it may train through)."""
    return frozenset().union(*(c.search_parameters for c in training_backbones(spec, method)))


def _auto(backbone, task, train_rows: list) -> tuple[str, str]:
    if task.target_kind not in CLASS_KINDS:
        return "standard", f"auto: --task {task.name} has no classes to count"
    fitting = [name for name in SMALL_DATA_METHODS if METHODS[name].supports(backbone, task)]
    if not fitting:
        return "standard", (f"auto: the small-data methods need a BERT-style encoder, and --model {backbone.spec} is "
                            f"{backbone.name}")
    label, count = min(class_counts(task, train_rows).items(), key=lambda kv: kv[1])
    if count >= SMALL_DATA_LIMIT:
        return "standard", (f"auto: {count:,} training examples in the smallest class ({label!r}), "
                            f"{SMALL_DATA_LIMIT} or more")
    passed_over = SMALL_DATA_METHODS[:SMALL_DATA_METHODS.index(fitting[0])]
    why_not = "".join(f"; not {name}, which needs {METHODS[name].needs}" for name in passed_over)
    return fitting[0], (f"auto: {count:,} training examples in the smallest class ({label!r}), fewer than "
                        f"{SMALL_DATA_LIMIT}{why_not}; --method standard fine-tunes the whole model instead")


def class_counts(task, rows: list) -> dict[str, int]:
    """Training examples per class (per label for multi-label rows), every class of the
    task's label space included."""
    counts = Counter()
    for row in rows:
        counts.update(row.label if isinstance(row.label, tuple) else (row.label,))
    return {label: counts.get(label, 0) for label in task.label_names}


def _check_examples_per_class(method: Method, task, train_rows: list) -> None:
    if method.min_per_class <= 1 or task.target_kind not in CLASS_KINDS:
        return
    short = {label: n for label, n in class_counts(task, train_rows).items() if n < method.min_per_class}
    if short:
        listed = ", ".join(f"{label!r} has {n}" for label, n in short.items())
        raise UserInputError(f"--method {method.name} needs at least {method.min_per_class} training examples per "
                             f"class (after the validation and test rows are held out): {listed}; add examples "
                             "of those classes or drop their rows")
