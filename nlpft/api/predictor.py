"""`nlpft.load(DIR)`: a fine-tuned model from Python, predicting and evaluating through
the code of `nlpft predict` and `nlpft evaluate` (`nlpft.runners.predict`): the model's
task makes the rows and judges the scores, its backbone loads the model and scores them."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlpft.errors import UserInputError


@dataclass(frozen=True)
class Prediction:
    """One text's prediction.

    label     single-label: the label; multi-label: a tuple of labels; regression: the
              number; tagging: one tag per word
    scores    classification: {label: probability}; tagging: the probability of each
              word's tag; regression: {}
    words     tagging: the words tagged (nlpft's word rule), else None
    entities  tagging: [{"type", "text", "start", "end", "score"}], else None
    """

    label: Any
    scores: Any
    words: list | None = None
    entities: list | None = None


def load(path: str | Path, runtime: str = "auto", precision: str = "auto", threads: int | None = None) -> Predictor:
    """The --out directory of `nlpft finetune` or `nlpft export` (any task, any backbone),
    ready to predict; `runtime`, `precision` and `threads` as `nlpft predict` takes them."""
    return Predictor.load(path, runtime=runtime, precision=precision, threads=threads)


class Predictor:
    """A fine-tuned model (the --out directory of `nlpft finetune`); the weights load on the
    first prediction and stay loaded."""

    def __init__(self, loaded, run_options: dict | None = None):
        self._loaded = loaded
        self._run_options = run_options or {}  # runtime, precision, threads as given to `load`

    @classmethod
    def load(cls, path: str | Path, runtime: str = "auto", precision: str = "auto",
             threads: int | None = None) -> Predictor:
        from nlpft.finetune.inference import load_for_inference

        run_options = {"runtime": runtime, "precision": precision, "threads": threads}
        return cls(load_for_inference(path, **run_options), run_options)

    @property
    def path(self) -> Path:
        return self._loaded.model_dir

    @property
    def task(self) -> str:
        """single, multi, regression or tag."""
        return self._loaded.task.name

    @property
    def labels(self) -> list[str]:
        return self._loaded.task.label_names

    def __repr__(self) -> str:
        return f"Predictor({str(self.path)!r}, task={self.task!r}, backbone={self._loaded.meta['backbone']!r})"

    def predict(self, texts: str | Sequence[str], text_pairs: str | Sequence[str] | None = None,
                batch_size: int = 32) -> Prediction | list[Prediction]:
        """A Prediction per text (one for a single text). `text_pairs`: the second texts, for
        a model trained on text pairs. Texts longer than the model's limit are read as
        in training: in windows (--long-text windows) or cut."""
        from nlpft.api.state import process_state_kept
        from nlpft.finetune.inference import rows_from_texts

        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        pairs = [None] * len(texts) if text_pairs is None else \
            [text_pairs] if isinstance(text_pairs, str) else list(text_pairs)
        if len(pairs) != len(texts) or any(not isinstance(t, str) for t in [*texts, *filter(None, pairs)]):
            raise UserInputError(f"predict takes texts (and text_pairs) as strings, as many of each "
                                 f"({len(texts)} texts, {len(pairs)} text_pairs)")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UserInputError(f"batch_size must be a whole number, at least 1, not {batch_size!r}")
        if not texts:
            return []
        with process_state_kept():
            rows = rows_from_texts(self._loaded, texts, pairs, numbered=True)
            scores, _ = self._loaded.score(rows, batch_size=batch_size)
        task = self._loaded.task
        predictions = [Prediction(**task.prediction(row, row_scores)) for row, row_scores in zip(rows, scores)]
        return predictions[0] if single else predictions

    def evaluate(self, input: str | Path, **options) -> dict:
        """Metrics on a labeled file, as `nlpft evaluate --model DIR --input FILE` gives them
        (its options as keywords: text_col, label_col, batch_size, normalize_labels, out,
        runtime, ...; runtime, precision and threads default to those given to `load`);
        "headline" sums them up in a line."""
        from nlpft.api.commands import parse_options
        from nlpft.api.state import process_state_kept
        from nlpft.cli.options import from_args
        from nlpft.finetune.options import EvaluateOptions
        from nlpft.runners.predict import run_evaluate

        with process_state_kept():
            args = parse_options(("evaluate",), {**self._run_options, **options, "model": str(self.path),
                                                 "input": str(input)}, caller="Predictor.evaluate()")
            opts = from_args(EvaluateOptions, args)
            if any(getattr(opts, name) != value for name, value in self._run_options.items()):
                return run_evaluate(opts)  # another runtime or precision: loaded for this call
            # evaluate may merge label spellings on the task it is given: not on this one's
            loaded = dataclasses.replace(self._loaded, task=copy.copy(self._loaded.task))
            result = run_evaluate(opts, loaded)
        if loaded.prepared is not None:
            self._loaded.prepared = loaded.prepared  # the weights it loaded, kept for the next call
        return result
