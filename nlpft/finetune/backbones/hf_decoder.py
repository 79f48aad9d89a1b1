"""Hugging Face decoders (GPT-style): the sequence-classification head reads the last real
token (right padding, found from the attention mask); an end-of-text token pads when the
tokenizer has no pad token."""

from __future__ import annotations

from nlpft.finetune.backbones.hf_common import SMALL_MODEL_LR, HFBackbone


class HFDecoder(HFBackbone):
    name = "hf-decoder"
    family = "decoder"
    summary = "a GPT-style Hugging Face model (directory or hub id): a classification head on its last token"
    usual_lr = 5e-5
    default_lr_range = (usual_lr, SMALL_MODEL_LR)
