"""GloVe's AdaGrad update compiled with numba: one pair at a time, Hogwild over threads.

This is the update of `nlpft.embeddings.glove` (and of the Stanford C `glove`) applied pair
by pair, the way glove.c does it, instead of in numpy mini-batches: with nothing to gather
and scatter, an epoch on austen+kjv takes a quarter of the numpy step's CPU time.
Importing this module imports numba (~130 MiB resident); `glove.py` does so only when
training starts, and falls back to numpy when numba is not installed.

The machine code is cached on disk (numba's `cache=True`): next to this file when its
`__pycache__` is writable, otherwise in the user's cache directory (~/.cache/numba), or
where NUMBA_CACHE_DIR points. When no such place is writable the kernel is compiled in
every run instead (a few seconds), with no error.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

#: fastmath without `nnan`/`ninf`: the kernel must still see a non-finite diff to skip its
#: pair (with full fastmath LLVM may assume isfinite() is always true); `reassoc` is what
#: lets the dot products and row updates run in SIMD lanes
FAST_MATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
#: numpy's error model: x / 0 gives inf instead of raising ZeroDivisionError (the AdaGrad
#: sums start at 1 and only grow, so it never happens); Python's model puts a check in
#: front of every division, which keeps LLVM from vectorizing the update loop (austen+kjv:
#: 2.4 s of CPU per epoch with the checks, 1.15 s without)
OPTIONS = {"nogil": True, "fastmath": FAST_MATH, "error_model": "numpy"}


def _jit(**options):
    """njit with an on-disk cache where numba finds a writable place for one."""
    def decorate(func):
        try:
            return njit(cache=True, **options)(func)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return njit(cache=False, **options)(func)
    return decorate


@_jit(**OPTIONS)
def _train_range(params, gradsq, rows, cols, values, order, start, stop,
                 vocab_size, x_max, alpha, eta, grad_clip):
    """Update on pairs order[start:stop] in turn; returns their summed cost 0.5 * f * diff^2.

    params/gradsq: (2V, D+1) float32, word rows then context rows, the bias in the last
    column. rows/cols/values: the co-occurrence entries, read at the positions in `order`.
    """
    dim = params.shape[1] - 1
    clip = np.float32(grad_clip * eta)
    cost = 0.0
    for k in range(start, stop):
        entry = order[k]
        i = rows[entry]
        j = cols[entry] + vocab_size
        x = values[entry]
        w_i = params[i]
        w_j = params[j]
        diff = w_i[dim] + w_j[dim] - np.float32(np.log(x))
        for t in range(dim):
            diff += w_i[t] * w_j[t]
        if not np.isfinite(diff):  # glove.c skips such a pair
            continue
        weight = np.float32(min(x / x_max, np.float32(1.0)) ** alpha)
        fdiff = weight * diff
        cost += 0.5 * fdiff * diff
        fdiff *= eta
        g_i = gradsq[i]
        g_j = gradsq[j]
        for t in range(dim):
            # both steps from the values before this pair's update, clipped as in glove.c
            step_i = min(max(fdiff * w_j[t], -clip), clip)
            step_j = min(max(fdiff * w_i[t], -clip), clip)
            w_i[t] -= step_i / np.sqrt(g_i[t])
            w_j[t] -= step_j / np.sqrt(g_j[t])
            g_i[t] += step_i * step_i
            g_j[t] += step_j * step_j
        # biases: not clipped, but scaled by eta (see glove.py's module doc)
        w_i[dim] -= fdiff / np.sqrt(g_i[dim])
        w_j[dim] -= fdiff / np.sqrt(g_j[dim])
        g_i[dim] += fdiff * fdiff
        g_j[dim] += fdiff * fdiff
    return cost


@_jit(**OPTIONS, parallel=True)
def _train_chunks(params, gradsq, rows, cols, values, order, n_chunks,
                  vocab_size, x_max, alpha, eta, grad_clip):
    n = order.shape[0]
    cost = 0.0
    # Hogwild, as the C reference: each thread takes a contiguous chunk of the shuffled
    # pairs and updates the shared rows without locks. Two threads that touch one row at
    # the same moment may lose part of one update (a race glove.c has too, and SGD
    # tolerates); the result then depends on thread timing, so only 1 thread reproduces.
    for chunk in prange(n_chunks):
        cost += _train_range(params, gradsq, rows, cols, values, order,
                             chunk * n // n_chunks, (chunk + 1) * n // n_chunks,
                             vocab_size, x_max, alpha, eta, grad_clip)
    return cost


def train_pairs(params: np.ndarray, gradsq: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                values: np.ndarray, order: np.ndarray, *, vocab_size: int, x_max: float, alpha: float,
                learning_rate: float, grad_clip: float, threads: int) -> float:
    """Train on the pairs at positions `order`: in that order with threads=1, else cut into
    `threads` contiguous chunks that run at once (one after the other where numba has fewer
    threads: NUMBA_NUM_THREADS, by default the CPUs this process may use). Updates params
    and gradsq in place; returns the summed cost."""
    n_chunks = max(1, min(threads, order.shape[0]))
    numba.set_num_threads(min(n_chunks, numba.config.NUMBA_NUM_THREADS))
    f32 = np.float32
    # np.asarray: memmaps become plain array views, so one compiled signature serves both
    return float(_train_chunks(params, gradsq, np.asarray(rows), np.asarray(cols), np.asarray(values),
                               order, n_chunks, vocab_size, f32(x_max), f32(alpha), f32(learning_rate),
                               f32(grad_clip)))
