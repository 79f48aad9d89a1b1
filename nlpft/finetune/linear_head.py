"""The scikit-learn linear head shared by the backbones that fit one on fixed features
(TF-IDF vectors, frozen sentence embeddings), saved as plain arrays: no pickle.

The task's `target_kind` picks the model: a class per text -> one multinomial logistic
regression; a set of labels -> one logistic regression per label (a label always on or
always off becomes a constant); a number -> ridge regression. Whatever was fitted, the head
is `features @ coef.T + intercept`, one column per task output, so scoring needs numpy only.
"""

from __future__ import annotations

import numpy as np

CONSTANT_LOGIT = 10.0  # a label that training never saw vary: sigmoid(10) ~ 1, sigmoid(-10) ~ 0


class LinearHead:
    def __init__(self, coef: np.ndarray, intercept: np.ndarray):
        self.coef = coef  # (outputs, features)
        self.intercept = intercept  # (outputs,)

    @classmethod
    def fit(cls, features, task, gold: np.ndarray, seed: int, C: float) -> LinearHead:
        """Fitted on `features` (rows x features, dense or sparse) against the task's `gold`
        targets; `C` is the inverse regularisation strength of the logistic regressions."""
        from sklearn.linear_model import LogisticRegression, Ridge

        if task.target_kind == "number":
            ridge = Ridge(alpha=1.0).fit(features, gold.astype(float))
            return cls(ridge.coef_.reshape(1, -1).astype(np.float32),
                       np.atleast_1d(ridge.intercept_).astype(np.float32))
        n = task.num_outputs
        if task.target_kind == "label-set":
            coef = np.zeros((n, features.shape[1]), dtype=np.float32)
            intercept = np.zeros(n, dtype=np.float32)
            for j in range(n):
                column = gold[:, j]
                if column.min() == column.max():
                    intercept[j] = CONSTANT_LOGIT if column[0] else -CONSTANT_LOGIT
                    continue
                lr = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(features, column)
                coef[j], intercept[j] = lr.coef_[0], lr.intercept_[0]
            return cls(coef, intercept)
        lr = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(features, gold)
        coef, intercept = lr.coef_.astype(np.float32), lr.intercept_.astype(np.float32)
        if n == 2 and coef.shape[0] == 1:  # binary: sklearn keeps one row; make it two logits
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.array([0.0, intercept[0]], dtype=np.float32)
        return cls(coef, intercept)

    def logits(self, features) -> np.ndarray:
        return np.asarray(features @ self.coef.T) + self.intercept  # (rows, outputs)

    def num_parameters(self) -> int:
        return int(self.coef.size + self.intercept.size)

    def arrays(self) -> dict[str, np.ndarray]:
        """For safetensors, which writes the raw buffer: sklearn's coefficients may be
        Fortran-ordered."""
        return {"coef": np.ascontiguousarray(self.coef), "intercept": np.ascontiguousarray(self.intercept)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> LinearHead:
        return cls(arrays["coef"], arrays["intercept"])
