"""Training loop for the RNN LM: truncated BPTT with the hidden state carried across batches.

Why its own loop: shuffled-batch trainers (the Hugging Face Trainer included) assume
independent examples, while an RNN LM reads each batch row as one long stream and carries
its hidden state from one window to the next. The loop is short; what varies lives in
hooks (`compute_loss`) and callbacks (`on_step`, `on_evaluate`), not in copies of it.

Reliability:
- a checkpoint every `checkpoint_every` steps and at each epoch end, pickle-free (see
  `checkpoint.py`), holding weights, optimizer, carried hidden state, RNG state and the
  position in the data, so a run killed at any step resumes from the last complete one
  and, on one thread with the same seed, ends with exactly the weights of an
  uninterrupted run;
- SIGINT/SIGTERM finish the current step, write a checkpoint and stop cleanly;
- a training or validation loss that is NaN, infinite or beyond `DIVERGED_FACTOR` times
  that of uniform guessing stops the run with `TrainingDiverged` (exit 2), and no
  checkpoint is ever written from weights that are not finite;
- with several processes (`torchrun`), DDP averages gradients; every rank saves its own
  RNG and hidden state, rank 0 the rest.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from nlpft.errors import Interrupted, UserInputError, check_seed
from nlpft.lm import checkpoint as ckpt
from nlpft.lm.data import bptt_windows
from nlpft.training.checkpoints import optimizer_from_flat, optimizer_to_flat
from nlpft.training.divergence import check_loss, check_weights
from nlpft.training.weights import model_tensors
from nlpft.training.weights import save_model as save_model_file

#: a loss this many times ln(vocabulary size), the loss of guessing uniformly, means the run
#: diverged: gradient clipping keeps the weights finite while the loss runs off to 1e16
DIVERGED_FACTOR = 10.0


@dataclass
class LMTrainConfig:
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 20
    bptt: int = 35
    optimizer: str = "adamw"  # "adamw" | "sgd"
    lr: float | None = None  # default: 2e-3 for AdamW, 20 for SGD (the word_language_model recipe)
    weight_decay: float = 0.0
    clip: float = 0.25
    lr_decay: float = 0.25  # multiply the learning rate by this when validation stops improving
    patience: int = 2  # stop after this many evaluations in a row without improvement
    checkpoint_every: int = 500  # steps (and always at the end of an epoch)
    precision: str = "fp32"  # "fp32" | "bf16" (autocast; the loss is always computed in fp32)
    eval_batch_size: int = 10
    seed: int = 1

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 2e-3 if self.optimizer == "adamw" else 20.0

    def validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise UserInputError(msg)

        need(self.epochs >= 1, "--epochs must be at least 1")
        need(self.max_steps is None or self.max_steps >= 1, "--max-steps must be at least 1")
        need(self.batch_size >= 1 and self.eval_batch_size >= 1, "--batch-size must be at least 1")
        need(self.bptt >= 2, "--bptt must be at least 2")
        need(self.optimizer in ("adamw", "sgd"), "--optimizer must be adamw or sgd")
        need(self.resolved_lr() > 0, "--lr must be positive")
        need(self.clip >= 0, "--clip must be 0 (off) or positive")
        need(0 < self.lr_decay <= 1, "--lr-decay must be in (0, 1]")
        need(self.patience >= 0, "--patience must be 0 or more")
        need(self.checkpoint_every >= 1, "--checkpoint-every must be at least 1")
        need(self.precision in ("fp32", "bf16"), "--precision must be fp32 or bf16")
        check_seed(self.seed)


@dataclass
class TrainState:
    """Everything about progress that is not a tensor (saved as JSON)."""

    epoch: int = 0
    position: int = 0  # column of the next BPTT window within the epoch
    step: int = 0
    best_valid_loss: float = math.inf
    bad_evaluations: int = 0
    lr: float = 0.0
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)


#: `LMReportScalars` writes a point of the training curves every this many steps
REPORT_EVERY = 50


class LMReportScalars:
    """`--report-to` for `LMTrainer`: its `on_step` and `on_evaluate` callbacks, on rank 0.

    A point of the training curves (`nlpft.training.reporting.ScalarReport`) at every
    `REPORT_EVERY`-th step and at each evaluation: the mean loss of the steps since the
    previous point, the learning rate, and tokens/s over the time inside those steps (all
    `processes`); then the evaluation's loss and perplexity. The report opens at the first
    step this process trains, so a resumed run continues after its checkpoint."""

    def __init__(self, work: Path, processes: int = 1):
        self.work = Path(work)
        self.processes = processes
        self.report = None
        self._loss_sum, self._steps, self._tokens, self._seconds = 0.0, 0, 0, 0.0

    def on_step(self, state: TrainState, loss: float, tokens: int, seconds: float) -> None:
        self._open(first_step=state.step)
        self._loss_sum += loss
        self._steps += 1
        self._tokens += tokens
        self._seconds += seconds
        if state.step % REPORT_EVERY == 0:
            self._write_point(state.step, state.lr)

    def on_evaluate(self, state: TrainState, record: dict) -> None:
        self._open(first_step=state.step + 1)  # resumed at the end of the data: no step before it
        if self._steps:  # at the rate those steps ran with (a plateau may have cut state.lr since)
            self._write_point(state.step, record["lr"])
        self.report.evaluation(state.step, {"loss": record["valid_loss"], "perplexity": record["valid_ppl"]})

    def close(self) -> None:
        if self.report is not None:
            self.report.close()
            self.report = None

    def _open(self, first_step: int) -> None:
        from nlpft.training.reporting import ScalarReport

        if self.report is None:
            self.report = ScalarReport(self.work, first_step=first_step)

    def _write_point(self, step: int, lr: float) -> None:
        throughput = self._tokens * self.processes / self._seconds if self._seconds > 0 else None
        self.report.train(step, self._loss_sum / self._steps, lr, throughput)
        self._loss_sum, self._steps, self._tokens, self._seconds = 0.0, 0, 0, 0.0


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # logits (B, T, V) -> (B*T, V); targets (B, T) -> (B*T,)
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))


@torch.no_grad()
def evaluate_loss(model, data: torch.Tensor, bptt: int, precision: str = "fp32",
                  progress: Callable[[int], None] | None = None) -> tuple[float, int]:
    """Mean cross-entropy (nats per token) over `data` (B, N), hidden carried across windows."""
    was_training = model.training
    model.eval()
    hidden = model.init_hidden(data.size(0))
    total, tokens = 0.0, 0
    try:
        for _, inputs, targets in bptt_windows(data, bptt):
            with _autocast(precision):
                logits, hidden = model(inputs, hidden)
            total += float(cross_entropy(logits, targets)) * targets.numel()
            tokens += targets.numel()
            if progress:
                progress(targets.numel())
    finally:
        model.train(was_training)
    return (total / tokens if tokens else math.nan), tokens


def _autocast(precision: str):
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class LMTrainer:
    """Owns the loop. Subclass and override `compute_loss` to change what a step computes;
    pass callbacks to act on progress: `on_step(state, loss, tokens, seconds)` after each
    step (this process's tokens and time inside the step), `on_evaluate(state, record)` after
    each validation (`record` as appended to `state.history`)."""

    def __init__(self, model, config: LMTrainConfig, train_data: torch.Tensor, valid_data: torch.Tensor,
                 checkpoint_root: Path | None = None, best_path: Path | None = None,
                 rank: int = 0, world_size: int = 1,
                 on_step: Callable[[TrainState, float, int, float], None] | None = None,
                 on_evaluate: Callable[[TrainState, dict], None] | None = None):
        config.validate()
        self.config = config
        self.model = model  # may be DDP-wrapped
        self.core = model.module if hasattr(model, "module") else model
        self.train_data = train_data
        self.valid_data = valid_data
        self.checkpoint_root = checkpoint_root
        self.best_path = best_path
        self.rank, self.world_size = rank, world_size
        self.on_step, self.on_evaluate = on_step, on_evaluate
        self.state = TrainState(lr=config.resolved_lr())
        params = [p for p in self.model.parameters() if p.requires_grad]
        if config.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=self.state.lr, weight_decay=config.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=self.state.lr, weight_decay=config.weight_decay)
        self.hidden = None
        self.resumed_from_step = 0
        self.step_seconds = 0.0
        self.step_tokens = 0
        self._stop_signal: int | None = None
        vocab_size = getattr(getattr(self.core, "config", None), "vocab_size", None)
        self.loss_limit = DIVERGED_FACTOR * math.log(vocab_size) if vocab_size and vocab_size > 1 else math.inf
        if train_data.size(1) < config.bptt + 1:
            raise UserInputError(
                f"the training text ({train_data.numel():,} tokens in {train_data.size(0)} rows) is shorter than "
                f"one BPTT window ({config.bptt} + 1 tokens) per batch row; use a longer corpus or lower "
                "--batch-size / --bptt")

    # -- hooks ------------------------------------------------------------------------
    def compute_loss(self, inputs: torch.Tensor, targets: torch.Tensor, hidden):
        """One forward pass: returns (loss, new hidden). Override to change the objective."""
        with _autocast(self.config.precision):
            logits, hidden = self.model(inputs, hidden)
        return cross_entropy(logits, targets), hidden

    # -- loop -------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainState:
        if resume and self.checkpoint_root is not None:
            self._load_latest()
        previous = self._install_signal_handlers()
        try:
            self._run()
        finally:
            self._restore_signal_handlers(previous)
        if self.best_path is not None and self.best_path.is_file():
            self.core.load_state_dict(_load_model_tensors(self.best_path, self.core), strict=True)
        check_weights(model_tensors(self.core), f"step {self.state.step}")
        return self.state

    def _run(self) -> None:
        cfg, state = self.config, self.state
        self.model.train()
        while state.epoch < cfg.epochs and not state.stopped_early:
            if state.position == 0 or self.hidden is None:
                self.hidden = self.core.init_hidden(self.train_data.size(0))
            for position, inputs, targets in bptt_windows(self.train_data, cfg.bptt, start=state.position):
                step_started = time.perf_counter()
                self.hidden = self.core.detach_hidden(self.hidden)
                loss, self.hidden = self.compute_loss(inputs, targets, self.hidden)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip)
                self.optimizer.step()
                # the loss value the progress callback gets anyway: checking it costs no extra pass
                loss_value = float(loss.detach())
                check_loss(loss_value, f"step {state.step + 1}", self.loss_limit)
                # time inside steps only (no evaluation or checkpoint writing): tokens/s
                # comparable with a bare training loop
                seconds = time.perf_counter() - step_started
                self.step_seconds += seconds
                self.step_tokens += targets.numel()
                state.step += 1
                state.position = position + inputs.size(1)
                if self.on_step:
                    self.on_step(state, loss_value, targets.numel(), seconds)
                if self._stop_signal is not None:
                    self.save_checkpoint()
                    raise Interrupted(signal.Signals(self._stop_signal).name)
                if cfg.max_steps is not None and state.step >= cfg.max_steps:
                    self._end_of_epoch(finished=False)
                    return
                if state.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
            self._end_of_epoch(finished=True)

    def _end_of_epoch(self, finished: bool) -> None:
        """Validate, keep the best weights, decay the learning rate on a plateau, stop early,
        checkpoint. Also runs once when --max-steps ends training mid-epoch."""
        cfg, state = self.config, self.state
        valid_loss, _ = evaluate_loss(self.core, self.valid_data, cfg.bptt, cfg.precision)
        check_loss(valid_loss, f"step {state.step} (validation)", self.loss_limit)
        record = {"epoch": state.epoch + 1, "step": state.step, "valid_loss": valid_loss,
                  "valid_ppl": math.exp(min(valid_loss, 50)), "lr": state.lr, "complete_epoch": finished}
        state.history.append(record)
        if valid_loss < state.best_valid_loss:
            state.best_valid_loss = valid_loss
            state.bad_evaluations = 0
            if self.best_path is not None and self.rank == 0:
                _save_model_tensors(self.core, self.best_path)
        else:
            state.bad_evaluations += 1
            state.lr *= cfg.lr_decay
            for group in self.optimizer.param_groups:
                group["lr"] = state.lr
            if state.bad_evaluations > cfg.patience:
                state.stopped_early = True
        if self.on_evaluate:
            self.on_evaluate(state, record)
        if finished:
            state.epoch += 1
            state.position = 0
        if finished or cfg.max_steps is None:
            self.save_checkpoint()

    # -- checkpoints ------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        if self.checkpoint_root is None:
            return
        root = self.checkpoint_root
        check_weights(model_tensors(self.core), f"step {self.state.step}")  # the last good checkpoint stays
        path = root / f"step-{self.state.step:08d}"
        if self.rank == 0:
            path = ckpt.begin(root, self.state.step)
            _save_model_tensors(self.core, path / "model.safetensors")
            tensors, meta = optimizer_to_flat(self.optimizer)
            ckpt.save_tensors(path / "optimizer.safetensors", tensors)
            (path / "state.json").write_text(json.dumps(
                {"state": asdict(self.state), "optimizer": meta, "world_size": self.world_size,
                 "config": asdict(self.config)}))
        self._barrier()
        per_rank = {"rng": torch.get_rng_state()}
        if self.hidden is not None:
            per_rank.update(_flatten_hidden(self.core.detach_hidden(self.hidden)))
        ckpt.save_tensors(path / f"rank{self.rank}.safetensors", per_rank)
        self._barrier()
        if self.rank == 0:
            ckpt.finish(root, path)
        self._barrier()

    def _load_latest(self) -> None:
        path = ckpt.CHECKPOINTS.latest(self.checkpoint_root)
        if path is None:
            return
        saved = json.loads((path / "state.json").read_text())
        if saved.get("world_size", 1) != self.world_size:
            raise UserInputError(
                f"{path}: written by {saved.get('world_size')} processes, resumed with {self.world_size}; "
                "resume with the same number of processes")
        for key in ("batch_size", "bptt", "optimizer", "precision", "seed"):
            if saved["config"].get(key) != getattr(self.config, key):
                raise UserInputError(
                    f"{path}: the checkpoint used --{key.replace('_', '-')} {saved['config'].get(key)}, "
                    f"this run {getattr(self.config, key)}; rerun with the same setting or drop --resume")
        self.core.load_state_dict(_load_model_tensors(path / "model.safetensors", self.core), strict=True)
        optimizer_from_flat(self.optimizer, ckpt.load_tensors(path / "optimizer.safetensors"), saved["optimizer"])
        self.state = TrainState(**{**saved["state"], "best_valid_loss": float(saved["state"]["best_valid_loss"])})
        self.resumed_from_step = self.state.step
        if self.rank == 0:
            print(f"resuming from {path.name}: epoch {self.state.epoch + 1}, step {self.state.step}",
                  file=sys.stderr)
        per_rank = ckpt.load_tensors(path / f"rank{self.rank}.safetensors")
        torch.set_rng_state(per_rank.pop("rng"))
        self.hidden = _unflatten_hidden(per_rank) if per_rank else None

    # -- signals / processes ----------------------------------------------------------
    def _install_signal_handlers(self):
        import threading

        if threading.current_thread() is not threading.main_thread():
            return None

        def request_stop(signum, frame):
            if self._stop_signal is not None:  # second Ctrl-C: stop now
                raise KeyboardInterrupt
            self._stop_signal = signum

        return {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def _restore_signal_handlers(previous) -> None:
        for sig, handler in (previous or {}).items():
            signal.signal(sig, handler)

    def _barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()


def _save_model_tensors(model, path: Path) -> None:
    """The model's state dict with shared (tied) tensors stored once."""
    tmp = path.with_name(path.name + ".tmp")
    save_model_file(model, tmp)
    tmp.replace(path)


def _load_model_tensors(path: Path, model) -> dict:
    """A full state dict for `model` from a file written by `_save_model_tensors`."""
    tensors = ckpt.load_tensors(path)
    state = model.state_dict()
    # tied weights were stored under one of their names: fill in the others
    for name, tensor in state.items():
        if name not in tensors:
            twin = next((n for n, t in state.items() if t.data_ptr() == tensor.data_ptr() and n in tensors), None)
            if twin is None:
                raise UserInputError(f"{path}: no weights for {name}; the file does not match this model")
            tensors[name] = tensors[twin]
    return tensors


def _flatten_hidden(hidden) -> dict[str, torch.Tensor]:
    flat = {}
    for layer, h in enumerate(hidden):
        parts = h if isinstance(h, (tuple, list)) else (h,)
        for k, t in enumerate(parts):
            flat[f"hidden.{layer}.{k}"] = t
    return flat


def _unflatten_hidden(flat: dict[str, torch.Tensor]):
    layers: dict[int, dict[int, torch.Tensor]] = {}
    for key, tensor in flat.items():
        _, layer, k = key.split(".")
        layers.setdefault(int(layer), {})[int(k)] = tensor
    hidden = []
    for layer in sorted(layers):
        parts = [layers[layer][k] for k in sorted(layers[layer])]
        hidden.append(tuple(parts) if len(parts) > 1 else parts[0])
    return hidden

