"""The comparison report of finished fine-tuning runs (`nlpft compare`, and the end of
`nlpft experiment run`): it only reads run directories and writes report.md, report.html
and the plots; it starts no training."""

from nlpft.report.build import build_report
from nlpft.report.runs import RunRef, UpstreamRef

__all__ = ["RunRef", "UpstreamRef", "build_report"]
