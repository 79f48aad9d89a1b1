"""Keep freed memory in the process for reuse instead of handing it back to the kernel.

glibc's malloc serves each allocation above its mmap threshold (which adapts up to 32 MiB)
with a fresh `mmap` and unmaps it on free. A training step allocates and frees hundreds of
activation buffers that size or larger (MiniLM at batch 16 x 256: the attention scores of
one layer are 50 MB), so every step faults in and zeroes millions of fresh pages. On the
2-core machine a quarter of a BBC fine-tuning run's CPU time went to the kernel that way
(137 million page faults). With the thresholds raised, freed buffers stay in the heap and
are reused: a MiniLM training step (16 x 256 tokens, bf16) took 2.36-2.62 s of CPU instead
of 2.74-3.39 s (`benchmarks/finetune/results/levers.md`).

Training commands call `keep_freed_memory()` once at start. It is a no-op off glibc, and
`NLPFT_MALLOC_TUNING=0` turns it off.
"""

from __future__ import annotations

import os
import sys

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # only allocations above 1 GiB get their own mapping
TRIM_THRESHOLD = 2**31 - 1  # never shrink the heap top between steps


def _glibc_function(name: str, *argtypes):
    """glibc's function `name` with its argument types, or None off Linux/glibc (musl and
    others have no such knobs)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        function = getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = [getattr(ctypes, kind) for kind in argtypes]
    return function


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True if applied."""
    if os.environ.get("NLPFT_MALLOC_TUNING") == "0":
        return False
    mallopt = _glibc_function("mallopt", "c_int", "c_int")
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def release_freed_memory() -> bool:
    """Hand the heap's free pages back to the kernel now (glibc's `malloc_trim`); True if done.

    For the end of a phase whose buffers the next phase does not reuse (GloVe's counting
    before its training): with the thresholds `keep_freed_memory` sets, those pages would
    otherwise stay resident under every later phase."""
    malloc_trim = _glibc_function("malloc_trim", "c_size_t")
    return malloc_trim is not None and bool(malloc_trim(0))
