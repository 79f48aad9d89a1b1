"""Backbone plug-ins (see `base.Backbone`): one module per backbone, registered here. A
--model value is matched in this order (TF-IDF by name, an RNN-LM directory, static
vectors), the Hugging Face ones last. A backbone that a --method trains through (frozen-encoder,
contrastive-encoder)
is never detected from --model; it is registered so that predict/evaluate find it by name."""

from nlpft.finetune.backbones.base import (
    Backbone,
    Prepared,
    backbone_class,
    backbone_help,
    backbone_names,
    detect_backbone,
    register,
    unregister,
)
from nlpft.finetune.backbones.contrastive_encoder import ContrastiveEncoder
from nlpft.finetune.backbones.frozen_encoder import FrozenEncoder
from nlpft.finetune.backbones.hf_decoder import HFDecoder
from nlpft.finetune.backbones.hf_encoder import HFEncoder
from nlpft.finetune.backbones.rnn_lm import RNNLMBackbone
from nlpft.finetune.backbones.static import StaticVectors
from nlpft.finetune.backbones.tfidf import TfidfBackbone

register(TfidfBackbone)
register(RNNLMBackbone)
register(StaticVectors)
register(HFEncoder)
register(HFDecoder)
register(FrozenEncoder)
register(ContrastiveEncoder)

__all__ = ["Backbone", "Prepared", "backbone_class", "backbone_help", "backbone_names", "detect_backbone",
           "register", "unregister"]
