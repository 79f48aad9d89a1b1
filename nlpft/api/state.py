"""What a run may change in the process that called it, put back afterwards.

A command-line run owns its process; a call of the Python API shares it with the caller,
who may call again. Training sets torch's thread count, seeds every random generator
(the Hugging Face Trainer seeds Python's, numpy's and torch's global ones), quietens
loggers, and installs signal handlers for its checkpoints; a run that stops half-way
(bad input, a crash, Ctrl-C) may not undo them. `process_state_kept` records these before
the call and restores them after it, however it ends:

- torch: the intra-op thread count, the CPU (and initialised CUDA) random states, the
  grad mode and the default dtype (only when torch was imported before the call: a torch
  the call imported starts from its defaults, which the call may have changed: see
  `import_torch_first`);
- Python's `random` and numpy's global random state;
- the level, handlers, propagation and disabled flag of every logger that existed, the
  global `logging.disable` level and the `warnings` filters;
- the handlers of every signal that has one;
- the environment variables.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import sys
import warnings


@contextlib.contextmanager
def process_state_kept(import_torch_first: bool = False):
    """Restore the process-wide state listed in the module docstring on the way out.
    `import_torch_first`: import torch before recording, for a call that will import it
    anyway, so its thread count and random state are recorded too."""
    if import_torch_first:
        import torch  # noqa: F401
    restores = [_keep_environment(), _keep_signal_handlers(), _keep_logging(), _keep_python_random(),
                _keep_numpy_random(), _keep_torch()]
    try:
        yield
    finally:
        for restore in reversed(restores):
            restore()


def _keep_environment():
    saved = dict(os.environ)

    def restore() -> None:
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        for name, value in saved.items():
            if os.environ.get(name) != value:
                os.environ[name] = value

    return restore


def _keep_signal_handlers():
    saved = {}
    for sig in signal.valid_signals():
        with contextlib.suppress(ValueError, OSError):
            handler = signal.getsignal(sig)
            if handler is not None:  # None: installed outside Python, which Python cannot reinstall
                saved[sig] = handler

    def restore() -> None:
        for sig, handler in saved.items():
            if signal.getsignal(sig) is not handler:
                with contextlib.suppress(ValueError, OSError):  # not the main thread, or an uncatchable signal
                    signal.signal(sig, handler)

    return restore


def _keep_logging():
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    saved = [(logger, logger.level, list(logger.handlers), logger.propagate, logger.disabled) for logger in loggers]
    disabled_below = logging.root.manager.disable
    warning_filters = warnings.catch_warnings()  # the filters and showwarning, put back on exit
    warning_filters.__enter__()

    def restore() -> None:
        for logger, level, handlers, propagate, disabled in saved:
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate = propagate
            logger.disabled = disabled
        logging.disable(disabled_below)
        warning_filters.__exit__(None, None, None)

    return restore


def _keep_python_random():
    saved = random.getstate()
    return lambda: random.setstate(saved)


def _keep_numpy_random():
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return lambda: None
    saved = numpy.random.get_state()
    return lambda: numpy.random.set_state(saved)


def _keep_torch():
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "get_num_threads"):  # absent, or only half imported
        return lambda: None
    threads = torch.get_num_threads()
    cpu_random = torch.get_rng_state()
    cuda_random = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    grad_enabled = torch.is_grad_enabled()
    default_dtype = torch.get_default_dtype()

    def restore() -> None:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        torch.set_rng_state(cpu_random)
        if cuda_random is not None:
            torch.cuda.set_rng_state_all(cuda_random)
        torch.set_grad_enabled(grad_enabled)
        torch.set_default_dtype(default_dtype)

    return restore
