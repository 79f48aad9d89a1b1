"""`nlpft compare`: the comparison report of finished fine-tuning runs, published to --out
atomically like every command's output."""

from __future__ import annotations

from pathlib import Path

from nlpft.report import build_report
from nlpft.report.options import CompareOptions
from nlpft.report.runs import refs_from_directories
from nlpft.runners.output import RunOutput


def run_compare(opts: CompareOptions) -> Path:
    """The path of the published report.html."""
    opts.validate()
    refs = refs_from_directories([Path(run) for run in opts.runs])
    output = RunOutput(opts.out, overwrite=opts.overwrite, command="compare", inputs=opts.runs)
    work = output.open()
    with output.cleaned_up_on_error():
        report = build_report(refs, work, primary=opts.primary)
        output.publish()
    return output.final / report.name
