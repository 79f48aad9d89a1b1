"""Statistics of a comparison: each model's mean and spread over seeds, and the paired
comparison of two models on the same test rows (a bootstrap interval of the difference in
a metric, McNemar's exact test on the rows one model gets right and the other wrong)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nlpft.finetune.metrics import (
    CONFIDENCE,
    accuracy_per_draw,
    macro_f1_per_draw,
    mse_per_draw,
)

PAIRED_RESAMPLES = 2000
PAIRED_SEED = 0
_DRAWS_AT_ONCE = 250  # resamples computed together: memory grows with draws x rows x labels


def mean_and_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for one value) of the values that exist."""
    present = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not present:
        return None, None
    std = float(np.std(present, ddof=1)) if len(present) > 1 else 0.0
    return float(np.mean(present)), std


# -- per-row statistics: (gold, decided) stacked as (draws, rows[, labels]) -> one value per draw
def _spearman_per_draw(gold: np.ndarray, decided: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return _pearson_per_draw(rankdata(gold, axis=1), rankdata(decided, axis=1))


def _pearson_per_draw(gold: np.ndarray, decided: np.ndarray) -> np.ndarray:
    gold = gold - gold.mean(axis=1, keepdims=True)
    decided = decided - decided.mean(axis=1, keepdims=True)
    denominator = np.sqrt((gold ** 2).sum(axis=1) * (decided ** 2).sum(axis=1))
    return np.divide((gold * decided).sum(axis=1), denominator, out=np.zeros(len(gold)), where=denominator > 0)


def _mae_per_draw(gold: np.ndarray, decided: np.ndarray) -> np.ndarray:
    return np.abs(gold.astype(float) - decided.astype(float)).mean(axis=1)


def _entity_f1_per_draw(gold: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Entity micro F1 of the drawn sentences from each sentence's (true positives, predicted
    entities, gold entities): the counts add up over sentences, so F1 is exact per draw."""
    true_pos, predicted, in_gold = (counts[..., k].sum(axis=1) for k in range(3))
    denominator = predicted + in_gold
    return np.divide(2 * true_pos, denominator, out=np.zeros(denominator.shape), where=denominator > 0)


def entity_counts(gold: list[tuple[str, ...]], predicted: list[tuple[str, ...]]) -> np.ndarray:
    """(sentences, 3): per sentence the entities found exactly, predicted, and in the gold tags."""
    from nlpft.finetune.tag_metrics import entities_of

    gold_entities = set(entities_of([list(tags) for tags in gold]))
    predicted_entities = set(entities_of([list(tags) for tags in predicted]))
    counts = np.zeros((len(gold), 3), dtype=np.int64)
    for entities, column in ((gold_entities & predicted_entities, 0), (predicted_entities, 1), (gold_entities, 2)):
        for entity in entities:
            counts[entity[1], column] += 1
    return counts


def row_statistic(task: str, metric: str, num_labels: int) -> Callable | None:
    """The statistic per bootstrap draw of `metric` for `task`, or None where the metric is
    not computed from the rows' decisions alone."""
    table = {
        "single": {"accuracy": accuracy_per_draw, "macro_f1": macro_f1_per_draw(num_labels)},
        "multi": {"subset_accuracy": accuracy_per_draw, "macro_f1": macro_f1_per_draw(num_labels)},
        "regression": {"spearman": _spearman_per_draw, "pearson": _pearson_per_draw, "mse": mse_per_draw,
                       "mae": _mae_per_draw},
        "tag": {"micro_f1": _entity_f1_per_draw},
    }
    return table.get(task, {}).get(metric)


@dataclass
class PairedComparison:
    metric: str
    difference: float  # best minus other, on all test rows (seed means)
    low: float
    high: float
    resamples: int
    rows: int
    discordant_best: int | None = None  # rows only the best model gets right
    discordant_other: int | None = None  # rows only the other model gets right
    mcnemar_p: float | None = None


def paired_bootstrap(statistic: Callable, gold: np.ndarray, best: list[np.ndarray], other: list[np.ndarray],
                     resamples: int = PAIRED_RESAMPLES, seed: int = PAIRED_SEED,
                     level: float = CONFIDENCE) -> tuple[float, float, float]:
    """(observed difference, low, high): the metric of `best` minus that of `other`, each the
    mean over its seeds (one decision array per seed), on all rows and on `resamples` draws
    of the rows with replacement; the same draws for both models, so the pairing holds."""
    rows = len(gold)

    def seed_mean(runs: list[np.ndarray], draws: np.ndarray) -> np.ndarray:
        return np.mean([statistic(gold[draws], decided[draws]) for decided in runs], axis=0)

    everything = np.arange(rows)[None, :]
    observed = float(seed_mean(best, everything)[0] - seed_mean(other, everything)[0])
    draws = np.random.default_rng(seed).integers(0, rows, size=(resamples, rows))
    differences = np.concatenate([seed_mean(best, chunk) - seed_mean(other, chunk)
                                  for chunk in np.array_split(draws, max(1, resamples // _DRAWS_AT_ONCE))])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return observed, float(low), float(high)


def majority_correct(gold: np.ndarray, runs: list[np.ndarray]) -> np.ndarray:
    """Per row: right in more than half of a model's seeds (one seed: right in it)."""
    right = np.mean([_row_right(gold, decided) for decided in runs], axis=0)
    return right > 0.5


def _row_right(gold: np.ndarray, decided: np.ndarray) -> np.ndarray:
    same = gold == decided
    return same.all(axis=-1) if same.ndim == 2 else same


def mcnemar_exact(best_right: np.ndarray, other_right: np.ndarray) -> tuple[int, int, float]:
    """(rows only the first gets right, rows only the second gets right, two-sided exact p):
    under "equally good" each discordant row is a fair coin (a binomial test)."""
    from scipy.stats import binomtest

    only_best = int(np.sum(best_right & ~other_right))
    only_other = int(np.sum(~best_right & other_right))
    discordant = only_best + only_other
    p = 1.0 if discordant == 0 else float(binomtest(only_best, discordant, 0.5).pvalue)
    return only_best, only_other, p
