"""The shared training path of every neural backbone (`Backbone.fit`).

rows -> the task's encoding through the backbone's tokenizer -> the backbone's model with
the task's head -> the fine-tuning trainer (dynamic padding with the task's collator,
length-grouped batches, warmup + decay, keep-best on the task's selection metric, early
stopping, pickle-free checkpoints, resume) -> the best weights back -> the task tuned on
validation -> test scores. Nothing here depends on which task or backbone runs.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from nlpft.errors import Interrupted
from nlpft.training.memory import set_phase

BEST_DIR = "best"
UNKNOWN_WARNING = 0.05  # word-level backbones: say so when this share of the training words is [UNK]


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def train_neural(backbone, opts, task, splits, work: Path, output) -> dict:
    import torch

    from nlpft.training.dropout import use_fast_dropout

    prepared = backbone.prepare(opts)
    set_phase("encoding the texts")
    plan = task.plan_encoding(prepared, splits.train)
    if plan and not opts.quiet:
        print(f"  {plan}", file=sys.stderr)
    encoded, datasets = {}, {}
    for name in ("train", "valid", "test"):
        datasets[name], encoded[name] = task.encode(prepared, getattr(splits, name), training=name == "train")
    _warn_about_encoding(opts, backbone, prepared, encoded["train"])
    windows = windows_read(opts, encoded)
    task.fit_targets(splits.train, opts.class_weights)

    torch.manual_seed(opts.seed)
    model = prepared.build_model(task)
    use_fast_dropout(model)  # the same dropout with cheaper random masks (nlpft.training.dropout)
    trainer = _trainer(opts, backbone, prepared, model, datasets, task, work, output)
    from nlpft.training.hf import (
        StopOnSignal,
        checkpoint_step,
        complete_checkpoints,
        latest_checkpoint,
    )

    resume_from = None
    if opts.resume:
        # rank 0 clears half-written checkpoints; the others only look
        resume_from = (latest_checkpoint(output.checkpoint_dir) if rank() == 0
                       else (complete_checkpoints(output.checkpoint_dir) or [None])[-1])
    if resume_from is not None and not opts.quiet:
        print(f"resuming from {resume_from.name}", file=sys.stderr)
    set_phase("training")
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_s = time.perf_counter() - started
    stopper = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, StopOnSignal))
    if stopper.signal_name is not None:
        raise Interrupted(stopper.signal_name)

    trainer.accelerator.wait_for_everyone()  # rank 0 may still be writing the best weights
    _load_best(model, work / BEST_DIR)
    task.tune(task.scores(_logits(trainer, task, datasets["valid"])), splits.valid)
    test_scores = task.scores(_logits(trainer, task, datasets["test"]))
    if hasattr(model, "config") and hasattr(model.config, "use_cache"):
        model.config.use_cache = True
    trainer.save_model(str(work))
    trainer.accelerator.wait_for_everyone()
    if rank() == 0:
        backbone.save(work, prepared)
        (work / "training_args.json").unlink(missing_ok=True)
        shutil.rmtree(work / BEST_DIR, ignore_errors=True)
    steps_this_run = trainer.state.global_step - (checkpoint_step(resume_from) if resume_from else 0)
    examples_seen = steps_this_run * opts.batch_size * opts.grad_accum * trainer.args.world_size
    return {"test_scores": test_scores, "train_s": train_s,
            "history": trainer.state.log_history, "parameters": sum(p.numel() for p in model.parameters()),
            "steps": trainer.state.global_step, "epochs": trainer.state.epoch,
            "train_examples_per_s": examples_seen / train_s if train_s > 0 else None,
            "truncated": {name: e.truncated for name, e in encoded.items()},
            **({"windows": windows} if windows else {}),
            **({"unknown_token_rate": {name: round(e.unknown_rate, 4) for name, e in encoded.items()}}
               if backbone.word_level else {}),
            "text_framing": {"prefix_ids": list(prepared.prefix_ids), "suffix_ids": list(prepared.suffix_ids)}}


def _warn_about_encoding(opts, backbone, prepared, train_encoded) -> None:
    if opts.quiet:
        return
    if train_encoded.unknown_rate >= UNKNOWN_WARNING:
        print(f"  {train_encoded.unknown_rate:.1%} of the training text's words are outside {opts.model}'s "
              f"{prepared.tokenizer.vocab_size:,}-word vocabulary and read as [UNK]; a backbone trained on "
              "text like yours (or tfidf) covers more", file=sys.stderr)
    if train_encoded.truncated:
        print(f"  {train_encoded.truncated:,} training texts are longer than {prepared.max_length} tokens and "
              "were cut (raise --max-length to keep more)", file=sys.stderr)


def windows_read(opts, encoded: dict) -> dict | None:
    """Per split, how the texts were read in windows (None when none were); said on stderr."""
    from nlpft.finetune.data import describe_windows, window_counts

    if getattr(encoded["train"], "documents", None) is None:  # a task's own stats, or texts read whole
        return None
    counts = {name: window_counts(e) for name, e in encoded.items()}
    if not opts.quiet:
        for name, split in counts.items():
            print(f"  {describe_windows(name, split)}", file=sys.stderr)
    return counts


def _load_best(model, best: Path) -> None:
    if not (best / "model.safetensors").is_file():
        return
    from safetensors.torch import load_model as load_weights

    missing, unexpected = load_weights(model, str(best / "model.safetensors"), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"best weights do not match the model: missing {sorted(missing)[:3]}, "
                           f"unexpected {sorted(unexpected)[:3]}")


def _logits(trainer, task, dataset) -> np.ndarray:
    """The model's outputs on `dataset`, put together by the task (per-token outputs come
    padded to the longest item of all batches)."""
    judge, trainer.compute_metrics = trainer.compute_metrics, None  # it scores validation data only
    try:
        output = trainer.predict(dataset)
    finally:
        trainer.compute_metrics = judge
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    return task.collect_logits(list(np.asarray(logits, dtype=np.float32)), dataset)


def _trainer(opts, backbone, prepared, model, datasets: dict, task, work: Path, output):
    from nlpft.finetune.trainer import ClassifierTrainer, KeepBest, ReportValidation
    from nlpft.training.hf import (
        ProgressBar,
        ReportScalars,
        StopOnSignal,
        training_arguments,
        use_progress_bar,
    )

    per_epoch = math.ceil(len(datasets["train"]) / (opts.batch_size * opts.grad_accum))
    by_steps = opts.eval_every is not None or (opts.max_steps is not None and opts.max_steps < per_epoch)
    eval_steps = opts.eval_every or min(opts.max_steps or per_epoch, per_epoch)
    backbone_lr = backbone.default_lr(sum(p.numel() for p in model.parameters()))
    lr = opts.lr or task.default_lr(backbone_lr, backbone)
    note = None
    if opts.lr is None:
        note = task.default_lr_note(lr) if lr != backbone_lr else backbone.default_lr_note(lr)
    if note and not opts.quiet:
        print(f"  {note}", file=sys.stderr)
    args = training_arguments(
        output.checkpoint_dir, seed=opts.seed, precision=opts.precision,
        per_device_train_batch_size=opts.batch_size,
        per_device_eval_batch_size=max(opts.batch_size, 32),
        gradient_accumulation_steps=opts.grad_accum,
        learning_rate=lr,
        weight_decay=opts.weight_decay,
        warmup_steps=opts.warmup,
        lr_scheduler_type=opts.scheduler,
        num_train_epochs=opts.epochs if opts.epochs is not None else backbone.default_epochs,
        max_steps=opts.max_steps or -1,
        eval_strategy="steps" if by_steps else "epoch",
        eval_steps=eval_steps if by_steps else None,
        save_steps=opts.checkpoint_every,
        logging_steps=max(1, min(50, per_epoch // 4 or 1)),
        label_names=["labels"],
        remove_unused_columns=False,
    )
    optimizer, extra_callbacks, patience_from_epoch = backbone.training_extras(model, lr, opts)
    keep_best = KeepBest(work / BEST_DIR, save=backbone.save_weights, metric=task.selection_metric,
                         greater_is_better=task.greater_is_better, patience=opts.patience,
                         patience_from_epoch=patience_from_epoch)
    callbacks = [StopOnSignal(), keep_best, ReportValidation(keep_best.metric), *extra_callbacks]
    if opts.report_to == "tensorboard":  # throughput in examples/s
        callbacks.append(ReportScalars(work, units_per_step=opts.batch_size * opts.grad_accum * args.world_size))
    trainer = ClassifierTrainer(
        model=model, args=args, train_dataset=datasets["train"], eval_dataset=datasets["valid"],
        data_collator=task.collator(prepared.pad_id), processing_class=prepared.processing_class,
        callbacks=callbacks,
        compute_metrics=lambda pred: task.eval_metrics(
            *task.per_document(_predictions(pred), np.asarray(pred.label_ids), datasets["valid"])),
        task=task, group_by_length=opts.group_by_length, optimizers=(optimizer, None))
    use_progress_bar(trainer, None if opts.quiet else ProgressBar(eval_name="valid loss", perplexity=False))
    return trainer


def _predictions(eval_pred) -> np.ndarray:
    return eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
