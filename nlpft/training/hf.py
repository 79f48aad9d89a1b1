"""The Hugging Face `Trainer`, with checkpoints that hold no pickles and appear atomically.

Stock `Trainer` checkpoints are partly pickles (`optimizer.pt`, `scheduler.pt`,
`rng_state.pth`, `training_args.bin`) and are written in place, so a kill mid-save leaves
a directory that looks complete and is not. `SafeCheckpointTrainer` changes only the
saving and loading steps (the training loop stays transformers'):

    checkpoint-<step>.partial/          everything is written here first
        model.safetensors, config.json, tokenizer files   (save_pretrained)
        optimizer.safetensors + optimizer.json            (tensors / hyper-parameters)
        scheduler.json                                    (LR scheduler state)
        rng-<rank>.safetensors + rng-<rank>.json          (torch / numpy / python RNG per process)
        trainer_state.json, training_args.json
        complete.json                                     (written last)
    -> renamed to checkpoint-<step>/ by rank 0

Resume takes the newest directory that has `complete.json`; leftover `.partial`
directories are removed. A checkpoint missing its optimizer, scheduler or RNG state is an
error rather than a silent divergence. With the RNG restored at the same step and the
Trainer's seeded sampler skipping the batches already seen, a resumed run continues
exactly as an uninterrupted one.

Divergence: the loss of every training step is checked (the Trainer already reads it
back from the device to filter NaN out of its logs, so the check adds no wait), the weights
before each checkpoint and at the end of training; NaN or infinity raises
`TrainingDiverged` (exit 2) and no checkpoint holds weights that are not finite.

`StopOnSignal` turns Ctrl-C / SIGTERM into "save a checkpoint at the end of this step,
then stop", so an interrupted run resumes from where it was stopped. `ReportScalars` writes
the training curves of `--report-to tensorboard` (see `nlpft.training.reporting`).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import PreTrainedModel, Trainer, TrainerCallback

from nlpft.errors import UserInputError
from nlpft.training.checkpoints import COMPLETE, CheckpointDirs, optimizer_from_flat, optimizer_to_flat
from nlpft.training.divergence import check_loss, check_weights
from nlpft.training.weights import model_tensors, save_file

PREFIX = "checkpoint-"
TRAINER_STATE = "trainer_state.json"
CHECKPOINTS = CheckpointDirs(PREFIX)
# the runners find a run's checkpoints through these
checkpoint_step = CHECKPOINTS.step
complete_checkpoints = CHECKPOINTS.complete
latest_checkpoint = CHECKPOINTS.latest


def _missing(checkpoint: Path, name: str) -> UserInputError:
    return UserInputError(
        f"{checkpoint / name}: missing; the checkpoint cannot be resumed exactly without it "
        "(drop --resume to start over)")


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise UserInputError(f"{path}: unreadable checkpoint file ({exc}); drop --resume to start over") from None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{path}: unreadable checkpoint file ({exc}); drop --resume to start over") from None


def accelerator_available() -> bool:
    """A CUDA device this process may use (`CUDA_VISIBLE_DEVICES=""` hides them)."""
    return torch.cuda.is_available() and os.environ.get("CUDA_VISIBLE_DEVICES", "x") != ""


def training_arguments(output_dir: str | os.PathLike, *, seed: int, precision: str, **settings):
    """`TrainingArguments` with what every nlpft training command shares; `settings` add the
    command's own (batch sizes, schedule, evaluation) and may override these."""
    from transformers import TrainingArguments

    shared = {
        "output_dir": str(output_dir),
        "save_strategy": "steps",
        "save_total_limit": 1,        # older checkpoints are removed once a newer one is complete
        "logging_strategy": "steps",
        "report_to": "none",          # nothing leaves the machine unless asked
        "seed": seed,
        "data_seed": seed,
        "bf16": precision == "bf16",
        "use_cpu": not accelerator_available(),
        "dataloader_num_workers": 0,  # batches are cheap to build; workers only add start-up time
        "disable_tqdm": True,         # `ProgressBar` instead (see `use_progress_bar`)
    }
    return TrainingArguments(**{**shared, **settings})


