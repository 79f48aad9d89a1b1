"""What a task means for a classifier head: loss, probabilities, decisions.

single      one label per text: softmax over classes, cross-entropy (optionally class-weighted)
multi       any number of labels: one sigmoid per label, binary cross-entropy, a threshold per
            label (tuned on validation data to maximise that label's F1, default 0.5)
regression  one number: the raw output, mean squared error

Every backbone's head produces logits; everything task-specific lives here, so the
runner, the trainer and `predict` never branch on the task themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from nlpft.errors import UserInputError

TASKS = ("single", "multi", "regression")
HF_PROBLEM_TYPE = {"single": "single_label_classification", "multi": "multi_label_classification",
                   "regression": "regression"}


@dataclass
class TaskSpec:
    task: str
    num_labels: int  # outputs of the head: classes, labels, or 1 for regression
    class_weights: list[float] | None = None
    thresholds: list[float] | None = None  # multi-label decision thresholds
    _weight_tensor: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.task not in TASKS:
            raise UserInputError(f"unknown --task {self.task!r}; choose one of {', '.join(TASKS)}")

    # -- training ---------------------------------------------------------------------------
    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.task == "regression":
            return F.mse_loss(logits.view(-1), labels.float().view(-1))
        weight = self._weights(logits.device)
        if self.task == "multi":
            # per-label weights scale the positive term (pos_weight), as class weights do
            return F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weight)
        return F.cross_entropy(logits, labels.long(), weight=weight)

    def _weights(self, device) -> torch.Tensor | None:
        if self.class_weights is None:
            return None
        if self._weight_tensor is None or self._weight_tensor.device != device:
            self._weight_tensor = torch.tensor(self.class_weights, dtype=torch.float32, device=device)
        return self._weight_tensor

    # -- inference --------------------------------------------------------------------------
    def scores(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities (single: softmax rows; multi: sigmoids) or values (regression)."""
        logits = np.asarray(logits, dtype=np.float64)
        if self.task == "regression":
            return logits.reshape(-1)
        if self.task == "multi":
            return 1.0 / (1.0 + np.exp(-logits))
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=1, keepdims=True)

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """single: class ids (n,); multi: 0/1 matrix (n, labels); regression: values."""
        if self.task == "single":
            return scores.argmax(axis=1)
        if self.task == "multi":
            thresholds = np.asarray(self.thresholds or [0.5] * self.num_labels)
            return (scores >= thresholds).astype(np.int64)
        return scores

    def tune_thresholds(self, scores: np.ndarray, gold: np.ndarray) -> list[float]:
        """Multi-label: per label, the threshold in 0.05..0.95 with the best F1 on (scores,
        gold); a label absent from `gold` keeps 0.5."""
        from sklearn.metrics import f1_score

        thresholds = []
        grid = np.round(np.arange(0.05, 0.96, 0.05), 2)
        for j in range(scores.shape[1]):
            if gold[:, j].sum() == 0:
                thresholds.append(0.5)
                continue
            f1s = [f1_score(gold[:, j], scores[:, j] >= t, zero_division=0) for t in grid]
            thresholds.append(float(grid[int(np.argmax(f1s))]))
        self.thresholds = thresholds
        return thresholds

    def to_dict(self) -> dict:
        return {"task": self.task, "num_labels": self.num_labels, "class_weights": self.class_weights,
                "thresholds": self.thresholds}

    @classmethod
    def from_dict(cls, data: dict) -> TaskSpec:
        return cls(task=data["task"], num_labels=int(data["num_labels"]), class_weights=data.get("class_weights"),
                   thresholds=data.get("thresholds"))


def class_weights(option: str | None, counts: list[int], labels: list[str]) -> list[float] | None:
    """`--class-weights`: None/"none"; "auto" = n / (classes x count) (sklearn's "balanced");
    or "label=weight,label=weight" (unnamed labels get 1.0)."""
    if option is None or option == "none":
        return None
    if option == "auto":
        total, k = sum(counts), len(counts)
        return [total / (k * c) if c else 1.0 for c in counts]
    weights = dict.fromkeys(labels, 1.0)
    for part in option.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in weights:
            raise UserInputError(f"--class-weights: unknown label {name!r}; labels are {', '.join(labels)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise UserInputError(f"--class-weights: {part!r} is not label=number") from None
        if weights[name] <= 0:
            raise UserInputError(f"--class-weights: the weight of {name!r} must be positive")
    return [weights[name] for name in labels]
