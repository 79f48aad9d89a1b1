"""`nlpft experiment run | status`: a YAML experiment planned, cached, run and resumed."""

from __future__ import annotations

import argparse
import json

from nlpft.cli.main import add_command_group
from nlpft.cli.options import add_options, from_args

RUN_DESCRIPTION = """\
Run an experiment file: its steps (embed, lm, pretrain) and the fine-tuning runs
(backbones x grid x seeds) become a graph; each step is keyed by a hash of its options,
the contents of its input files, the keys of the steps it uses and the nlpft version, and
written to OUT/steps/<name>-<key>/. A finished step with the same key is reused; a killed
step continues from its checkpoint (--resume); the rest runs, each step as its own
`python -m nlpft` process logging to OUT/logs/<step>.log.
"""

EPILOG = """\
examples:
  nlpft experiment run exp.yaml --out runs/exp
  nlpft experiment run exp.yaml --dry-run
  nlpft experiment run exp.yaml --out runs/exp --jobs 2 --keep-going
  nlpft experiment status runs/exp
"""


def register(commands: argparse._SubParsersAction) -> None:
    from nlpft.experiments.options import ExperimentOptions, ExperimentStatusOptions

    _, verbs = add_command_group(commands, "experiment", help="run a YAML experiment: steps, cache, resume",
                                 description="Plan, run, resume and inspect an experiment file.", epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    run = verbs.add_parser("run", help="run what is missing of an experiment", description=RUN_DESCRIPTION,
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(run, ExperimentOptions)
    run.set_defaults(_handler=run_experiment_command, _parser=run)
    status = verbs.add_parser("status", help="per step: done, running, failed, interrupted, stale or pending",
                              description="The state of each step of the last `experiment run` on DIR.")
    add_options(status, ExperimentStatusOptions)
    status.set_defaults(_handler=status_command, _parser=status)


def run_experiment_command(args: argparse.Namespace) -> int:
    from nlpft.experiments import run_experiment
    from nlpft.experiments.options import ExperimentOptions

    return run_experiment(from_args(ExperimentOptions, args))


def status_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nlpft.experiments.executor import experiment_status, format_status
    from nlpft.experiments.options import ExperimentStatusOptions

    options = from_args(ExperimentStatusOptions, args)
    rows = experiment_status(Path(options.out))
    print(json.dumps(rows, indent=2) if options.json else format_status(rows))
    return 0
