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

import contextlib
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

from nlpft.data.fingerprint import fingerprint, record_or_check
from nlpft.errors import UserInputError
from nlpft.finetune import plugin_options
from nlpft.finetune.options import FinetuneOptions
from nlpft.options import fingerprinted_options
from nlpft.runners.output import (
    MARKER_FILE,
    RunOutput,
    is_nlpft_output,
    peak_rss_bytes,
    write_json,
)
from nlpft.training.reporting import RUNS_DIR

__all__ = ["FinetuneOptions", "finetune"]


def finetune(opts: FinetuneOptions) -> Path:
    if opts.search:
        return _search(opts)
    rank = _rank()
    run = _prepare(opts, rank)
    opts, task, output, splits, backbone = run.opts, run.task, run.output, run.splits, run.backbone
    if not opts.quiet:
        _describe_run(opts, task, backbone, splits, run.method_reason)
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
        if opts.report_to != "none" and not (work / RUNS_DIR).is_dir():
            _warn(f"--report-to {opts.report_to}: --method {opts.method} with --model {opts.model} trains without "
                  "the shared step loop whose curves it records; nothing was written to runs/")
        result = {**result, "method": opts.method, "method_reason": run.method_reason}
        headline = _write_outputs(opts, task, backbone, splits, work, result)
        final = output.publish()
    if not opts.quiet:
        print(f"finetune: test {headline} -> {final}", file=sys.stderr)
    return final


@dataclasses.dataclass(frozen=True)
class _Run:
    """A run ready to train: its resolved options, task, output, data and backbone."""

    opts: FinetuneOptions
    task: object
    output: RunOutput
    splits: object
    backbone: object
    method_reason: str


def _prepare(opts: FinetuneOptions, rank: int) -> _Run:
    """Everything before training, in the order that keeps bad input cheap: the options
    (with each plug-in's own), every file read and checked, the backbone detected and its
    options checked, --method decided; nothing has loaded a model yet."""
    from nlpft.data.sources import input_path
    from nlpft.finetune.backbones import detect_backbone
    from nlpft.finetune.tasks import task_of

    opts, task = task_of(opts)
    # under torchrun every process runs this; rank 0 owns the output directory. --model is
    # an input when it is a path (a name such as an alias is skipped)
    output = RunOutput(opts.out, resume=opts.resume or rank != 0, overwrite=opts.overwrite, command="finetune",
                       inputs=[input_path(opts.train), input_path(opts.valid), input_path(opts.test), opts.model])
    splits = task.read_splits(opts, output.final.parent if output.final.parent.exists() else None, _warn)
    backbone = detect_backbone(opts.model)  # a bad model name fails here, after the data, before anything loads
    opts = dataclasses.replace(opts, backbone_options=plugin_options.resolve(
        plugin_options.BACKBONE, type(backbone), opts.backbone_options, selected=f"--model {opts.model}"))
    backbone.check(opts, task)
    opts, backbone, method_reason = _resolve_method(opts, backbone, task, splits)
    opts = _resolve_run(opts, backbone, rank)
    return _Run(opts, task, output, splits, backbone, method_reason)


# -- --search N: each trial a whole finetune run, the best one published -------------------
TRIALS_DIR = "trials"
SEARCH_START = "search-start.json"  # rank 0 -> the other ranks: this launch's search, what is left
TRIAL_KEEPS = ("metrics.json", "report.md")  # what a trial directory keeps once its weights go


def _search(opts: FinetuneOptions) -> Path:
    """N trials under OUT.partial/trials/NNN (see `nlpft.finetune.search`), chosen on
    validation; the best trial's files become OUT's, with trials.csv and the search report.
    Under torchrun rank 0 samples and the other ranks read each trial's parameters from a
    file it writes (they join every trial of a backbone that trains in every process)."""
    from nlpft.finetune.search import require_optuna
    from nlpft.finetune.search_space import resolve_space

    require_optuna()
    rank = _rank()
    # the data, the backbone, the method and the space checked once, before the first trial
    run = _prepare(dataclasses.replace(opts, search=None, search_space=None), rank)
    task, output = run.task, run.output
    # the trials start from the options as given (each resolves its own), with the files found
    opts = dataclasses.replace(opts, train=run.opts.train, valid=run.opts.valid, test=run.opts.test)
    space = resolve_space(run.backbone.search_space(run.opts), opts.search_space, opts.model)
    if rank != 0:
        _follow_trials(opts, output.partial)
        return output.final
    work = output.open()
    with output.cleaned_up_on_error():
        from nlpft.finetune.search import Search

        search = Search(output.checkpoint_dir, space, opts.search, opts.seed, task.greater_is_better,
                        task.selection_metric)
        _run_trials(opts, search, work)
        best = search.best_trial()
        if best is None:
            from nlpft.finetune.search import TRIALS_CSV

            search.write_csv(work / TRIALS_CSV)
            raise UserInputError(f"--search {opts.search}: no trial completed (every one failed or was pruned, see "
                                 f"{work / TRIALS_CSV}); narrow --search-space (lower learning rates) or give more "
                                 "trials")
        _publish_trial(opts, search, work, best.number)
        final = output.publish()
    if not opts.quiet:
        print(f"finetune: best of {opts.search} trials: trial {best.number} -> {final}", file=sys.stderr)
    return final


