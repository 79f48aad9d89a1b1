"""Statistics of a comparison: each model's mean and spread over seeds, and the paired
comparison of two models on the same test rows (a bootstrap interval of the difference in
a metric, McNemar's exact test on the rows one model gets right and the other wrong)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nlpft.finetune.metrics import CONFIDENCE, mse_per_draw

PAIRED_RESAMPLES = 2000
PAIRED_SEED = 0
_CELLS_AT_ONCE = 4_000_000  # draws x rows computed together: memory grows with it


def mean_and_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for one value) of the values that exist."""
    present = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not present:
        return None, None
    std = float(np.std(present, ddof=1)) if len(present) > 1 else 0.0
    return float(np.mean(present)), std


# -- statistics of a bootstrap draw -------------------------------------------------------------
@dataclass(frozen=True)
class Additive:
    """A metric made of counts that add up over rows (true positives, predictions, gold
    items, right rows): `counts(gold, decided)` gives each row's counts (rows, k) and
    `value(totals, rows)` the metric of summed counts (draws, k). A draw's totals are the
    rows' counts weighted by how often it picks each row, one sparse product: fast on large
    test sets, and the same value as recomputing the metric on the drawn rows."""
    counts: Callable[[np.ndarray, np.ndarray], np.ndarray]
    value: Callable[[np.ndarray, int], np.ndarray]


def _one_hot(ids: np.ndarray, num_labels: int) -> np.ndarray:
    return ids[:, None] == np.arange(num_labels)


