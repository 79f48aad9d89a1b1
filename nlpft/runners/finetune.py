"""`nlpft finetune`: train a task head on a backbone from labeled files.

validate the options -> resolve them into a new object (with the task's own options) -> the
task reads and checks every file (before any model loads), splits and builds its label
space -> the backbone named by --model resolves its own options and checks the options ->
--method picks how it trains (`nlpft.finetune.methods`: auto counts the training examples
per class; a method may train through a plug-in of its own) -> the backbone trains
(`Backbone.fit`: the shared trainer, or its own) ->
the task's metrics, report, plots and predictions -> publish OUT.

What a task or a backbone means lives in their plug-ins (`nlpft.finetune.tasks`,
`nlpft.finetune.backbones`); this module only orchestrates. For Hugging Face backbones OUT
is a standard model directory, so `transformers.pipeline("text-classification",
model=OUT)` works without nlpft; nlpft's own files sit beside it (finetune.json, ...).
`predict` and `evaluate` live in `nlpft.runners.predict`.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from nlpft.data.fingerprint import fingerprint, record_or_check
from nlpft.finetune import plugin_options
from nlpft.finetune.options import FinetuneOptions
from nlpft.options import fingerprinted_options
from nlpft.runners.output import RunOutput, peak_rss_bytes, write_json

__all__ = ["FinetuneOptions", "finetune"]


def finetune(opts: FinetuneOptions) -> Path:
    from nlpft.finetune.backbones import detect_backbone
    from nlpft.finetune.tasks import task_class

    opts.validate()
    opts = _resolve_inputs(opts)
    rank = _rank()
    task_type = task_class(opts.task)
    opts = dataclasses.replace(opts, task_options=plugin_options.resolve(
        plugin_options.TASK, task_type, opts.task_options, selected=f"--task {opts.task}"))
    task = task_type.from_options(opts)
    # under torchrun every process runs this; rank 0 owns the output directory. --model is
    # an input when it is a path (a name such as an alias is skipped)
    output = RunOutput(opts.out, resume=opts.resume or rank != 0, overwrite=opts.overwrite, command="finetune",
                       inputs=[opts.train, opts.valid, opts.test, opts.model])
    splits = task.read_splits(opts, output.final.parent if output.final.parent.exists() else None, _warn)
    backbone = detect_backbone(opts.model)  # a bad model name fails here, after the data, before anything loads
    opts = dataclasses.replace(opts, backbone_options=plugin_options.resolve(
        plugin_options.BACKBONE, type(backbone), opts.backbone_options, selected=f"--model {opts.model}"))
    backbone.check(opts, task)
    opts, backbone, method_reason = _resolve_method(opts, backbone, task, splits)
    opts = _resolve_run(opts, backbone, rank)
    if not opts.quiet:
        _describe_run(opts, task, backbone, splits, method_reason)
    import torch

    from nlpft.training.hf import (
        transformers_quiet,  # slow to import: before the partial directory exists
    )

    if opts.threads:
        torch.set_num_threads(opts.threads)
    if not backbone.every_rank and rank != 0:
        return output.final  # one process is enough
    work = output.open() if rank == 0 else output.partial
    with output.cleaned_up_on_error(owner=rank == 0), transformers_quiet():
        record_or_check(work, _fingerprint(opts), resuming=opts.resume, record=rank == 0)
        result = backbone.fit(opts, task, splits, work, output)
        if rank != 0:
            return output.final
        result = {**result, "method": opts.method, "method_reason": method_reason}
        headline = _write_outputs(opts, task, backbone, splits, work, result)
        final = output.publish()
    if not opts.quiet:
        print(f"finetune: test {headline} -> {final}", file=sys.stderr)
    return final


def _resolve_inputs(opts: FinetuneOptions) -> FinetuneOptions:
    """Dataset names (such as `polarity`) resolved to paths."""
    from nlpft.data.registry import resolve_labeled_file

    return dataclasses.replace(opts, train=resolve_labeled_file(opts.train),
                               valid=resolve_labeled_file(opts.valid) if opts.valid else None,
                               test=resolve_labeled_file(opts.test) if opts.test else None)


def _resolve_method(opts: FinetuneOptions, backbone, task, splits) -> tuple[FinetuneOptions, object, str]:
    """--method auto decided from the training rows; the backbone that trains (a method may
    bring its own plug-in) and why that method."""
    from nlpft.finetune.methods import choose_method

    choice = choose_method(opts, backbone, task, splits.train)
    return dataclasses.replace(opts, method=choice.method.name), choice.backbone, choice.reason


def _resolve_run(opts: FinetuneOptions, backbone, rank: int) -> FinetuneOptions:
    """--precision auto decided for this backbone and machine; only rank 0 speaks."""
    from nlpft.training.precision import resolve_precision

    return dataclasses.replace(opts, precision=resolve_precision(opts.precision, transformer=backbone.uses_precision),
                               quiet=opts.quiet or rank != 0)


def _describe_run(opts: FinetuneOptions, task, backbone, splits, method_reason: str) -> None:
    sizes = f"{len(splits.train):,} train, {len(splits.valid):,} valid, {len(splits.test):,} test examples"
    matrix_work = f", {opts.precision}" if backbone.uses_precision else ""
    print(f"finetune: {sizes}{task.describe_labels()}; backbone {opts.model}{matrix_work}", file=sys.stderr)
    print(f"  method {opts.method} ({method_reason})", file=sys.stderr)
    for name, summary in splits.skipped.items():
        print(f"  {name}: skipped {summary}", file=sys.stderr)


def _write_outputs(opts: FinetuneOptions, task, backbone, splits, work: Path, result: dict) -> str:
    from nlpft.finetune.outputs import write_outputs

    headline, documents = write_outputs(opts, task, backbone, splits, work, result, peak_rss_bytes() / 2**20)
    for name, document in documents.items():
        write_json(work / name, document)
    return headline


def _fingerprint(opts: FinetuneOptions) -> dict:
    """Options that shape the data, the labels and the model; the rest (--epochs, --max-steps,
    --lr, the schedule, --patience, --threads, ...) may change when a run is resumed. The
    plug-ins' own options are resolved dataclasses by now (or None)."""
    options = fingerprinted_options(opts)
    for own in (opts.task_options, opts.backbone_options):
        if own is not None:
            options.update(fingerprinted_options(own))
    return fingerprint({"--train": opts.train, "--valid": opts.valid, "--test": opts.test, "--model": opts.model},
                       options)


def _warn(text: str) -> None:
    """A data problem: shown even with --quiet, once under torchrun."""
    if _rank() == 0:
        print(f"warning: {text}", file=sys.stderr)


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))
