"""What the word-level backbones (static vectors, the RNN LM) share: a `WordClassifier`
(see `nlpft.finetune.word_models`) saved next to the backbone's `tokenizer.json`, and the
learning rate and epochs of a small model trained from scratch above its embedding."""

from __future__ import annotations

from pathlib import Path

from nlpft.finetune.backbones.base import Backbone, Prepared

WORD_LEVEL_EPOCHS = 20.0  # seconds to minutes an epoch; early stopping ends them
WORD_LEVEL_LR = 2e-3


class WordBackbone(Backbone):
    default_epochs = WORD_LEVEL_EPOCHS
    word_level = True

    def default_lr(self, parameters: int) -> float:
        return WORD_LEVEL_LR

    def save(self, work: Path, prepared: Prepared) -> None:
        prepared.tokenizer.save(work)  # tokenizer.json next to the classifier

    def load(self, model_dir: Path, meta: dict, task) -> Prepared:
        from nlpft.finetune.word_models import WordClassifier
        from nlpft.tokenization import WordTokenizer

        model = WordClassifier.from_pretrained(model_dir)
        framing = meta.get("text_framing") or {}
        return Prepared(tokenizer=WordTokenizer.load(Path(model_dir) / "tokenizer.json"), pad_id=model.config.pad_id,
                        max_length=int(meta.get("max_length") or 256), model=model,
                        prefix_ids=tuple(framing.get("prefix_ids", ())), suffix_ids=tuple(framing.get("suffix_ids", ())))