def _f1_counts(num_labels: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Per row and label: true positive, predicted, gold (class ids or 0/1 label sets)."""
    def counts(gold: np.ndarray, decided: np.ndarray) -> np.ndarray:
        if gold.ndim == 1:
            gold, decided = _one_hot(gold, num_labels), _one_hot(decided, num_labels)
        gold, decided = gold.astype(bool), decided.astype(bool)
        return np.concatenate([gold & decided, decided, gold], axis=1).astype(np.float64)
    return counts


def _macro_f1(totals: np.ndarray, rows: int) -> np.ndarray:
    """Macro F1 over the labels a draw holds (in its gold rows or its predictions), as
    `nlpft.finetune.metrics.macro_f1_per_draw` scores it."""
    true_pos, predicted, in_gold = np.split(totals, 3, axis=1)
    denominator = predicted + in_gold
    held = denominator > 0
    f1 = np.divide(2 * true_pos, denominator, out=np.zeros(denominator.shape), where=held)
    return f1.sum(axis=1) / np.maximum(held.sum(axis=1), 1)


def _micro_f1(totals: np.ndarray, rows: int) -> np.ndarray:
    """Micro F1 from summed (true positives, predicted, gold) per draw: a tagger's entity F1."""
    true_pos, predicted, in_gold = totals[:, 0], totals[:, 1], totals[:, 2]
    denominator = predicted + in_gold
    return np.divide(2 * true_pos, denominator, out=np.zeros(denominator.shape), where=denominator > 0)


def _right(gold: np.ndarray, decided: np.ndarray) -> np.ndarray:
    return _row_right(gold, decided)[:, None].astype(np.float64)


def _share(totals: np.ndarray, rows: int) -> np.ndarray:
    return totals[:, 0] / rows


def _entity_counts_given(gold: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return counts.astype(np.float64)  # a tagger's decisions are its sentences' entity counts already


# regression metrics are no sums of per-row counts (Spearman ranks the drawn rows): they are
# recomputed on the drawn rows, (gold, decided) stacked as (draws, rows) -> one value per draw
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


def row_statistic(task: str, metric: str, num_labels: int) -> Additive | Callable | None:
    """How a bootstrap draw's `metric` is computed for `task` (an `Additive`, or a function
    of the drawn rows), or None where the metric is not computed from the rows' decisions."""
    accuracy = Additive(_right, _share)
    macro_f1 = Additive(_f1_counts(num_labels), _macro_f1)
    table = {
        "single": {"accuracy": accuracy, "macro_f1": macro_f1},
        "multi": {"subset_accuracy": accuracy, "macro_f1": macro_f1},
        "regression": {"spearman": _spearman_per_draw, "pearson": _pearson_per_draw, "mse": mse_per_draw,
                       "mae": _mae_per_draw},
        "tag": {"micro_f1": Additive(_entity_counts_given, _micro_f1)},
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
    seeds: list | None = None  # paired within each of these seeds' own test rows; None: all runs share them


def paired_bootstrap(statistic: Additive | Callable, pairings: list[tuple[np.ndarray, list, list]],
                     resamples: int = PAIRED_RESAMPLES, seed: int = PAIRED_SEED,
                     level: float = CONFIDENCE) -> tuple[float, float, float]:
    """(observed difference, low, high) of a metric, best minus other. Each pairing is (gold,
    best's decisions, other's decisions) on one set of test rows, a decision array per seed:
    a model's metric is the mean over its seeds, computed on all rows and on `resamples`
    draws of the rows with replacement, the same draws for both models so the pairing
    holds. With several pairings (seeds that each hold out their own rows) the difference
    is the mean over them, each resampled on its own."""
    observed, differences = 0.0, np.zeros(resamples)
    for k, (gold, best, other) in enumerate(pairings):
        difference, drawn = _paired_differences(statistic, gold, best, other, resamples, seed + k)
        observed += difference / len(pairings)
        differences += drawn / len(pairings)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return float(observed), float(low), float(high)


def _paired_differences(statistic: Additive | Callable, gold: np.ndarray, best: list[np.ndarray],
                        other: list[np.ndarray], resamples: int, seed: int) -> tuple[float, np.ndarray]:
    """The difference of the seed means on all rows, and on each of `resamples` draws."""
    rows = len(gold)
    if isinstance(statistic, Additive):
        counted = {id(decided): statistic.counts(gold, decided) for decided in best + other}

        def seed_mean(runs: list[np.ndarray], times_drawn) -> np.ndarray:
            return np.mean([statistic.value(times_drawn @ counted[id(decided)], rows) for decided in runs], axis=0)

        def of_draws(draws: np.ndarray):
            return _times_drawn(draws, rows)  # built once per chunk, shared by every run
    else:
        def seed_mean(runs: list[np.ndarray], draws: np.ndarray) -> np.ndarray:
            return np.mean([statistic(gold[draws], decided[draws]) for decided in runs], axis=0)

        def of_draws(draws: np.ndarray):
            return draws

    everything = of_draws(np.arange(rows)[None, :])
    observed = float(seed_mean(best, everything)[0] - seed_mean(other, everything)[0])
    draws = np.random.default_rng(seed).integers(0, rows, size=(resamples, rows))
    differences = []
    for chunk in np.array_split(draws, -(-resamples * rows // _CELLS_AT_ONCE)):
        chunk = of_draws(chunk)
        differences.append(seed_mean(best, chunk) - seed_mean(other, chunk))
    return observed, np.concatenate(differences)


def _times_drawn(draws: np.ndarray, rows: int) -> np.ndarray:
    """(draws, rows): how often each draw picks each row."""
    flat = (np.arange(len(draws))[:, None] * rows + draws).ravel()
    return np.bincount(flat, minlength=len(draws) * rows).reshape(len(draws), rows).astype(np.float64)



def majority_correct(gold: np.ndarray, runs: list[np.ndarray]) -> np.ndarray:
    """Per row: right in more than half of a model's seeds (one seed: right in it)."""
    right = np.mean([_row_right(gold, decided) for decided in runs], axis=0)
    return right > 0.5


def _row_right(gold: np.ndarray, decided: np.ndarray) -> np.ndarray:
    same = gold == decided
    return same.all(axis=-1) if same.ndim == 2 else same


def mcnemar_counts(best_right: np.ndarray, other_right: np.ndarray) -> tuple[int, int]:
    """(rows only the first gets right, rows only the second gets right)."""
    return int(np.sum(best_right & ~other_right)), int(np.sum(~best_right & other_right))


def mcnemar_exact(only_best: int, only_other: int) -> tuple[int, int, float]:
    """(only_best, only_other, two-sided exact p) from the discordant rows: under "equally
    good" each is a fair coin (a binomial test)."""
    from scipy.stats import binomtest

    discordant = only_best + only_other
    p = 1.0 if discordant == 0 else float(binomtest(only_best, discordant, 0.5).pvalue)
    return only_best, only_other, p
