"""`--task single`: one label per text. Softmax over the classes, cross-entropy (optionally
class-weighted by --class-weights), argmax decisions; accuracy, macro/micro F1, MCC,
per-class scores and a confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nlpft.finetune.tasks.text import TextTask
from nlpft.finetune.tasks.weights import class_weights

if TYPE_CHECKING:  # numpy loads when a method needs it: listing the plug-ins stays cheap
    import numpy as np


class SingleLabelTask(TextTask):
    name = "single"
    summary = "one label per text"
    label_cell = "single"
    target_kind = "class"  # what one row's target is (TF-IDF picks its model by it)
    hf_problem_type = "single_label_classification"

    @property
    def num_outputs(self) -> int:
        return len(self.label_map)

    def targets(self, rows: list) -> list:
        return [self.label_map.encode(r.label) for r in rows]

    def fit_targets(self, rows: list, option: str | None) -> None:
        targets = self.targets(rows)
        counts = [sum(1 for v in targets if v == i) for i in range(self.num_outputs)]
        self.class_weights = class_weights(option, counts, self.label_names)

    def logits_loss(self, logits, labels):
        import torch.nn.functional as F

        return F.cross_entropy(logits.float(), labels.long(), weight=self._weights(logits.device))

    def scores(self, logits: np.ndarray) -> np.ndarray:
        import numpy as np

        logits = np.asarray(logits, dtype=np.float64)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def decide(self, scores: np.ndarray) -> np.ndarray:
        return scores.argmax(axis=1)

    def eval_metrics(self, logits: np.ndarray, label_ids: np.ndarray) -> dict:
        from sklearn.metrics import accuracy_score, f1_score

        decided = self.decide(self.scores(logits))
        return {"accuracy": float(accuracy_score(label_ids, decided)),
                "macro_f1": float(f1_score(label_ids, decided, average="macro", zero_division=0))}

    def metrics_of(self, gold: np.ndarray, decided: np.ndarray) -> dict:
        import numpy as np

        from nlpft.finetune.metrics import classification_metrics

        return classification_metrics(np.asarray(gold), np.asarray(decided), self.label_names)

    def interval_statistics(self) -> dict:
        from nlpft.finetune.metrics import accuracy_per_draw, macro_f1_per_draw

        return {"accuracy": accuracy_per_draw, "macro_f1": macro_f1_per_draw(self.num_outputs)}

    def headline(self, metrics: dict) -> str:
        from nlpft.finetune.metrics import with_interval

        return (f"accuracy {with_interval(metrics, 'accuracy')}, macro F1 {with_interval(metrics, 'macro_f1')}, "
                f"MCC {metrics['mcc']:.4f}")

    def plots(self, metrics: dict, folder: Path) -> dict[str, str]:
        from nlpft.finetune.metrics import plot_confusion_matrix

        return {"confusion matrix": plot_confusion_matrix(metrics, folder / "confusion_matrix.png").name}

    def format_decision(self, decided) -> str:
        return self.label_names[int(decided)]

    def decision_value(self, decided) -> str:
        return self.format_decision(decided)
