"""Running a plan: each step as its own `python -m nlpft ...` process.

Subprocesses, not calls in this process: each step gets a clean interpreter (no state
carried from one training run to the next), its own log (`OUT/logs/<step>.log`), can run
next to others (`--jobs`), and dies with the experiment (PR_SET_PDEATHSIG), so a killed
experiment leaves no orphan writing into a step directory.

A step is done when `OUT/steps/<name>-<key>/` is published (nlpft's outputs are renamed
into place only when complete, carrying `.nlpft-output.json`); a step whose `.partial`
directory holds a checkpoint is continued with `--resume`; any other step runs afresh.
`OUT/experiment.lock` (an flock naming its holder) keeps a second experiment off the same
OUT; `OUT/plan.json` (the resolved plan) and `OUT/state.json` (per step: status, start and
end times, exit code, log) let `nlpft experiment status OUT` work from OUT alone.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nlpft.errors import UserInputError
from nlpft.experiments.plan import (
    Plan,
    Step,
    content_hash,
    launcher_argv,
    recorded_input,
    step_argv,
)
from nlpft.runners.output import (
    MARKER_FILE,
    RunOutput,
    flock_held,
    lock_holder,
    record_holder,
    try_flock,
    write_json,
)

LOCK_FILE = "experiment.lock"
PLAN_FILE = "plan.json"
STATE_FILE = "state.json"
SUMMARY_FILE = "summary.json"
POLL_S = 0.1


def step_directory(out: Path, step: Step) -> Path:
    return out / "steps" / step.directory_name


def step_state(out: Path, step: Step) -> str:
    """done (published), resume (a checkpoint to continue) or run."""
    directory = step_directory(out, step)
    if (directory / MARKER_FILE).is_file():
        return "done"
    if RunOutput(directory).has_checkpoint():
        return "resume"
    return "run"


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def thread_budget(jobs: int) -> int:
    """Threads per step so that `jobs` steps side by side use the cores once, not `jobs` times."""
    return max(1, available_cores() // jobs)


# -- the lock ---------------------------------------------------------------------------
@contextlib.contextmanager
def experiment_locked(out: Path, command: str):
    """Hold `OUT/experiment.lock` (flock) for the block; a second holder gets exit code 2
    naming the first. The kernel drops the lock when the holder dies."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    fd = try_flock(path)
    if fd is None:
        raise UserInputError(f"{out}: another `nlpft experiment` is running on it "
                             f"({lock_holder(path) or f'lock {path}'}); wait for it to finish or pass another --out")
    try:
        record_holder(fd, command)
        yield
    finally:
        os.close(fd)


def lock_is_held(out: Path) -> bool:
    return flock_held(out / LOCK_FILE)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# -- the dry run ---------------------------------------------------------------------------
def describe_plan(plan: Plan, out: Path) -> str:
    """One line per step: name, command, key, cached / will run / will resume, what it
    depends on, and for a step to run an estimate of its time (`estimate_seconds`); then
    the counts and the estimated total."""
    state = read_state(out)
    lines = [f"experiment {plan.name}: {len(plan.steps)} steps, outputs under {out / 'steps'}"]
    lines += [f"  note: {note}" for note in plan.notes]
    counts = {"done": 0, "resume": 0, "run": 0}
    total, estimated, unknown = 0.0, 0, 0
    for step in plan.steps:
        status = step_state(out, step)
        counts[status] += 1
        shown = {"done": "cached", "resume": "will resume", "run": "will run"}[status]
        after = f"  after {', '.join(step.depends_on)}" if step.depends_on else ""
        cost = ""
        if status != "done":
            guess = estimate_seconds(step, plan, state)
            if guess is None:
                unknown += 1
                cost = "  no estimate"
            else:
                total, estimated = total + guess[0], estimated + 1
                resumed = ", less if resumed" if status == "resume" else ""
                cost = f"  ~{format_duration(guess[0])} ({guess[1]}{resumed})"
        lines.append(f"  {step.name:<28} {' '.join(step.words):<11} {step.key}  {shown}{after}{cost}")
    lines.append(f"{counts['done']} cached, {counts['run']} to run, {counts['resume']} to resume")
    if estimated:
        without = f", {_count(unknown, 'step')} without an estimate" if unknown else ""
        lines.append(f"estimated: {format_duration(total)} for {_count(estimated, 'step')}{without}")
    elif unknown:
        lines.append(f"estimated: nothing yet (no step like the {_count(unknown, 'step')} to run has finished)")
    return "\n".join(lines)


