"""`--task regression`: one number per text. The head's raw output, mean squared error;
MSE, MAE, Spearman and Pearson correlation. Keep-best follows the validation loss."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nlpft.finetune.tasks.text import TextTask

if TYPE_CHECKING:  # numpy loads when a method needs it: listing the plug-ins stays cheap
    import numpy as np


class RegressionTask(TextTask):
    name = "regression"
    summary = "a number per text"
    label_cell = "regression"
    target_kind = "number"  # what one row's target is (TF-IDF picks its model by it)
    hf_problem_type = "regression"
    selection_metric = "loss"
    greater_is_better = False
    has_label_space = False
    has_probabilities = False

    @property
    def num_outputs(self) -> int:
        return 1

    def targets(self, rows: list) -> list:
        return [float(r.label) for r in rows]

    def logits_loss(self, logits, labels):
        import torch.nn.functional as F

        return F.mse_loss(logits.float().view(-1), labels.float().view(-1))

    def scores(self, logits: np.ndarray) -> np.ndarray:
        import numpy as np

        return np.asarray(logits, dtype=np.float64).reshape(-1)

    def decide(self, scores: np.ndarray) -> np.ndarray:
        return scores

    def eval_metrics(self, logits: np.ndarray, label_ids: np.ndarray) -> dict:
        import numpy as np

        return {"mse": float(np.mean((self.scores(logits) - label_ids) ** 2))}

    def metrics_of(self, gold: np.ndarray, decided: np.ndarray) -> dict:
        from nlpft.finetune.metrics import regression_metrics

        return regression_metrics(gold, decided)

    def interval_statistics(self) -> dict:
        from nlpft.finetune.metrics import mse_per_draw

        return {"mse": mse_per_draw}

    def headline(self, metrics: dict) -> str:
        from nlpft.finetune.metrics import with_interval

        spearman = metrics["spearman"]
        return (f"MSE {with_interval(metrics, 'mse')}, MAE {metrics['mae']:.4f}, Spearman "
                + ("n/a" if spearman is None else f"{spearman:.4f}"))

    def format_decision(self, decided) -> str:
        return f"{float(decided):.6g}"

    def decision_value(self, decided) -> float:
        return float(decided)

    def describe_prediction(self, scores: np.ndarray) -> list[str]:
        return [f"{float(scores):.6g}"]