def _trial_options(opts: FinetuneOptions, out: Path, params: dict, resume: bool) -> FinetuneOptions:
    return dataclasses.replace(opts, **params, out=str(out), search=None, search_space=None, resume=resume,
                               overwrite=False, quiet=True)


def _run_trials(opts: FinetuneOptions, search, work: Path) -> None:
    import time

    from nlpft.finetune.observers import observing_validation
    from nlpft.training.divergence import TrainingDiverged

    trials = work / TRIALS_DIR
    trials.mkdir(exist_ok=True)
    write_json(work / SEARCH_START, {"launch": _launch_id(), "finished": search.finished_numbers()})
    while (run := search.next_trial()) is not None:
        out = trials / f"{run.number:03d}"
        write_json(trials / f"{run.number:03d}.params.json",
                   {"launch": _launch_id(), "params": run.params, "resumed": run.resumed})
        started = time.perf_counter()
        failed = None
        if not (run.resumed and is_nlpft_output(out)):  # else it was published before the kill
            try:
                with observing_validation(search.observer(run)):
                    finetune(_trial_options(opts, out, run.params, resume=run.resumed))
            except TrainingDiverged as exc:  # too high a learning rate: a failed trial, not a failed search
                failed = str(exc)
                shutil.rmtree(out.with_name(out.name + ".partial"), ignore_errors=True)
        state = search.finish(run, time.perf_counter() - started, failed=failed is not None)
        _drop_weights_of_losers(search, trials)
        if not opts.quiet:
            _describe_trial(search, run, state, failed)


def _describe_trial(search, run, state: str, failed: str | None) -> None:
    row = next(r for r in search.rows() if r["number"] == run.number)
    score = row[f"valid_{search.metric}"]
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in run.params.items())
    result = f"valid {search.metric} {score:.4f}" if score is not None else "no score"
    # the number trials.csv, trials/NNN and the report use (from 0), then the count so far
    print(f"trial {run.number} ({run.number + 1}/{search.n_trials}): {params} -> {result}, {state}"
          + (f" ({failed})" if failed else "") + f", {row['seconds']:.0f} s", file=sys.stderr)


def _drop_weights_of_losers(search, trials: Path) -> None:
    """Every trial directory but the best so far's keeps only its metrics and report."""
    best = search.best_trial()
    for folder in trials.iterdir():
        if not (folder.name.isdigit() and is_nlpft_output(folder)):
            continue  # not a published trial (or already stripped)
        if best is not None and folder.name == f"{best.number:03d}":
            continue
        for item in folder.iterdir():
            if item.name in TRIAL_KEEPS:
                continue
            if item.is_dir():
                shutil.rmtree(item)
            else:
                item.unlink()


def _publish_trial(opts: FinetuneOptions, search, work: Path, number: int) -> None:
    """The best trial's model and outputs moved to the top of `work` (its metrics and report
    stay in its trial directory too), then trials.csv, the search section of report.md and
    the search in finetune.json."""
    from nlpft.finetune.inference import META_FILE
    from nlpft.finetune.search import TRIALS_CSV

    best = work / TRIALS_DIR / f"{number:03d}"
    for item in best.iterdir():
        if item.name in TRIAL_KEEPS:
            shutil.copy2(item, work / item.name)
        elif item.name == MARKER_FILE:
            item.unlink()  # a trial directory like the others: its metrics and report only
        else:
            os.replace(item, work / item.name)
    (work / SEARCH_START).unlink(missing_ok=True)  # what the other ranks read: done with
    for shared in (work / TRIALS_DIR).glob("*.params.json"):
        shared.unlink()
    search.write_csv(work / TRIALS_CSV)
    with open(work / "report.md", "a", encoding="utf-8") as fh:
        fh.write("\n" + search.report_section())
    meta = json.loads((work / META_FILE).read_text(encoding="utf-8"))
    meta["options"] = {**meta["options"], "out": str(opts.out), "search": opts.search,
                       "search_space": opts.search_space}
    meta["search"] = search.summary()
    write_json(work / META_FILE, meta)


def _follow_trials(opts: FinetuneOptions, work: Path) -> None:
    """The ranks above 0: wait for rank 0's start of this launch's search, then join each
    trial left with the parameters rank 0 sampled (each written to a file before the trial)."""
    from nlpft.finetune.observers import observing_validation

    start = _wait_for_launch(work / SEARCH_START)
    for number in range(opts.search):
        if number in start["finished"]:
            continue
        shared = _wait_for_launch(work / TRIALS_DIR / f"{number:03d}.params.json")
        out = work / TRIALS_DIR / f"{number:03d}"
        with observing_validation(lambda *report: False):  # rank 0's pruner decides for all
            finetune(_trial_options(opts, out, shared["params"], resume=shared["resumed"]))


def _wait_for_launch(path: Path) -> dict:
    """The JSON file at `path` once rank 0 of this launch wrote it (a file left by an earlier
    launch does not count)."""
    import time

    while True:
        with contextlib.suppress(OSError, ValueError):
            document = json.loads(path.read_text(encoding="utf-8"))
            if document.get("launch") == _launch_id():
                return document
        time.sleep(0.05)


def _launch_id() -> str:
    """The same in every process that torchrun started together, new in every launch."""
    return os.environ.get("TORCHELASTIC_RUN_ID", "")


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
