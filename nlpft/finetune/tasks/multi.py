"""`--task multi`: any number of labels per text. One sigmoid per label, binary
cross-entropy (--class-weights scale each label's positive term), a threshold per label
tuned on validation data to maximise that label's F1 (default 0.5); subset accuracy,
macro/micro F1 and per-label scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nlpft.finetune.tasks.text import TextTask
from nlpft.finetune.tasks.weights import class_weights

if TYPE_CHECKING:  # numpy loads when a method needs it: listing the plug-ins stays cheap
    import numpy as np


class MultiLabelTask(TextTask):
    name = "multi"
    summary = "several labels per text"
    label_cell = "multi"
    target_kind = "label-set"  # what one row's target is (TF-IDF picks its model by it)
    hf_problem_type = "multi_label_classification"

    @property
    def num_outputs(self) -> int:
        return len(self.label_map)

    def targets(self, rows: list) -> list:
        import numpy as np

        return [self.label_map.encode_multi(r.label).astype(np.float32).tolist() for r in rows]

    def gold(self, rows: list) -> np.ndarray:
        import numpy as np

        return np.stack([self.label_map.encode_multi(r.label) for r in rows])

    def fit_targets(self, rows: list, option: str | None) -> None:
        targets = self.targets(rows)
        counts = [int(sum(v[i] for v in targets)) for i in range(self.num_outputs)]
        self.class_weights = class_weights(option, counts, self.label_names)

    def logits_loss(self, logits, labels):
        import torch.nn.functional as F

        # per-label weights scale the positive term (pos_weight), as class weights do
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float(), pos_weight=self._weights(logits.device))

    def scores(self, logits: np.ndarray) -> np.ndarray:
        import numpy as np

        return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))

    def decide(self, scores: np.ndarray) -> np.ndarray:
        import numpy as np

        thresholds = np.asarray(self.thresholds or [0.5] * self.num_outputs)
        return (scores >= thresholds).astype(np.int64)

    def tune(self, valid_scores: np.ndarray, valid_rows: list) -> None:
        self.tune_thresholds(valid_scores, self.gold(valid_rows))

    def tune_thresholds(self, scores: np.ndarray, gold: np.ndarray) -> list[float]:
        """Per label, the threshold in 0.05..0.95 with the best F1 on (scores, gold); a label
        absent from `gold` keeps 0.5."""
        import numpy as np
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

    def eval_metrics(self, logits: np.ndarray, label_ids: np.ndarray) -> dict:
        from sklearn.metrics import f1_score

        decided = self.decide(self.scores(logits))
        return {"macro_f1": float(f1_score(label_ids, decided, average="macro", zero_division=0))}

    def metrics_of(self, gold: np.ndarray, decided: np.ndarray) -> dict:
        import numpy as np

        from nlpft.finetune.metrics import multilabel_metrics

        return multilabel_metrics(np.asarray(gold), np.asarray(decided), self.label_names)

    def interval_statistics(self) -> dict:
        from nlpft.finetune.metrics import accuracy_per_draw, macro_f1_per_draw

        return {"subset_accuracy": accuracy_per_draw, "macro_f1": macro_f1_per_draw(self.num_outputs)}

    def headline(self, metrics: dict) -> str:
        from nlpft.finetune.metrics import with_interval

        return (f"subset accuracy {with_interval(metrics, 'subset_accuracy')}, macro F1 "
                f"{with_interval(metrics, 'macro_f1')}, micro F1 {metrics['micro_f1']:.4f}")

    def format_decision(self, decided) -> str:
        return ";".join(self.decision_value(decided))

    def decision_value(self, decided) -> tuple[str, ...]:
        return tuple(n for n, on in zip(self.label_names, decided, strict=True) if on)
