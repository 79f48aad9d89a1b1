"""An `nlpft lm train` directory as the backbone: the LM's embedding and LSTM/GRU stack under
the task's head (one decision per text: concat pooling), trained ULMFiT-style
(discriminative learning rates, gradual unfreezing over the model's `layer_groups`).
Texts are framed by [EOS] marks, as the LM saw every line."""

from __future__ import annotations

from nlpft.finetune.backbones.base import Prepared
from nlpft.finetune.backbones.word_common import WordBackbone, WordFeatures


class RNNLMBackbone(WordBackbone):
    name = "rnn-lm"
    summary = "an `nlpft lm train` directory: the RNN LM's encoder, ULMFiT-style (gradual unfreezing)"

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
                                initialise=lambda model: model.lm.load_state_dict(lm.state_dict()))
        return Prepared(tokenizer=tokenizer, pad_id=lm.config.pad_id, max_length=opts.max_length,
                        build_model=lambda task: self.build(features, task, opts), prefix_ids=marks, suffix_ids=marks)

    def training_extras(self, model, lr: float, opts) -> tuple:
        from nlpft.finetune.trainer import GradualUnfreeze, discriminative_optimizer

        groups = model.layer_groups()
        optimizer = discriminative_optimizer(groups, lr, opts.weight_decay, opts.layer_lr_factor)
        if opts.no_gradual_unfreeze:
            return optimizer, [], 0.0
        # the last group thaws at the start of epoch len(groups) - 1: judge from its end on
        return optimizer, [GradualUnfreeze(groups)], float(len(groups))