def estimate_seconds(step: Step, plan: Plan, state: dict) -> tuple[float, str] | None:
    """(seconds, what they come from) for `step`: its own last finished run (with other
    options, or its output since removed), else the mean of the finished runs of the same
    command and backbone in this experiment (other seeds or grid points, also of earlier
    plans), named by one of them; None when there is neither."""
    own = state.get(step.name, {})
    if own.get("status") == "done" and own.get("seconds") is not None:
        return float(own["seconds"]), "last run"
    if step.backbone is None:
        return None
    planned = {s.name: (s.kind, s.backbone) for s in plan.steps}
    alike = [(name, float(entry["seconds"])) for name, entry in state.items()
             if name != step.name and entry.get("status") == "done" and entry.get("seconds") is not None
             and planned.get(name, (entry.get("kind"), entry.get("backbone"))) == (step.kind, step.backbone)]
    if not alike:
        return None
    more = f" and {_count(len(alike) - 1, 'other')}" if len(alike) > 1 else ""
    return sum(seconds for _, seconds in alike) / len(alike), f"like {alike[0][0]}{more}"


def format_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


# -- the state file ------------------------------------------------------------------------
def read_state(out: Path) -> dict:
    try:
        return json.loads((out / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class StateFile:
    """OUT/state.json, rewritten atomically on every change (only this process writes it)."""

    def __init__(self, out: Path):
        self.path = out / STATE_FILE
        self.steps = read_state(out)

    def update(self, step: Step, **values) -> None:
        entry = self.steps.setdefault(step.name, {})
        if entry.get("key") != step.key:
            entry.clear()
        entry.update(key=step.key, dir=step.directory_name, kind=step.kind, backbone=step.backbone, **values)
        write_json(self.path, self.steps)


# -- running -------------------------------------------------------------------------------
def run_plan(plan: Plan, out: Path, jobs: int = 1, keep_going: bool = False, command: str = "") -> dict:
    """Run every step of `plan` not done yet, `jobs` at a time, under the experiment lock.
    Returns the summary {"ran": [...], "reused": [...], "failed": {name: log}, "skipped": [...]}."""
    with experiment_locked(out, command):
        for note in plan.notes:  # what the plan made of the config, as the dry run shows it
            print(f"note: {note}", file=sys.stderr)
        write_json(out / PLAN_FILE, plan.to_json(out))
        (out / "logs").mkdir(exist_ok=True)
        (out / "steps").mkdir(exist_ok=True)
        summary = _Scheduler(plan, out, jobs, keep_going).run()
        write_json(out / SUMMARY_FILE, summary)
    return summary


PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl():
    """libc's prctl, looked up in the parent (the child between fork and exec should only
    call it), or None off Linux."""
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _die_with_parent_setup():
    """A preexec function making the child receive SIGKILL when the experiment process
    dies (Linux), so a killed experiment leaves no step running on."""
    prctl = _prctl()

    def die_with_parent() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    return die_with_parent


def _sigterm_interrupts():
    """SIGTERM stops the experiment as Ctrl-C does: the running steps are asked to stop
    (saving their checkpoints) instead of being killed with it. Returns the old handler."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    return signal.signal(signal.SIGTERM, interrupt)


class _Scheduler:
    def __init__(self, plan: Plan, out: Path, jobs: int, keep_going: bool):
        self.plan, self.out, self.jobs, self.keep_going = plan, out, jobs, keep_going
        self.threads = thread_budget(jobs)
        self.state = StateFile(out)
        self.directories = {s.name: step_directory(out, s).resolve() for s in plan.steps}
        self.running: dict[str, tuple[subprocess.Popen, float]] = {}
        self.summary: dict = {"ran": [], "reused": [], "failed": {}, "skipped": []}

    def run(self) -> dict:
        pending = []
        for step in self.plan.steps:
            if step_state(self.out, step) == "done":
                self.summary["reused"].append(step.name)
                if self.state.steps.get(step.name, {}).get("key") != step.key:
                    self.state.update(step, status="done")
            else:
                pending.append(step)
        previous = _sigterm_interrupts()
        try:
            while pending or self.running:
                self._start_ready(pending)
                if self.running:
                    self._reap(pending)
        except BaseException:
            self._stop_all()
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return self.summary

    def _blocked(self, step: Step) -> bool:
        failed = set(self.summary["failed"]) | set(self.summary["skipped"])
        return any(d in failed for d in step.depends_on)

    def _ready(self, step: Step) -> bool:
        finished = set(self.summary["ran"]) | set(self.summary["reused"])
        return all(d in finished for d in step.depends_on)

    def _start_ready(self, pending: list) -> None:
        for step in list(pending):
            if self.summary["failed"] and not self.keep_going:
                self.summary["skipped"].append(step.name)
                pending.remove(step)
            elif self._blocked(step):
                self.summary["skipped"].append(step.name)
                pending.remove(step)
                print(f"skipped {step.name}: a step it depends on failed", file=sys.stderr)
            elif self._ready(step) and len(self.running) < self.jobs:
                pending.remove(step)
                self._start(step)

    def _start(self, step: Step) -> None:
        resume = step_state(self.out, step) == "resume"
        argv = launcher_argv(step, sys.executable) + step_argv(step, self.directories,
                                                               self.directories[step.name], self.threads, resume)
        log = self.out / "logs" / f"{step.name}.log"
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"\n=== {_now()} {'resuming' if resume else 'running'}: {' '.join(argv)}\n")
            fh.flush()
            process = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, preexec_fn=_die_with_parent_setup())  # noqa: PLW1509 (no threads here)
        self.running[step.name] = (process, time.monotonic())
        self.state.update(step, status="running", started=_now(), ended=None, seconds=None, exit_code=None,
                          log=str(log), pid=process.pid)
        print(f"{'resuming' if resume else 'running'} {step.name} ({' '.join(step.words)}, key {step.key})",
              file=sys.stderr)

    def _reap(self, pending: list) -> None:
        time.sleep(POLL_S)  # polling a handful of processes: cheap, and no thread per step
        for name, (process, started) in list(self.running.items()):
            code = process.poll()
            if code is None:
                continue
            del self.running[name]
            step = self.plan.step(name)
            seconds = round(time.monotonic() - started, 2)
            log = self.out / "logs" / f"{name}.log"
            if code == 0 and step_state(self.out, step) == "done":
                self.summary["ran"].append(name)
                self.state.update(step, status="done", ended=_now(), seconds=seconds, exit_code=0)
                print(f"done {name} in {seconds:.1f} s", file=sys.stderr)
            else:
                self.summary["failed"][name] = str(log)
                self.state.update(step, status="failed", ended=_now(), seconds=seconds, exit_code=code)
                print(f"failed {name} (exit code {code}); log: {log}", file=sys.stderr)

    def _stop_all(self) -> None:
        """Interrupted: ask every running step to stop (each saves a checkpoint where it can)."""
        for process, _ in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for name, (process, _) in self.running.items():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
            self.state.update(self.plan.step(name), status="interrupted", ended=_now())


# -- status ----------------------------------------------------------------------------------
def experiment_status(out: Path) -> list[dict]:
    """Per step of the last plan run on OUT: done / running / failed / stale / pending, with
    times. Stale: an input file changed since the plan was made (or a step it depends on is
    stale), or only another key's directory exists for the step."""
    try:
        plan = json.loads((out / PLAN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserInputError(f"{out}: no {PLAN_FILE}; is it the --out of `nlpft experiment run`?") from None
    state = read_state(out)
    held = lock_is_held(out)
    stale: set[str] = set()
    rows = []
    for step in plan["steps"]:
        entry = state.get(step["name"], {})
        directory = out / "steps" / step["dir"]
        changed = [path for path, digest in step["inputs"].items()
                   if content_hash(recorded_input(path, out)) != digest]
        if changed or any(d in stale for d in step["depends_on"]):
            stale.add(step["name"])
        if step["name"] in stale:
            status = "stale"
        elif (directory / MARKER_FILE).is_file():
            status = "done"
        elif entry.get("key") == step["key"] and entry.get("status") == "running" and held:
            status = "running"
        elif entry.get("key") == step["key"] and entry.get("status") in ("failed", "interrupted", "running"):
            status = "failed" if entry.get("status") == "failed" else "interrupted"
        elif any(p.name.startswith(step["name"] + "-") and p.is_dir() for p in (out / "steps").iterdir()):
            status = "stale"
        else:
            status = "pending"
        rows.append({"name": step["name"], "status": status, "key": step["key"], "started": entry.get("started"),
                     "ended": entry.get("ended"), "seconds": entry.get("seconds"), "log": entry.get("log"),
                     "changed_inputs": changed})
    return rows


def format_status(rows: list[dict]) -> str:
    lines = []
    for row in rows:
        took = f"{row['seconds']:.1f} s" if row["seconds"] is not None else ""
        when = row["started"] or ""
        line = f"{row['name']:<28} {row['status']:<11} {row['key']}  {when:<20} {took}"
        if row["changed_inputs"]:
            line += f"  changed: {', '.join(row['changed_inputs'])}"
        if row["status"] in ("failed", "interrupted") and row["log"]:
            line += f"  log: {row['log']}"
        lines.append(line)
        if row["status"] == "failed" and row["log"]:
            lines += [f"    | {text}" for text in _tail(Path(row["log"]), 3)]
    return "\n".join(lines)


def _tail(path: Path, count: int) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").rstrip().splitlines()[-count:]
    except OSError:
        return []
