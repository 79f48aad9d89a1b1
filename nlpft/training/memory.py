"""`--max-memory`: a cap on the memory of a whole training run, not just one table.

`MemoryCap` is entered around a training command. Up front it refuses a cap below what
the process already uses. During the run a daemon thread samples the process's memory
every `SAMPLE_SECONDS`; past the cap it sends the main thread SIGUSR1, whose handler
raises `ResourceLimitError` naming the cap, the memory in use and the phase the runner
last announced with `set_phase` (tokenizer training, encoding, training, ...). The error
travels like any bad-input error: exit code 2, and the run's `RunOutput` removes what
it half wrote.

What counts: the process's private resident memory (Linux RssAnon: RSS less the pages
backed by files). Memory-mapped corpus ids and shared libraries are page cache the OS can
drop at will, so a run reading a large memory-mapped corpus is not stopped for them.

Limits: the handler runs between Python bytecodes, so a single long native call (a
tokenizer trainer in Rust, one large tensor operation) can overshoot the cap until it
returns. RLIMIT_AS is not used: torch reserves large virtual ranges it never touches.
"""

from __future__ import annotations

import signal
import threading

from nlpft.errors import ResourceLimitError

GIB = 1 << 30
MIB = 1 << 20
#: how often the memory is sampled
SAMPLE_SECONDS = 0.2
#: the cap when a command is given no --max-memory: this share of physical memory, so a
#: runaway run stops with a clear message instead of being killed by the kernel
DEFAULT_SHARE_OF_PHYSICAL = 0.8

_active: MemoryCap | None = None


def private_memory_bytes() -> int:
    """Resident memory of this process not backed by files (RSS where that is not known)."""
    import psutil

    info = psutil.Process().memory_info()
    return info.rss - getattr(info, "shared", 0)


def default_cap_gib() -> float:
    import psutil

    return DEFAULT_SHARE_OF_PHYSICAL * psutil.virtual_memory().total / GIB


def set_phase(name: str) -> None:
    """Tell the active cap (if any) what the run is doing now, for its error message."""
    if _active is not None:
        _active.phase = name


class MemoryCap:
    """Context manager: stop the run with `ResourceLimitError` once its private memory
    passes `cap_gib` GiB (None: `DEFAULT_SHARE_OF_PHYSICAL` of physical memory)."""

    def __init__(self, cap_gib: float | None, flag: str = "--max-memory"):
        if cap_gib is not None and not cap_gib > 0:
            raise ResourceLimitError(f"{flag} must be a positive number of GiB (got {cap_gib})")
        self.explicit = cap_gib is not None
        self.cap_gib = cap_gib if cap_gib is not None else default_cap_gib()
        self.cap_bytes = int(self.cap_gib * GIB)
        self.flag = flag
        self.phase = "starting up"
        self.peak_bytes = 0
        self._over: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous_handler = None

    def _describe_cap(self) -> str:
        if self.explicit:
            return f"{self.flag} {self.cap_gib:g} GiB ({self.cap_bytes / MIB:,.0f} MiB)"
        return f"the default cap of {DEFAULT_SHARE_OF_PHYSICAL:.0%} of physical memory ({self.cap_gib:.1f} GiB; set {self.flag})"

    def __enter__(self) -> MemoryCap:
        global _active
        in_use = private_memory_bytes()
        if in_use >= self.cap_bytes:
            raise ResourceLimitError(
                f"{self._describe_cap()} is below the {in_use / MIB:.0f} MiB this process uses before reading "
                f"any data; raise {self.flag}"
            )
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGUSR1, self._on_signal)
            self._thread = threading.Thread(target=self._watch, name="nlpft-memory-cap", daemon=True)
            self._thread.start()
        _active = self
        return self

    def __exit__(self, *exc_info) -> None:
        global _active
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            signal.signal(signal.SIGUSR1, self._previous_handler)
        _active = None

    def _watch(self) -> None:
        main = threading.main_thread().ident
        while not self._stop.wait(SAMPLE_SECONDS):
            used = private_memory_bytes()
            self.peak_bytes = max(self.peak_bytes, used)
            if used > self.cap_bytes:
                self._over = used
                signal.pthread_kill(main, signal.SIGUSR1)
                return

    def _on_signal(self, signum, frame) -> None:
        if self._over is None or self._stop.is_set():
            return
        raise ResourceLimitError(
            f"the run used {self._over / MIB:,.0f} MiB while {self.phase}, more than {self._describe_cap()}; "
            f"stopped; raise {self.flag}, or make the run smaller (batch size, model size, "
            "vocabulary)"
        )