def use_progress_bar(trainer: Trainer, bar: TrainerCallback | None) -> None:
    """Replace the Trainer's nested tqdm bars and printed dicts by one `ProgressBar` (or by
    nothing, for `--quiet`)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    if bar is not None:
        trainer.add_callback(bar)


class SafeCheckpointTrainer(Trainer):
    """`transformers.Trainer` whose checkpoints are safetensors + JSON, published atomically.

    `eval_data_collator`: batches evaluation data differently from training data.
    `train_batch_transform`: applied to each training batch inside the step, right before
    the forward pass (e.g. random MLM masking): randomness drawn there follows the RNG
    state that checkpoints restore, unlike randomness in a prefetching collator."""

    def __init__(self, *args, eval_data_collator=None, train_batch_transform=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_data_collator = eval_data_collator
        self.train_batch_transform = train_batch_transform

    def compute_loss(self, model, inputs, *args, **kwargs):
        if self.train_batch_transform is not None and model.training:
            inputs = self.train_batch_transform(inputs)
        return super().compute_loss(model, inputs, *args, **kwargs)

    def training_step(self, model, inputs, *args, **kwargs):
        loss = super().training_step(model, inputs, *args, **kwargs)
        check_loss(float(loss), f"step {self.state.global_step + 1}")
        return loss

    def train(self, *args, **kwargs):
        result = super().train(*args, **kwargs)
        # the last step's update is checked by no later loss
        check_weights(model_tensors(self.model), f"step {self.state.global_step}")
        return result

    def evaluate(self, *args, **kwargs):
        if self.eval_data_collator is None:
            return super().evaluate(*args, **kwargs)
        train_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self.data_collator = train_collator

    # -- saving ------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial) -> None:
        run_dir = Path(self._get_output_dir(trial=trial))
        step = self.state.global_step
        check_weights(model_tensors(model), f"step {step}")  # the last good checkpoint stays
        final = run_dir / f"{PREFIX}{step}"
        partial = run_dir / f"{PREFIX}{step}.partial"
        if self.args.should_save:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
        self.accelerator.wait_for_everyone()

        self.store_flos()
        self.save_model(str(partial), _internal_call=True)
        self._save_optimizer_and_scheduler(str(partial))
        self._save_rng_state(str(partial))
        if self.args.should_save:
            self.state.save_to_json(str(partial / TRAINER_STATE))
        self.accelerator.wait_for_everyone()

        if self.args.should_save:
            (partial / COMPLETE).write_text(json.dumps({"step": step}) + "\n")
            if final.exists():
                shutil.rmtree(final)
            os.replace(partial, final)
            keep = max(1, self.args.save_total_limit or 1)
            for old in complete_checkpoints(run_dir)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Model (safetensors), config, tokenizer and the arguments as JSON; no pickle."""
        output_dir = Path(output_dir or self.args.output_dir)
        if not self.args.should_save:
            return
        output_dir.mkdir(parents=True, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        if isinstance(model, PreTrainedModel):
            model.save_pretrained(str(output_dir), state_dict=state_dict)
        elif hasattr(model, "save_pretrained"):  # nlpft's own models: model.safetensors + JSON
            model.save_pretrained(str(output_dir))
        else:
            raise TypeError(f"SafeCheckpointTrainer saves models with save_pretrained, not {type(model).__name__}")
        if self.processing_class is not None:
            self.processing_class.save_pretrained(str(output_dir))
        (output_dir / "training_args.json").write_text(self.args.to_json_string(), encoding="utf-8")

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if not self.args.should_save:
            return  # DDP keeps the optimizer identical on every rank
        output_dir = Path(output_dir)
        tensors, meta = optimizer_to_flat(self.optimizer)
        save_file(tensors, output_dir / "optimizer.safetensors")
        (output_dir / "optimizer.json").write_text(json.dumps(meta), encoding="utf-8")
        if self.lr_scheduler is not None:
            (output_dir / "scheduler.json").write_text(json.dumps(self.lr_scheduler.state_dict()), encoding="utf-8")

    def _save_scaler(self, output_dir: str) -> None:
        return  # no gradient scaler on CPU; bf16 autocast needs none

    def _save_rng_state(self, output_dir: str) -> None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        rank = self.args.process_index
        np_state = np.random.get_state()
        tensors = {"torch": torch.random.get_rng_state(),
                   "numpy": torch.from_numpy(np_state[1].astype(np.int64))}
        if torch.cuda.is_available():
            tensors["cuda"] = torch.cuda.random.get_rng_state()
        version, internal, gauss = random.getstate()
        meta = {"python": [version, list(internal), gauss],
                "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])]}
        save_file(tensors, output_dir / f"rng-{rank}.safetensors")
        (output_dir / f"rng-{rank}.json").write_text(json.dumps(meta), encoding="utf-8")

    # -- loading -----------------------------------------------------------------------
    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Model weights on resume. nlpft's own classes whose files are not one state dict
        (an encoder directory plus a separate head) load themselves, strictly."""
        target = model if model is not None else self.model
        if hasattr(target, "load_checkpoint_weights"):
            target.load_checkpoint_weights(resume_from_checkpoint)
            return
        super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is None:
            return
        checkpoint = Path(checkpoint)
        for name in ("optimizer.safetensors", "optimizer.json", "scheduler.json"):
            if not (checkpoint / name).is_file():
                raise _missing(checkpoint, name)
        tensors = _load_safetensors(checkpoint / "optimizer.safetensors")
        optimizer_from_flat(self.optimizer, tensors, _read_json(checkpoint / "optimizer.json"))
        self.lr_scheduler.load_state_dict(_read_json(checkpoint / "scheduler.json"))

    def _load_scaler(self, checkpoint: str | None) -> None:
        return

    def _load_rng_state(self, checkpoint: str | None) -> None:
        if checkpoint is None:
            return
        checkpoint = Path(checkpoint)
        rank = self.args.process_index
        for name in (f"rng-{rank}.safetensors", f"rng-{rank}.json"):
            if not (checkpoint / name).is_file():
                raise _missing(checkpoint, name)
        tensors = _load_safetensors(checkpoint / f"rng-{rank}.safetensors")
        meta = _read_json(checkpoint / f"rng-{rank}.json")
        version, internal, gauss = meta["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, pos, has_gauss, cached = meta["numpy"]
        np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.random.set_rng_state(tensors["torch"])
        if "cuda" in tensors and torch.cuda.is_available():
            torch.cuda.random.set_rng_state(tensors["cuda"])


class StopOnSignal(TrainerCallback):
    """Ctrl-C or SIGTERM: finish the current step, save a checkpoint, stop.
    `signal_name` tells the caller which signal it was (None: not stopped)."""

    def __init__(self):
        self.signal_name: str | None = None
        self._previous: dict = {}

    def _handler(self, signum, frame) -> None:
        if self.signal_name is not None:  # second signal: give up at once
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def on_train_begin(self, args, state, control, **kwargs):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: leave signals alone
                pass

    def on_step_end(self, args, state, control, **kwargs):
        if self.signal_name is not None:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()


#: evaluation timings the Trainer adds to the metrics: how long, not how good
EVAL_TIMINGS = frozenset({"eval_runtime", "eval_samples_per_second", "eval_steps_per_second",
                          "eval_model_preparation_time"})


def validation_metrics(metrics: dict | None) -> dict[str, float]:
    """{name without `eval_`: value} of the numeric validation metrics in `metrics`."""
    return {name[len("eval_"):]: float(value) for name, value in (metrics or {}).items()
            if name.startswith("eval_") and name not in EVAL_TIMINGS
            and isinstance(value, (int, float)) and not isinstance(value, bool)}


class ProgressBar(TrainerCallback):
    """One progress bar for the optimizer steps (loss, learning rate, tokens/s), and one line
    per evaluation, in place of the Trainer's nested bars and printed log dicts.

    `tokens_per_step` (all processes) turns step rate into tokens/s; `eval_name` labels
    evaluation lines (e.g. "valid MLM loss"); `perplexity` adds exp(loss) to them, which means
    something for language models only. Other metrics the evaluation returns (a classifier's
    accuracy and macro F1) follow the loss."""

    def __init__(self, tokens_per_step: int | None = None, eval_name: str = "valid loss", perplexity: bool = True):
        self.tokens_per_step = tokens_per_step
        self.eval_name = eval_name
        self.perplexity = perplexity
        self.bar = None
        self._start_step = 0
        self._started = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        import time

        from tqdm.auto import tqdm

        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, unit="step",
                            dynamic_ncols=True, desc="train")
        self._start_step = state.global_step
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is None:
            return
        self.bar.update(state.global_step - self.bar.n)
        postfix = self._postfix(state)
        if self.tokens_per_step:
            import time

            elapsed = time.perf_counter() - self._started
            steps = state.global_step - self._start_step
            if elapsed > 0 and steps:
                postfix += f" {steps * self.tokens_per_step / elapsed:,.0f} tok/s"
        if postfix:
            self.bar.set_postfix_str(postfix.strip(), refresh=False)

    def _postfix(self, state) -> str:
        for record in reversed(state.log_history):
            if "loss" in record:
                return f"loss {float(record['loss']):.3f}"
        return ""

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.bar is None or not metrics or "eval_loss" not in metrics:
            return
        import math

        loss = float(metrics["eval_loss"])
        line = f"step {state.global_step}: {self.eval_name} {loss:.3f}"
        if self.perplexity:
            line += f" (perplexity {math.exp(min(loss, 50.0)):.2f})"
        line += "".join(f", {name.replace('_', ' ')} {value:.4f}"
                        for name, value in validation_metrics(metrics).items() if name != "loss")
        self.bar.write(line)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class ReportScalars(TrainerCallback):
    """`--report-to`: the training curves of `nlpft.training.reporting.ScalarReport`, from
    rank 0, while the Trainer trains. At each of the Trainer's logging steps: the mean loss
    since the previous one, the learning rate, and the throughput over the time spent inside
    those steps (`units_per_step`, all processes: tokens or examples per optimizer step); at
    each evaluation its metrics (`perplexity`: also exp(loss), for language models).
    Evaluations outside training (a runner's before/after scores) are not curve points."""

    def __init__(self, work: Path, units_per_step: int, perplexity: bool = False):
        self.work = Path(work)
        self.units_per_step = units_per_step
        self.perplexity = perplexity
        self.report = None
        self._steps = 0
        self._step_seconds = 0.0
        self._step_started = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        from nlpft.training.reporting import ScalarReport

        if state.is_world_process_zero:
            self.report = ScalarReport(self.work, first_step=state.global_step + 1)

    def on_step_begin(self, args, state, control, **kwargs):
        import time

        self._step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        import time

        self._step_seconds += time.perf_counter() - self._step_started
        self._steps += 1

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.report is None or not logs or "loss" not in logs:
            return  # evaluation metrics arrive through on_evaluate; the run's summary has no "loss"
        throughput = self._steps * self.units_per_step / self._step_seconds if self._step_seconds > 0 else None
        self.report.train(state.global_step, float(logs["loss"]), logs.get("learning_rate"), throughput)
        self._steps, self._step_seconds = 0, 0.0

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.report is None:
            return
        values = validation_metrics(metrics)
        if self.perplexity and "loss" in values:
            import math

            values["perplexity"] = math.exp(min(values["loss"], 50.0))
        self.report.evaluation(state.global_step, values)

    def on_train_end(self, args, state, control, **kwargs):
        if self.report is not None:
            self.report.close()
            self.report = None


@contextlib.contextmanager
def transformers_quiet():
    """No "Writing model shards" bars, load reports or info lines from transformers while
    nlpft's own progress output runs."""
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar_was_on:
            hf_logging.enable_progress_bar()
