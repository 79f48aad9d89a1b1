"""`nlpft compare`: one report for any set of finished fine-tuning runs."""

from __future__ import annotations

import argparse

from nlpft.cli.main import OUT_HELP, add_config_option, add_overwrite_option
from nlpft.cli.options import add_options, from_args

DESCRIPTION = """\
Compare finished `nlpft finetune` runs tested on the same rows. Runs whose options differ
only in --seed are seeds of one model: the table shows each model's mean ± std over seeds
of the primary metric and the task's other scores, training time, examples/s, parameters
and peak memory. Plots: the primary metric against training time (the cost/quality
frontier marked), F1 per class across models, learning curves, the best model's confusion
matrix. The best model is compared with each other one on the same test rows: a bootstrap
confidence interval of the difference and, for classification, McNemar's exact test.

--out receives report.md, report.html (one self-contained file: plots embedded, nothing
fetched), report.json (the tables' numbers) and the plots as PNG files.
"""

EPILOG = """\
examples:
  nlpft compare runs/tfidf-s1 runs/tfidf-s2 runs/minilm-s1 runs/minilm-s2 --out report
  nlpft compare runs/clf-* --out report --primary accuracy
"""


def register(commands: argparse._SubParsersAction) -> None:
    from nlpft.report.options import CompareOptions

    p = commands.add_parser("compare", help="one report (tables, plots, paired tests) for finished fine-tuning runs",
                            description=DESCRIPTION, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, CompareOptions)
    p.add_argument("--out", required=True, metavar="DIR", help=OUT_HELP)
    add_overwrite_option(p)
    add_config_option(p)
    p.set_defaults(_handler=run_compare, _parser=p)


def run_compare(args: argparse.Namespace) -> int:
    from nlpft.report.options import CompareOptions
    from nlpft.runners.compare import run_compare as compare

    print(compare(from_args(CompareOptions, args)))
    return 0
