"""Hugging Face encoders (BERT-style): the stock [CLS] pooler and sequence-classification
head (`--pooling cls`, loadable by `pipeline("text-classification")`), or nlpft's
mean-pooling head (`--pooling mean`, loaded by nlpft predict/evaluate); for a per-word
task the stock token-classification head (`pipeline("token-classification")`)."""

from __future__ import annotations

from pathlib import Path

from nlpft.finetune.backbones.hf_common import HFBackbone, head_config


class HFEncoder(HFBackbone):
    name = "hf-encoder"
    family = "encoder"
    summary = ("minilm (or another alias), a BERT-style Hugging Face directory or cached hub id: a classification "
               "head on [CLS] (or --pooling mean); --task tag: a token-classification head")
    usual_lr = 2e-5
    heads = ("sequence-classification", "token-classification")

    def check_options(self, opts) -> None:
        """Both poolings apply."""

    def build_model(self, resolved, hf_tok, task, opts):
        if opts.pooling != "mean":
            return super().build_model(resolved, hf_tok, task, opts)
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

    def load_model(self, model_dir: Path, task):
        from nlpft.finetune.pooled import MeanPoolClassifier, is_mean_pooled

        if is_mean_pooled(model_dir):
            return MeanPoolClassifier.from_pretrained(model_dir)
        return super().load_model(model_dir, task)
