"""What the word-level backbones (static vectors, the RNN LM) share: they hand the task
`WordFeatures` (sizes, the RNN's config, how to copy the pretrained weights in) and the
task builds its head on them (`Task.word_model`: a pooled classifier for one decision per
text, a BiLSTM tagger for one per word), saved next to the backbone's `tokenizer.json`.
Also the learning rate and epochs of a small model trained above its embedding, and the
option both take (`WordOptions`: --freeze-embeddings)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from nlpft.finetune.backbones.base import Backbone, Prepared
from nlpft.options import option
from nlpft.finetune.search_space import Param

WORD_LEVEL_EPOCHS = 20.0  # seconds to minutes an epoch; early stopping ends them
WORD_LEVEL_LR = 2e-3


@dataclass(frozen=True)
class WordOptions:
    """The options of every word-level backbone (one field, so both declare the same option)."""

    freeze_embeddings: bool = option(False, "keep the word embedding fixed", fingerprinted=True)


@dataclass
class WordFeatures:
    """A word-level backbone as a task's head sees it."""

    kind: str  # "static" | "rnn-lm": the configs of nlpft's word-level models take it
    vocab_size: int
    embedding_dim: int
    pad_id: int
    rnn: dict | None  # the RNN LM's config (rnn-lm)
    initialise: Callable  # (model) -> None: the pretrained weights copied into a new model
    freeze_embeddings: bool = False  # --freeze-embeddings: the task's head keeps the embedding fixed

    def model_config(self, num_labels: int) -> dict:
        """The fields every word-level model config shares."""
        return {"kind": self.kind, "num_labels": num_labels, "vocab_size": self.vocab_size,
                "embedding_dim": self.embedding_dim, "pad_id": self.pad_id,
                "freeze_embeddings": self.freeze_embeddings, "rnn": self.rnn}


class WordBackbone(Backbone):
    default_epochs = WORD_LEVEL_EPOCHS
    word_level = True
    options = WordOptions
    # a small model over its embedding: ten times the transformers' rates around the 2e-3
    # default, more epochs (early stopping ends them), larger batches are cheap
    search_parameters: ClassVar[dict[str, Param]] = {"lr": Param(3e-4, 1e-2, log=True), "batch_size": Param(choices=(16, 32, 64)),
                         "epochs": Param(5, 30, whole=True), "weight_decay": Param(0.0, 0.1)}

    def supports(self, task) -> bool:
        return True  # the task builds its own head on the word features (`Task.word_model`)

    default_lr_range = (WORD_LEVEL_LR, WORD_LEVEL_LR)

    def default_lr(self, parameters: int) -> float:
        return WORD_LEVEL_LR

    def build(self, features: WordFeatures, task, opts):
        model = task.word_model(features, opts)
        if not opts.random_init:
            features.initialise(model)
        return model

    def save(self, work: Path, prepared: Prepared) -> None:
        prepared.tokenizer.save(work)  # tokenizer.json next to the model

    def load(self, model_dir: Path, meta: dict, task) -> Prepared:
        from nlpft.tokenization import WordTokenizer

        model = task.load_word_model(model_dir)
        framing = meta.get("text_framing") or {}
        return Prepared(tokenizer=WordTokenizer.load(Path(model_dir) / "tokenizer.json"), pad_id=model.config.pad_id,
                        max_length=int(meta.get("max_length") or 256), model=model,
                        prefix_ids=tuple(framing.get("prefix_ids", ())), suffix_ids=tuple(framing.get("suffix_ids", ())))
