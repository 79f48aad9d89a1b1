"""`--model tfidf`: TF-IDF word 1-2 grams + a linear model, fitted by scikit-learn (see
`nlpft.finetune.tfidf`). It trains itself (`fit` overrides the shared trainer), in one
process even under torchrun, and takes the raw texts, not token ids."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from nlpft.errors import UserInputError
from nlpft.finetune.backbones.base import TRAINER_OPTIONS, Backbone, Prepared
from nlpft.finetune.search_space import Param

if TYPE_CHECKING:  # numpy loads when a method needs it: listing the plug-ins stays cheap
    import numpy as np


TARGET_KINDS = ("class", "label-set", "number")
TFIDF_C = 10.0  # --head-c default: TF-IDF features are many and sparse; C=10 was best on BBC News and polarity


class TfidfBackbone(Backbone):
    name = "tfidf"
    summary = "tfidf: TF-IDF word 1-2 grams + logistic regression (scikit-learn)"
    uses_precision = False
    every_rank = False
    # the inverse regularisation of the linear model: 0.01 (nearly the class priors) to 100
    # (barely regularised) brackets the default 10; nothing else of TF-IDF is trained
    search_parameters: ClassVar[dict[str, Param]] = {"head_c": Param(0.01, 100.0, log=True)}
    # it reads the raw texts whole and trains no network
    ignored_options: ClassVar[frozenset[str]] = TRAINER_OPTIONS | {"max_length", "stride"}

    @classmethod
    def detect(cls, spec: str) -> bool:
        return spec == "tfidf"

    def search_space(self, opts) -> dict[str, Param]:
        from nlpft.finetune.tasks import task_class

        if task_class(opts.task).target_kind == "number":
            raise UserInputError(f"--model tfidf --task {opts.task} has nothing to search: its ridge regression "
                                 "takes no C; drop --search, or search a neural backbone")
        return super().search_space(opts)

    def supports(self, task) -> bool:
        return task.target_kind in TARGET_KINDS

    def fit(self, opts, task, splits, work: Path, output) -> dict:
        from nlpft.finetune.observers import report_validation, validation_value
        from nlpft.finetune.tfidf import TfidfClassifier

        started = time.perf_counter()
        model = TfidfClassifier.fit(splits.train, task, seed=opts.seed, C=TFIDF_C if opts.head_c is None else opts.head_c)
        train_s = time.perf_counter() - started
        valid_logits = model.logits(*task.texts_and_pairs(splits.valid))
        report_validation(validation_value(task, valid_logits, task.gold(splits.valid)), evaluation=1,
                          can_stop=False)
        task.tune(task.scores(valid_logits), splits.valid)
        model.task_state = task.state()
        model.save(work)
        return {"test_scores": task.scores(model.logits(*task.texts_and_pairs(splits.test))), "train_s": train_s,
                "history": [], "parameters": model.num_parameters(), "steps": None, "epochs": None}

    def load(self, model_dir: Path, meta: dict, task) -> Prepared:
        from nlpft.finetune.tfidf import TfidfClassifier

        return Prepared(tokenizer=None, pad_id=0, max_length=0, model=TfidfClassifier.load(Path(model_dir)))

    def logits(self, prepared: Prepared, task, rows: list, batch_size: int) -> tuple[np.ndarray, int]:
        return prepared.model.logits(*task.texts_and_pairs(rows)), 0
