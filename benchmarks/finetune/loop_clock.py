"""Run a fine-tuning command with the time of its training loop measured, the same way
whichever program drives the Hugging Face `Trainer` (nlpft or a stock script):

    python benchmarks/finetune/loop_clock.py CLOCK.json -m nlpft finetune ...
    python benchmarks/finetune/loop_clock.py CLOCK.json path/to/script.py ARGS...

The command runs in this process (`runpy`), with `Trainer.train` and
`Trainer._maybe_log_save_evaluate` wrapped. The training loop's time is the time inside
`Trainer.train()` minus the time inside `_maybe_log_save_evaluate` (where the Trainer
logs, evaluates and writes checkpoints: nlpft's per-epoch validation and best-weights
save happen there, and the stock scripts do neither). Both wall time and this process's
CPU time (user + system, `time.process_time`) are recorded: on a CPU shared with other
work the CPU time is the steadier measure of a one-thread run, as waiting for the core
is not counted. CLOCK.json gets {"wall_s", "cpu_s", "paused_wall_s", "paused_cpu_s",
"steps"} once `train()` returns; nothing of nlpft is imported here.
"""

from __future__ import annotations

import functools
import json
import runpy
import sys
import time
from pathlib import Path


class LoopClock:
    def __init__(self, out: Path):
        self.out = out
        self.paused_wall = self.paused_cpu = 0.0

    @staticmethod
    def _now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def wrap_pause(self, method):
        @functools.wraps(method)
        def timed(*args, **kwargs):
            wall, cpu = self._now()
            try:
                return method(*args, **kwargs)
            finally:
                self.paused_wall += time.perf_counter() - wall
                self.paused_cpu += time.process_time() - cpu
        return timed

    def wrap_train(self, method):
        @functools.wraps(method)
        def timed(trainer, *args, **kwargs):
            self.paused_wall = self.paused_cpu = 0.0
            wall, cpu = self._now()
            result = method(trainer, *args, **kwargs)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            self.out.write_text(json.dumps({
                "wall_s": wall - self.paused_wall, "cpu_s": cpu - self.paused_cpu,
                "paused_wall_s": self.paused_wall, "paused_cpu_s": self.paused_cpu,
                "steps": trainer.state.global_step}) + "\n")
            return result
        return timed


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    clock = LoopClock(Path(sys.argv[1]))
    from transformers import Trainer

    Trainer.train = clock.wrap_train(Trainer.train)
    Trainer._maybe_log_save_evaluate = clock.wrap_pause(Trainer._maybe_log_save_evaluate)
    if sys.argv[2] == "-m":
        sys.argv = [sys.argv[3], *sys.argv[4:]]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[2:]
        runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
