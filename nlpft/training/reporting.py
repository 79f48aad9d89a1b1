"""`--report-to tensorboard`: a run's training curves as TensorBoard event files in OUT/runs/.

Every training loop (`lm train`, `pretrain`, `finetune`) writes the same scalars through one
`ScalarReport`, against the optimizer step:

    train/loss            mean training loss over the steps since the previous point
    train/learning_rate   the learning rate at that point
    train/throughput      speed over those steps, counting time inside training steps only
                          (evaluations and checkpoints left out): tokens/s for `lm train`
                          and `pretrain`, examples/s for `finetune`
    eval/<metric>         each validation metric at each evaluation during training
                          (eval/loss, eval/perplexity, eval/accuracy, eval/macro_f1, ...)

The loops' callbacks decide when a point is written (the Hugging Face Trainer's logging
steps and evaluations: `nlpft.training.hf.ReportScalars`; the RNN LM loop's steps and
evaluations: `nlpft.runners.lm`); this module decides what is written and where.

The events go to `runs/` inside the run's partial output directory, so publishing `--out`
moves them with the model. A resumed run adds an event file beside those of the run it
continues, starting at the step after its checkpoint: TensorBoard hides the points that the
interrupted run wrote after that checkpoint (`purge_step`), so the curves go on without
doubled steps.

The `tensorboard` package is an optional extra (`pip install 'nlpft[tensorboard]'`);
`check_report_to` refuses the flag without it before anything heavy loads. Nothing here
imports torch or tensorboard until a report is opened.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from nlpft.errors import UserInputError

#: the choices of --report-to
REPORT_TO = ("none", "tensorboard")
#: where the events go, inside the output directory
RUNS_DIR = "runs"
INSTALL_HINT = "pip install 'nlpft[tensorboard]'"
REPORT_TO_HELP = ("tensorboard: write the training curves (loss, learning rate, throughput, validation metrics) "
                  "as TensorBoard event files into OUT/runs/ (view them with `tensorboard --logdir OUT/runs`); "
                  f"needs `{INSTALL_HINT}` (default: %(default)s)")


def check_report_to(report_to: str) -> None:
    """Refuse an unknown --report-to, or tensorboard without its package (one line, exit 2)."""
    if report_to not in REPORT_TO:
        raise UserInputError(f"--report-to: invalid choice: {report_to!r} (choose from "
                             f"{', '.join(map(repr, REPORT_TO))})")
    if report_to == "tensorboard":
        try:
            import tensorboard  # noqa: F401  (torch.utils.tensorboard writes through it)
        except ImportError:
            raise UserInputError(f"--report-to tensorboard needs the tensorboard package: {INSTALL_HINT}") from None


class ScalarReport:
    """The scalars of one process's part of a run, written to `<work>/runs/`.

    `first_step` is the first optimizer step this process trains: above 1 when it resumes
    a checkpoint, and then whatever an earlier process wrote from that step on is hidden.
    Every point is flushed at once, so a killed run loses none that its checkpoint covers."""

    def __init__(self, work: str | Path, first_step: int = 1):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(work) / RUNS_DIR
        self._writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=first_step if first_step > 1 else None)

    def train(self, step: int, loss: float, learning_rate: float | None, throughput: float | None) -> None:
        """One point of the training curves; `throughput` None when no step time was measured."""
        self._writer.add_scalar("train/loss", loss, step)
        if learning_rate is not None:
            self._writer.add_scalar("train/learning_rate", learning_rate, step)
        if throughput is not None:
            self._writer.add_scalar("train/throughput", throughput, step)
        self._writer.flush()

    def evaluation(self, step: int, metrics: Mapping[str, float]) -> None:
        """One evaluation: each metric (named without a prefix: loss, accuracy) as eval/<name>."""
        for name, value in metrics.items():
            self._writer.add_scalar(f"eval/{name}", value, step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
