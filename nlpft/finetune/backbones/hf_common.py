"""What the Hugging Face backbones share: the tokenizer checks, the sequence-classification
head (or nlpft's mean-pooling one), the small-model learning rate and loading back.

The output of a `cls`-pooled model is a standard directory (config.json with id2label,
model.safetensors, tokenizer), so `pipeline("text-classification", model=OUT)` loads it
without nlpft.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

from nlpft.errors import UserInputError
from nlpft.finetune.backbones.base import Backbone, Prepared

SMALL_MODEL = 10_000_000  # transformers below this (e.g. from `nlpft pretrain --size tiny`) get SMALL_MODEL_LR
SMALL_MODEL_LR = 5e-4
HEAD_CLASSES = {"sequence-classification": "AutoModelForSequenceClassification",
                "token-classification": "AutoModelForTokenClassification"}


def resolved_family(spec: str) -> str:
    """"encoder" or "decoder" for a Hugging Face --model; a bad name fails here, before
    anything loads."""
    from nlpft.pretrained.loading import resolve_model

    resolved = resolve_model(spec)
    if resolved.family not in ("encoder", "decoder"):
        raise UserInputError(f"{spec}: a {resolved.model_type} model is neither an encoder (BERT-style) "
                             "nor a decoder (GPT-style)")
    return resolved.family


class HFBackbone(Backbone):
    family: ClassVar[str]
    fallback = True
    bf16_inference = True  # trained under bf16 autocast where native: scored the same way
    exports_onnx = True
    heads = ("sequence-classification",)
    usual_lr: ClassVar[float]
    made_by = ("pretrain",)

    @classmethod
    def detect(cls, spec: str) -> bool:
        return resolved_family(spec) == cls.family

    def default_lr(self, parameters: int) -> float:
        """The BERT/GPT-2 rates (2e-5, 5e-5) suit models of tens of millions of parameters; a
        small transformer barely moves at them (a 1.9M-parameter GPT-2 pretrained by nlpft
        reached 0.43 test accuracy on BBC News in 3 epochs at 5e-5, 0.93 at 5e-4)."""
        return SMALL_MODEL_LR if parameters < SMALL_MODEL else self.usual_lr

    def default_lr_note(self, lr: float) -> str | None:
        if lr == self.usual_lr:
            return None
        return f"learning rate {lr:g}: the default for a transformer under {SMALL_MODEL:,} parameters (--lr sets it)"

    # -- training ---------------------------------------------------------------------------
    def prepare(self, opts) -> Prepared:
        from nlpft.pretrained.loading import load_config, load_tokenizer, resolve_model

        resolved = resolve_model(self.spec)
        tokenizer = load_tokenizer(resolved)
        hf_tok = tokenizer.hf
        if hf_tok.pad_token_id is None:  # GPT-2 style: pad with end-of-text, masked out by attention
            if hf_tok.eos_token is None:
                raise UserInputError(f"{resolved.name}: the tokenizer has neither a pad nor an end-of-text token")
            hf_tok.pad_token = hf_tok.eos_token
        embedding_rows = getattr(load_config(resolved), "vocab_size", None)  # checked before the weights load
        if embedding_rows is not None and len(hf_tok) > embedding_rows:
            raise UserInputError(f"{resolved.where}: the tokenizer has {len(hf_tok):,} ids but the model's "
                                 f"embedding has {embedding_rows:,} rows; the tokenizer and the weights come from "
                                 "different checkpoints (save them together, or pass the matching tokenizer's "
                                 "directory)")
        return Prepared(tokenizer=tokenizer, pad_id=hf_tok.pad_token_id,
                        max_length=min(opts.max_length, tokenizer.max_length),
                        build_model=lambda task: self.build_model(resolved, hf_tok, task, opts),
                        processing_class=hf_tok)

    def build_model(self, resolved, hf_tok, task, opts):
        from nlpft.pretrained.loading import load_config, load_model

        extra = head_config(task)
        if opts.random_init:  # the architecture and tokenizer only: what pretraining buys, measured
            import transformers

            config = load_config(resolved)
            for key, value in extra.items():
                setattr(config, key, value)
            model, info = getattr(transformers, HEAD_CLASSES[task.head]).from_config(config), {}
        else:
            model, info = load_model(resolved, head=task.head, quiet=True, output_loading_info=True, **extra)
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = hf_tok.pad_token_id
        new_head = sorted(info.get("missing_keys", []))
        if new_head and not opts.quiet:
            print(f"  new {task.num_outputs}-way head initialised ({', '.join(new_head[:3])}); fine-tuning trains "
                  "it with the backbone", file=sys.stderr)
        return task.finish_model(model)

    # -- inference --------------------------------------------------------------------------
    def load(self, model_dir: Path, meta: dict, task) -> Prepared:
        from nlpft.training.hf import transformers_quiet

        prepared = self.load_inputs(model_dir, meta, task)
        with transformers_quiet():
            prepared.model = self.load_model(model_dir, meta, task)
        return prepared

    def load_inputs(self, model_dir: Path, meta: dict, task) -> Prepared:
        """The tokenizer, pad id, length limit and framing ids saved in `model_dir`."""
        from nlpft.pretrained.loading import load_tokenizer
        from nlpft.training.hf import transformers_quiet

        with transformers_quiet():
            tokenizer = load_tokenizer(str(model_dir))
        if tokenizer.hf.pad_token_id is None:
            tokenizer.hf.pad_token = tokenizer.hf.eos_token
        framing = meta.get("text_framing") or {}
        return Prepared(tokenizer=tokenizer, pad_id=tokenizer.hf.pad_token_id,
                        max_length=min(int(meta.get("max_length") or 512), tokenizer.max_length),
                        prefix_ids=tuple(framing.get("prefix_ids", ())), suffix_ids=tuple(framing.get("suffix_ids", ())))

    def load_model(self, model_dir: Path, meta: dict, task):
        from nlpft.pretrained.loading import load_model

        return task.reload_model(load_model(str(model_dir), head=task.head, quiet=True), model_dir)


def head_config(task) -> dict:
    """config.json fields of a new head: its size, problem type and label names."""
    extra = {"num_labels": task.num_outputs, "problem_type": task.hf_problem_type}
    names = task.label_names
    if names:
        extra.update(id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    return extra
