"""The fine-tuning trainer: `SafeCheckpointTrainer` plus the two things classification needs.

- `compute_loss` applies the task's loss (`Task.loss`) to the model's outputs, so class
  weights, multi-label BCE and regression work the same for every backbone; a task whose
  model computes its own loss (`labels_into_model`, e.g. a CRF) gets the labels passed in;
- the training order is length-grouped (similar lengths share a batch: little padding) and
  drawn from a generator seeded by (seed, epoch), so a resumed run replays the same order.

`KeepBest` (a callback: it decides *when*) saves the weights whenever the validation
metric improves and stops training after `patience` evaluations without improvement; the
runner loads the best weights back at the end.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer_pt_utils import get_length_grouped_indices

from nlpft.training.hf import SafeCheckpointTrainer


class EpochSeededLengthGroupedSampler(torch.utils.data.Sampler):
    """transformers' length grouping (megabatches of 50 batches sorted by length, longest
    batch first), with the shuffle seeded by (seed, epoch) instead of the global RNG."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class ClassifierTrainer(SafeCheckpointTrainer):
    def __init__(self, *args, task, group_by_length: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.task = task
        self.group_by_length = group_by_length

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs, labels=labels) if self.task.labels_into_model else model(**inputs)
        loss = self.task.loss(outputs, labels)
        return (loss, outputs) if return_outputs else loss

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.group_by_length or not hasattr(dataset, "lengths"):
            return super()._get_train_sampler(train_dataset)
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return EpochSeededLengthGroupedSampler(dataset.lengths(), batch, self.args.data_seed or self.args.seed)


class KeepBest(TrainerCallback):
    """After each evaluation: if the model improved, save it into `best_dir` (atomically: a
    temp directory renamed); after `patience` evaluations without improvement, stop.

    "Improved" means a better `metric`, or an equal one with a lower validation loss: on
    small validation sets accuracy-like metrics plateau while the model still gets better,
    and a plateau alone should not end training. Evaluations before epoch `patience_from_epoch`
    (while gradual unfreezing still holds layers back) never count against the patience.
    The best values are rebuilt from the evaluation log on resume (checkpoints keep the log)."""

    def __init__(self, best_dir: Path, metric: str = "eval_loss", greater_is_better: bool = False,
                 patience: int | None = None, save=None, patience_from_epoch: float = 0.0):
        self.patience_from_epoch = patience_from_epoch
        self.best_dir = Path(best_dir)
        self.metric = metric if metric.startswith("eval_") else f"eval_{metric}"
        self.greater = greater_is_better
        self.patience = patience
        self.save = save  # save(model, directory); default: model.save_pretrained
        self.best: tuple[float, float] | None = None  # (metric, loss)
        self.bad_evaluations = 0

    def _key(self, metrics: dict) -> tuple[float, float] | None:
        if self.metric not in metrics:
            return None
        value = float(metrics[self.metric])
        loss = float(metrics.get("eval_loss", math.inf))
        return (-value if self.greater else value, loss)  # smaller is better, loss breaks ties

    def _counts(self, epoch: float | None) -> bool:
        return epoch is None or epoch >= self.patience_from_epoch - 1e-6

    def _improves(self, key: tuple[float, float]) -> bool:
        return self.best is None or key < self.best

    def on_train_begin(self, args, state, control, **kwargs):
        self.best, self.bad_evaluations = None, 0  # resumed: replay the restored log
        for record in state.log_history:
            key = self._key(record)
            if key is None:
                continue
            if self._improves(key):
                self.best, self.bad_evaluations = key, 0
            elif self._counts(record.get("epoch")):
                self.bad_evaluations += 1

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        metrics = metrics or {}
        key = self._key(metrics)
        if key is None or not (math.isfinite(key[0]) and math.isfinite(float(metrics.get("eval_loss", 0.0)))):
            return  # weights scoring a NaN loss are never the best (the next step stops the run as diverged)
        if self._improves(key):
            self.best, self.bad_evaluations = key, 0
            state.best_metric = float(metrics[self.metric])
            state.best_global_step = state.global_step
            if args.should_save and model is not None:
                self._save(model)
        elif self._counts(state.epoch):
            self.bad_evaluations += 1
            if self.patience is not None and self.bad_evaluations >= self.patience:
                control.should_training_stop = True

    def _save(self, model) -> None:
        tmp = self.best_dir.with_name(self.best_dir.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (self.save or (lambda m, d: m.save_pretrained(str(d))))(model, tmp)
        shutil.rmtree(self.best_dir, ignore_errors=True)
        tmp.rename(self.best_dir)


class ReportValidation(TrainerCallback):
    """After each evaluation, the validation `metric` goes to the run's observer
    (`nlpft.finetune.observers`: a hyperparameter search), which may stop training. Under
    torchrun rank 0's observer decides and every process follows, so all stop together."""

    def __init__(self, metric: str):
        self.metric = metric if metric.startswith("eval_") else f"eval_{metric}"

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        from nlpft.finetune.observers import observed, report_validation

        if not observed():
            return
        evaluation = sum(1 for record in state.log_history if self.metric in record)  # this one included
        stop = report_validation((metrics or {}).get(self.metric), evaluation)
        if _same_on_every_process(stop):
            control.should_training_stop = True


def _same_on_every_process(decision: bool) -> bool:
    """Rank 0's `decision`, on every process of a multi-process run."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return decision
    shared = [decision]
    dist.broadcast_object_list(shared, src=0)
    return bool(shared[0])


class GradualUnfreeze(TrainerCallback):
    """ULMFiT's gradual unfreezing: at the start of epoch e (0-based) the top e+1 layer
    groups train and the rest stay frozen (groups as `WordClassifier.layer_groups`, top
    first). Decided from `state.epoch`, so a resumed run freezes exactly as before.
    Parameters frozen before training (e.g. --freeze-embeddings) stay frozen."""

    def __init__(self, groups: list[list[torch.nn.Parameter]]):
        self.groups = groups
        self.always_frozen = {id(p) for group in groups for p in group if not p.requires_grad}

    def on_epoch_begin(self, args, state, control, **kwargs):
        epoch = int(state.epoch or 0)
        for depth, params in enumerate(self.groups):
            for param in params:
                param.requires_grad = depth <= epoch and id(param) not in self.always_frozen


def discriminative_optimizer(groups: list[list[torch.nn.Parameter]], lr: float, weight_decay: float,
                             factor: float = 2.6) -> torch.optim.Optimizer:
    """AdamW with one parameter group per layer group: the top gets `lr`, each group below
    `factor` times less (ULMFiT's discriminative fine-tuning)."""
    param_groups = [{"params": params, "lr": lr / factor ** depth, "weight_decay": weight_decay}
                    for depth, params in enumerate(groups) if params]
    return torch.optim.AdamW(param_groups, lr=lr)
