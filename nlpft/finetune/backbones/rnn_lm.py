"""An `nlpft lm train` directory as the backbone: the LM's embedding and LSTM/GRU stack under
the task's head (one decision per text: concat pooling), trained ULMFiT-style
(discriminative learning rates, gradual unfreezing over the model's `layer_groups`).
Texts are framed by [EOS] marks, as the LM saw every line."""

from __future__ import annotations

from dataclasses import dataclass

from nlpft.errors import UserInputError
from nlpft.finetune.backbones.base import Prepared
from nlpft.finetune.backbones.word_common import WordBackbone, WordFeatures, WordOptions
from nlpft.options import option


@dataclass(frozen=True)
class RNNLMOptions(WordOptions):
    """The options of the RNN LM backbone: the word-level ones and ULMFiT's schedule."""

    no_gradual_unfreeze: bool = option(False, "train every layer from the start (default: ULMFiT gradual "
                                              "unfreezing)", fingerprinted=True)
    layer_lr_factor: float = option(2.6, "each layer down the stack learns this many times slower (default: "
                                         "%(default)s; 1 = one rate)", type=float, fingerprinted=True)

    def validate(self) -> None:
        if self.layer_lr_factor < 1:
            raise UserInputError("--layer-lr-factor must be 1 (one rate for all layers) or more")


class RNNLMBackbone(WordBackbone):
    name = "rnn-lm"
    summary = "an `nlpft lm train` directory: the RNN LM's encoder, ULMFiT-style (gradual unfreezing)"
    owner = "the RNN LM"
    owner_models = "--model an `nlpft lm train` directory"
    options = RNNLMOptions
    made_by = ("lm",)

    @classmethod
    def detect(cls, spec: str) -> bool:
        from nlpft.lm.files import is_rnn_lm_dir

        return is_rnn_lm_dir(spec)

    def prepare(self, opts) -> Prepared:
        from nlpft.lm.data import EOS_TOKEN
        from nlpft.lm.files import load_model_dir

        lm, tokenizer = load_model_dir(self.spec)
        eos = tokenizer.token_to_id(EOS_TOKEN)
        marks = (eos,) if eos is not None else ()
        # the LM saw every line between [EOS] marks: texts are framed the same way
        features = WordFeatures(kind="rnn-lm", vocab_size=lm.config.vocab_size, embedding_dim=lm.config.embedding_dim,
                                pad_id=lm.config.pad_id, rnn=lm.config.to_dict(),
                                initialise=lambda model: model.lm.load_state_dict(lm.state_dict()),
                                freeze_embeddings=opts.backbone_options.freeze_embeddings)
        return Prepared(tokenizer=tokenizer, pad_id=lm.config.pad_id, max_length=opts.max_length,
                        build_model=lambda task: self.build(features, task, opts), prefix_ids=marks, suffix_ids=marks)

    def training_extras(self, model, lr: float, opts) -> tuple:
        from nlpft.finetune.trainer import GradualUnfreeze, discriminative_optimizer

        groups = model.layer_groups()
        schedule = opts.backbone_options
        optimizer = discriminative_optimizer(groups, lr, opts.weight_decay, schedule.layer_lr_factor)
        if schedule.no_gradual_unfreeze:
            return optimizer, [], 0.0
        # the last group thaws at the start of epoch len(groups) - 1: judge from its end on
        return optimizer, [GradualUnfreeze(groups)], float(len(groups))
