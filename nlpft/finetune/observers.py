"""Validation scores seen from outside a run, which may ask the run to stop.

`finetune --search` runs each trial inside `observing_validation(observer)`; the shared
trainer (`ReportValidation`) and backbones that train themselves (TF-IDF) call
`report_validation(value, evaluation)` after each evaluation on the validation split, with
the task's selection metric (the one keep-best follows). The observer returns True to stop
the run (a pruned trial). Without an observer a report does nothing, so the trainer never
needs to know whether a search is running.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from contextvars import ContextVar

# (value or None when not finite, evaluation number, whether the run can still stop) -> stop?
Observer = Callable[[float | None, int, bool], bool]

_observer: ContextVar[Observer | None] = ContextVar("nlpft_validation_observer", default=None)


@contextlib.contextmanager
def observing_validation(observer: Observer):
    token = _observer.set(observer)
    try:
        yield
    finally:
        _observer.reset(token)


def observed() -> bool:
    return _observer.get() is not None


def report_validation(value: float | None, evaluation: int, can_stop: bool = True) -> bool:
    """Tell the observer (if any) the `evaluation`-th validation score (1 = the first); True
    when it asks the run to stop. A score that is not finite is passed as None. `can_stop`
    is False for a run that has nothing left to do (one fit, such as TF-IDF's): stopping it
    would save nothing."""
    observer = _observer.get()
    if observer is None:
        return False
    finite = value is not None and math.isfinite(float(value))
    return bool(observer(float(value) if finite else None, evaluation, can_stop))


def validation_value(task, logits, gold) -> float:
    """The task's selection metric on validation `logits` against `gold` targets, as the
    trainer computes it (a metric named `loss` is the task's loss)."""
    metrics = task.eval_metrics(logits, gold)
    if task.selection_metric in metrics:
        return float(metrics[task.selection_metric])
    if task.selection_metric == "loss":
        import torch

        return float(task.logits_loss(torch.as_tensor(logits), torch.as_tensor(gold)))
    raise KeyError(f"{task.name}: selection metric {task.selection_metric!r} is not among {sorted(metrics)}")
