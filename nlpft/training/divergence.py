"""Stop a run whose loss blew up, instead of publishing its NaN weights as a success.

Each trainer checks the loss value it already has in hand after a step (the number it logs
anyway, so no extra pass over the model) and raises `TrainingDiverged` when it is NaN,
infinite, or above a bound where the trainer has a meaningful one. The error is a bad-input
error (exit 2): the usual cause is a learning rate that is too high. The run's partial
directory keeps its last checkpoint written before the divergence (trainers check the
weights before writing one), and nothing is published.
"""

from __future__ import annotations

import math

from nlpft.errors import UserInputError


class TrainingDiverged(UserInputError):
    """The loss became NaN, infinite or absurdly large; the message says where and what to lower."""

    def __init__(self, where: str, what: str, hint: str = "lower --lr"):
        self.where = where
        super().__init__(f"training diverged at {where}: {what}; {hint}")


def check_loss(loss: float, where: str, limit: float = math.inf, hint: str = "lower --lr") -> None:
    """Raise TrainingDiverged unless `loss` is a finite number no larger than `limit`."""
    if not math.isfinite(loss) or loss > limit:
        raise TrainingDiverged(where, f"loss {loss:.4g}", hint)


def check_weights(named_tensors, where: str, hint: str = "lower --lr") -> None:
    """Raise TrainingDiverged when a weight is NaN or infinite (checked before a checkpoint or
    the final model is written, so neither ever holds such weights)."""
    from nlpft.training.weights import non_finite_tensors

    bad = non_finite_tensors(named_tensors)
    if bad:
        raise TrainingDiverged(where, f"weights NaN or infinite ({', '.join(bad[:3])})", hint)
