"""`nlpft experiment`: a YAML file of pretraining and fine-tuning steps, planned as a graph,
cached by content, run (and resumed) step by step, then reported.

config.py reads and checks the file, plan.py turns it into keyed steps, executor.py runs
them as subprocesses under a lock and answers `status`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from nlpft.experiments.options import ExperimentOptions


def run_experiment(options: ExperimentOptions, command: str = "experiment run") -> int:
    """Plan the experiment; with dry_run print the plan, else run what is missing, print a
    summary and build the report. 0 when every step is done, 1 when one failed."""
    from nlpft.experiments.config import load_experiment
    from nlpft.experiments.executor import describe_plan, run_plan
    from nlpft.experiments.plan import build_plan

    options.validate()
    config = load_experiment(options.config)
    plan = build_plan(config)
    out = Path(options.out or Path("runs") / config.name)
    if options.dry_run:
        print(describe_plan(plan, out))
        return 0
    summary = run_plan(plan, out, jobs=options.jobs, keep_going=options.keep_going, command=command)
    print(f"experiment {plan.name}: {len(summary['ran'])} run, {len(summary['reused'])} reused, "
          f"{len(summary['failed'])} failed, {len(summary['skipped'])} skipped; outputs in {out / 'steps'}",
          file=sys.stderr)
    for name, log in summary["failed"].items():
        print(f"  failed: {name}, log {log}", file=sys.stderr)
    if not summary["failed"] and not summary["skipped"]:
        _build_report(plan, out)
    return 1 if summary["failed"] else 0


REPORT_INPUTS = "inputs.json"  # in OUT/report: the step directories and primary metric it was built from


def _build_report(plan, out: Path) -> None:
    """OUT/report/ from the finished fine-tuning runs and the upstream steps. Built aside
    and swapped in whole, so a killed build leaves the previous report; not rebuilt when it
    already reports exactly these step outputs (an unchanged rerun stays quick)."""
    import json
    import shutil

    from nlpft.experiments.executor import step_directory
    from nlpft.report import RunRef, UpstreamRef, build_report

    runs = [RunRef(path=step_directory(out, s), model=s.model, seed=s.seed) for s in plan.steps
            if s.kind == "finetune"]
    upstream = [UpstreamRef(path=step_directory(out, s), name=s.name, kind=s.kind) for s in plan.steps
                if s.kind != "finetune"]
    if not runs:
        return
    inputs = {"primary": plan.primary, "steps": sorted(step_directory(out, s).name for s in plan.steps)}
    report, building = out / "report", out / "report.partial"
    try:
        if json.loads((report / REPORT_INPUTS).read_text(encoding="utf-8")) == inputs:
            print(f"report: {report / 'report.html'} (up to date)", file=sys.stderr)
            return
    except (OSError, ValueError):
        pass
    shutil.rmtree(building, ignore_errors=True)
    build_report(runs, building, primary=plan.primary, upstream=upstream)
    (building / REPORT_INPUTS).write_text(json.dumps(inputs, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(report, ignore_errors=True)
    building.rename(report)
    print(f"report: {report / 'report.html'}", file=sys.stderr)
