"""Hugging Face encoders (BERT-style): the stock [CLS] pooler and sequence-classification
head (`--pooling cls`, loadable by `pipeline("text-classification")`), or nlpft's
mean-pooling head (`--pooling mean`, loaded by nlpft predict/evaluate); for a per-word
task the stock token-classification head (`pipeline("token-classification")`). While a
[CLS] classifier trains, its last layer computes the [CLS] position alone
(`nlpft.finetune.first_token`); the saved model is the stock one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nlpft.errors import UserInputError
from nlpft.finetune.backbones.hf_common import SMALL_MODEL_LR, HFBackbone, head_config
from nlpft.options import option


@dataclass(frozen=True)
class EncoderOptions:
    """The options of BERT-style encoders."""

    pooling: str = option(  # "cls" (the stock pooler) or "mean"
        "cls", "cls = the stock [CLS] pooler, and the output works with pipeline('text-classification'); mean = the "
               "average of the token states (how sentence-embedding models such as MiniLM were trained), loaded by "
               "nlpft predict/evaluate (default: %(default)s)", choices=["cls", "mean"], fingerprinted=True)


class HFEncoder(HFBackbone):
    name = "hf-encoder"
    family = "encoder"
    summary = ("minilm (or another alias), a BERT-style Hugging Face directory or hub id: a classification "
               "head on [CLS] (or --pooling mean); --task tag: a token-classification head")
    usual_lr = 2e-5
    default_lr_range = (usual_lr, SMALL_MODEL_LR)
    heads = ("sequence-classification", "token-classification")
    options = EncoderOptions
    owner = "BERT-style encoders"
    owner_models = "--model minilm, ..."

    def check(self, opts, task) -> None:
        super().check(opts, task)
        if opts.backbone_options.pooling != "cls" and task.head != "sequence-classification":
            raise UserInputError(f"--pooling applies to one decision per text; --task {task.name} reads every word")

    def build_model(self, resolved, hf_tok, task, opts):
        if opts.backbone_options.pooling != "mean":
            model = super().build_model(resolved, hf_tok, task, opts)
            if task.head == "sequence-classification":  # the head reads [CLS] alone (nlpft.finetune.first_token)
                from nlpft.finetune.first_token import first_token_last_layer

                first_token_last_layer(model)
            return model
        from nlpft.finetune.pooled import MeanPoolClassifier
        from nlpft.pretrained.loading import load_config, load_model

        if opts.random_init:
            from transformers import AutoModel

            encoder = AutoModel.from_config(load_config(resolved))
        else:
            encoder = load_model(resolved, head="base", quiet=True)
        for key, value in head_config(task).items():
            setattr(encoder.config, key, value)
        encoder.train()
        return MeanPoolClassifier(encoder, task.num_outputs)

    def load_model(self, model_dir: Path, meta: dict, task):
        from nlpft.finetune.pooled import MeanPoolClassifier

        if self.saved_options(meta).pooling == "mean":
            return MeanPoolClassifier.from_pretrained(model_dir)
        return super().load_model(model_dir, meta, task)
