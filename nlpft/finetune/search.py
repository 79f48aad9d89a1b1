"""`finetune --search N`: the Optuna side of a hyperparameter search.

A study with a TPE sampler and a median pruner, journaled to a file under the run's
checkpoint directory (no database server; `--resume` reloads it). Trials run one at a time,
their numbers 0..N-1: a trial that a kill left running is finished on resume (same number,
same parameters, its own checkpoint if it wrote one), never replaced by a new one, and the
sampler of trial k is seeded by (--seed, k), so a resumed search samples exactly what an
uninterrupted one with the same seed samples. Each trial reports its validation score after
every evaluation (`observer`); its score is the best of them, which is the score of the
weights keep-best kept. Test data plays no part: the best trial is the complete trial with
the best validation score (the lowest number among equals).

The runner (`nlpft.runners.finetune`) runs each trial as a whole finetune run and publishes
the best one; this module owns the study, the trial table and the report section.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from nlpft.errors import UserInputError
from nlpft.finetune.search_space import Param, describe_space, space_to_json

JOURNAL_FILE = "search.journal"
STUDY_NAME = "nlpft-finetune"
TRIALS_CSV = "trials.csv"
PRUNED_AT = "pruned_at"  # trial attribute: the evaluation after which the pruner stopped it
SECONDS = "seconds"


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise UserInputError("--search needs Optuna, which is not installed: pip install 'nlpft[search]'") from None
    return optuna


@dataclass
class TrialRun:
    """One trial to run: its Optuna handle, number and parameters; `resumed` when a kill
    left it running."""

    trial: object
    number: int
    params: dict
    resumed: bool


class Search:
    def __init__(self, checkpoint_dir: Path, space: dict[str, Param], n_trials: int, seed: int, maximize: bool,
                 metric: str):
        optuna = require_optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        self.optuna = optuna
        self.space, self.n_trials, self.seed, self.metric = space, n_trials, seed, metric
        self.maximize = maximize
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        storage = JournalStorage(JournalFileBackend(str(checkpoint_dir / JOURNAL_FILE)))
        self.study = optuna.create_study(storage=storage, study_name=STUDY_NAME, load_if_exists=True,
                                         direction="maximize" if maximize else "minimize",
                                         pruner=self._pruner())
        self._check_same_search()

    def _pruner(self):
        # a median needs a few finished trials; from then on a trial whose best score so far is
        # below the median of the finished ones at the same evaluation stops
        return self.optuna.pruners.MedianPruner(n_startup_trials=min(5, max(2, self.n_trials // 4)),
                                                n_warmup_steps=0)

    def _sampler(self, number: int):
        # a third of the budget (2 to 10 trials) sampled at random before TPE models the scores;
        # seeded per trial number, so the samples do not depend on where a search was resumed
        startup = max(2, min(10, self.n_trials // 3))
        return self.optuna.samplers.TPESampler(seed=(self.seed * 1_000_003 + number) % 2**32,
                                               n_startup_trials=startup)

    def _check_same_search(self) -> None:
        settings = {"space": space_to_json(self.space), "seed": self.seed, "metric": self.metric}
        saved = self.study.user_attrs.get("settings")
        if saved is None:
            self.study.set_user_attr("settings", settings)
        elif saved != settings:
            raise UserInputError(f"--resume: the search was started with {saved}, not {settings}; rerun without "
                                 "--resume to start over, or with the original search options")

    # -- trials -----------------------------------------------------------------------------
    def finished_numbers(self) -> list[int]:
        return [t.number for t in self.study.get_trials(deepcopy=False) if t.state.is_finished()]

    def next_trial(self) -> TrialRun | None:
        """The trial a kill left running, else a new one, else None once N trials ran."""
        trials = self.study.get_trials(deepcopy=False)
        running = [t for t in trials if t.state == self.optuna.trial.TrialState.RUNNING]
        if running:
            frozen = running[0]
            trial = self.optuna.trial.Trial(self.study, frozen._trial_id)
            return TrialRun(trial, frozen.number, dict(frozen.params), resumed=True)
        if len(trials) >= self.n_trials:
            return None
        self.study.sampler = self._sampler(len(trials))
        trial = self.study.ask(self._distributions())
        return TrialRun(trial, trial.number, dict(trial.params), resumed=False)

    def _distributions(self) -> dict:
        d = self.optuna.distributions
        out = {}
        for name, param in self.space.items():
            if param.is_choice:
                out[name] = d.CategoricalDistribution(list(param.choices))
            elif param.whole:
                out[name] = d.IntDistribution(int(param.low), int(param.high), log=param.log)
            else:
                out[name] = d.FloatDistribution(float(param.low), float(param.high), log=param.log)
        return out

    def observer(self, run: TrialRun):
        """The validation observer of `run` (see `nlpft.finetune.observers`): reports each
        evaluation once (a resumed trial's earlier ones are already in the journal) and asks
        the pruner whether to stop."""
        trial = run.trial
        reported = set(self._frozen(run.number).intermediate_values)

        def observe(value: float | None, evaluation: int, can_stop: bool) -> bool:
            if value is None:
                return False  # a diverged evaluation: keep-best skips it, and so does the search
            if evaluation not in reported:
                trial.report(value, evaluation)
                reported.add(evaluation)
            if can_stop and trial.should_prune():
                trial.set_user_attr(PRUNED_AT, evaluation)
                return True
            return False

        return observe

    def finish(self, run: TrialRun, seconds: float, failed: bool = False) -> str:
        """Record how `run` ended (complete with its best validation score, pruned, or failed);
        returns the state's name."""
        TrialState = self.optuna.trial.TrialState
        frozen = self._frozen(run.number)
        score = self._best(frozen.intermediate_values.values())
        run.trial.set_user_attr(SECONDS, round(seconds, 2))
        if failed or score is None:
            self.study.tell(run.trial, state=TrialState.FAIL)
        elif PRUNED_AT in frozen.user_attrs:
            self.study.tell(run.trial, state=TrialState.PRUNED)
        else:
            self.study.tell(run.trial, score)
        return _state_name(self._frozen(run.number).state)

    def _frozen(self, number: int):
        return next(t for t in self.study.get_trials(deepcopy=False) if t.number == number)

    def _best(self, values) -> float | None:
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if not finite:
            return None
        return max(finite) if self.maximize else min(finite)

    def best_trial(self):
        """The complete trial with the best validation score, the lowest number among equals."""
        complete = [t for t in self.study.get_trials(deepcopy=False)
                    if t.state == self.optuna.trial.TrialState.COMPLETE]
        if not complete:
            return None
        return min(complete, key=lambda t: (-t.value if self.maximize else t.value, t.number))

    # -- what the run writes ----------------------------------------------------------------
    def rows(self) -> list[dict]:
        """One row per trial: number, state, parameters, validation score, evaluations, seconds
        (a pruned trial's score is its best before it stopped)."""
        rows = []
        for t in sorted(self.study.get_trials(deepcopy=False), key=lambda t: t.number):
            score = t.value if t.value is not None else self._best(t.intermediate_values.values())
            rows.append({"number": t.number, "state": _state_name(t.state),
                         **{name: t.params.get(name) for name in self.space},
                         f"valid_{self.metric}": score, "evaluations": len(t.intermediate_values),
                         SECONDS: t.user_attrs.get(SECONDS)})
        return rows

    def write_csv(self, path: Path) -> None:
        rows = self.rows()
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["number"])
            writer.writeheader()
            writer.writerows(rows)

    def summary(self) -> dict:
        """finetune.json's `search`: what was searched and what won."""
        best = self.best_trial()
        counts = {}
        for row in self.rows():
            counts[row["state"]] = counts.get(row["state"], 0) + 1
        return {"trials": self.n_trials, "seed": self.seed, "sampler": "TPE", "pruner": "median",
                "metric": f"valid {self.metric}", "direction": "maximize" if self.maximize else "minimize",
                "space": space_to_json(self.space), "states": counts,
                "best_trial": best.number if best else None, "best_params": dict(best.params) if best else None,
                "best_valid_score": best.value if best else None}

    def report_section(self) -> str:
        """report.md's section: the space, the best trial, how many were pruned, every trial."""
        summary, rows = self.summary(), self.rows()
        counts = ", ".join(f"{n} {state}" for state, n in summary["states"].items())
        method = (f"{self.n_trials} trials (Optuna, TPE sampler, median pruner), chosen on the validation "
                  f"{self.metric} only: {counts}.")
        lines = ["## Hyperparameter search", "", method, "", f"Searched: {describe_space(self.space)}.", ""]
        if summary["best_trial"] is not None:
            params = ", ".join(f"{k} = {_cell(v)}" for k, v in summary["best_params"].items())
            best = (f"Best: trial {summary['best_trial']}, valid {self.metric} {summary['best_valid_score']:.4f} "
                    f"({params}); its model is this directory's model and the test scores above are its own.")
            lines += [best, ""]
        header = list(rows[0]) if rows else []
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_cell(row[k]) for k in header) + " |" for row in rows]
        return "\n".join(lines) + "\n"


def _state_name(state) -> str:
    return {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}.get(
        state.name, state.name.lower())


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
