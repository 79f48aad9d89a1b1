"""GloVe training on a co-occurrence matrix, vectorised in numpy, with pickle-free checkpoints.

The model and the update are those of the Stanford C `glove` (current master):

* loss  f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2 with f(x) = min(1, (x / x_max)^alpha);
  the reported loss is the C code's: the mean of 0.5 * f * diff^2 over all pairs;
* AdaGrad with the accumulated squares initialised to 1 (so the first step is the bare
  learning rate) and parameters initialised uniform (rand - 0.5) / (dim + 1) -- the C code
  divides by dim + 1 because it has already counted the bias into `vector_size`;
* each vector-gradient component fdiff * w is clipped to [-100, 100] before the learning rate
  is applied (`grad_clip_value` in glove.c); bias gradients are not clipped;
* the bias step is eta * fdiff / sqrt(gradsq) with gradsq += (eta * fdiff)^2, as in glove.c
  before gradient clipping was added.  Current glove.c master drops eta from the bias step
  (its clipping rewrite moved `fdiff *= eta` away); one pair at a time that is tolerable, but
  with mini-batches, where a frequent word's bias receives hundreds of summed steps at once,
  it diverges (austen+kjv: first-epoch loss 23 instead of 0.09, analogy accuracy 0.1%
  instead of 5%);
* a pair whose diff is not finite is skipped (zero update, zero cost), as in glove.c;
* the output is W + W~ (glove.c's default `-model 2`);
* an epoch whose mean loss is not finite, or that leaves a parameter that is not finite,
  stops training with `TrainingDiverged` (lower --glove-lr) before its checkpoint is written.

Why it is fast in Python: instead of one pair at a time, a mini-batch of B pairs (default
1024: the gathered rows, ~1.6 MiB, stay in L2) is done with a handful of numpy operations on
contiguous (2B, dim+1) arrays: one `take` gathers the parameters of both words (word rows
and context rows live in one (2V, dim+1) array, the AdaGrad sums in a second one), and the
updates are added back row by row with repeated words summed (`_add_rows`).  Pairs that
share a word inside a batch add their updates, like lock-free Hogwild threads in the C code.
With `threads` > 1 that many Python threads run batches concurrently (numpy releases the
GIL inside its array loops).  numpy, not torch: torch's import alone would hold ~170 MiB of
resident memory for the whole run, half of what the C tools need in all.

The compiled kernel: with numba installed (`pip install 'nlpft[fast]'`) the same update runs
pair by pair, as glove.c does it, in `glove_kernel.py` (Hogwild over numba threads); an
epoch then takes about a quarter of the numpy step's CPU time. `GloveConfig.kernel` picks one:
"auto" (numba when it imports, else numpy), "numba" or "numpy". The two agree: with one
thread and batch_size 1 they give the same vectors up to float rounding.

Order: the pairs are cut into blocks of 4096 consecutive entries; each epoch permutes the
blocks and then every super-batch of 64 blocks (262,144 pairs) with generators seeded from
(seed, epoch, super-batch).  That is a full shuffle for the optimizer's purposes, costs a
fraction of a global 40M-element permutation, and makes a resumed run replay the same order.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from nlpft.embeddings.cooccurrence import CooccurrenceMatrix
from nlpft.errors import UserInputError
from nlpft.training.divergence import check_loss, check_weights
from nlpft.training.weights import save_numpy_file

CHECKPOINT_FORMAT = 1
#: consecutive pairs that move together when an epoch is shuffled
BLOCK = 4096
#: blocks per super-batch: the unit that is gathered, fully shuffled and handed to a thread
BLOCKS_PER_SUPERBATCH = 64
#: glove.c's grad_clip_value: each component of fdiff * w is clipped to +-this
GRAD_CLIP = 100.0
#: config fields a checkpoint must share with the run that resumes it
_MUST_MATCH = ("dim", "x_max", "alpha", "learning_rate", "batch_size", "seed")
KERNELS = ("auto", "numba", "numpy")
FAST_EXTRA_HINT = "pip install 'nlpft[fast]'"


@dataclass
class GloveConfig:
    dim: int = 100
    epochs: int = 15
    x_max: float = 10.0
    alpha: float = 0.75
    learning_rate: float = 0.05
    batch_size: int = 1024  # pairs per numpy update; 1024 measured fastest on 2 cores (L2-sized rows)
    threads: int = 2
    seed: int = 1
    kernel: str = "auto"  # see KERNELS and the module doc

    def validate(self) -> None:
        for name in ("dim", "epochs", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise UserInputError(f"GloVe {name} must be at least 1 (got {getattr(self, name)})")
        if self.x_max <= 0 or self.learning_rate <= 0:
            raise UserInputError("GloVe x_max and learning rate must be positive")
        if self.kernel not in KERNELS:
            raise UserInputError(f"GloVe kernel must be one of {', '.join(KERNELS)} (got {self.kernel!r})")


def load_compiled_kernel():
    """The numba kernel module, or None when numba is not installed (or does not import)."""
    try:
        return importlib.import_module("nlpft.embeddings.glove_kernel")
    except ImportError:
        return None


def _distinct_rounds(index: np.ndarray) -> list[np.ndarray]:
    """Positions of `index` in rounds whose values are distinct: round k holds the k-th
    occurrence of every value.  numpy's `a[index] += b` keeps one row of a repeated index;
    applied round by round every row is added (torch's index_add_ in one call; np.add.at
    is 10x slower on rows)."""
    order = np.argsort(index)
    sorted_index = index[order]
    first = np.empty(index.size, bool)
    first[0] = True
    np.not_equal(sorted_index[1:], sorted_index[:-1], out=first[1:])
    if first.all():
        return [order]
    starts = np.flatnonzero(first)
    rank = np.arange(index.size) - np.repeat(starts, np.diff(np.append(starts, index.size)))
    by_rank = np.argsort(rank)
    return np.split(order[by_rank], np.cumsum(np.bincount(rank))[:-1])


class _StepBudget:
    """The mini-batches max_steps still allows, shared by the epochs and threads of one
    train() call (no limit when max_steps is None)."""

    def __init__(self, max_steps: int | None):
        self.left = max_steps
        self._lock = threading.Lock()

    def take(self, steps: int) -> int:
        """Up to `steps` steps; returns how many were granted."""
        if self.left is None:
            return steps
        with self._lock:
            granted = min(steps, self.left)
            self.left -= granted
        return granted


def _seed_for(*parts: int) -> int:
    """A 63-bit seed from a tuple of ints (stable across runs and platforms)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


class GloveTrainer:
    """Trains GloVe vectors on a `CooccurrenceMatrix`; see the module docstring."""

    def __init__(self, cooc: CooccurrenceMatrix, config: GloveConfig):
        config.validate()
        if cooc.nnz == 0:
            raise UserInputError("the co-occurrence matrix is empty (no word pair was seen); "
                                 "use a larger corpus or lower --min-count")
        self.cooc = cooc
        self.config = config
        self.vocab_size = V = int(cooc.vocab_size)
        D = config.dim
        # row v < V is word v, row V + v is context word v; the last column is the bias
        rng = np.random.default_rng(_seed_for(config.seed, 0x61_07e))
        self.params = rng.random((2 * V, D + 1), dtype=np.float32)
        self.params -= 0.5
        self.params /= D + 1
        self.gradsq = np.ones((2 * V, D + 1), dtype=np.float32)  # AdaGrad's squared-gradient sums
        self.losses: list[float] = []
        self.epochs_done = 0
        self._compiled = None if config.kernel == "numpy" else load_compiled_kernel()
        if config.kernel == "numba" and self._compiled is None:
            raise UserInputError(f"the numba GloVe kernel needs numba: {FAST_EXTRA_HINT}")

    @property
    def kernel(self) -> str:
        """"numba" or "numpy": which update this trainer runs."""
        return "numpy" if self._compiled is None else "numba"

    def kernel_note(self) -> str:
        """One line for the run's log: the kernel, and how to get the fast one."""
        if self._compiled is not None:
            return "glove: training with the compiled numba kernel"
        if self.config.kernel == "numpy":
            return "glove: training with the numpy kernel"
        return f"glove: numba is not installed, training with the numpy kernel (about 4x slower; {FAST_EXTRA_HINT})"

    # ------------------------------------------------------------------ public

    def train(self, checkpoint_dir: str | None = None, resume: bool = False,
              on_epoch_end: Callable[[int, float], None] | None = None,
              progress: Callable[[int], None] | None = None,
              max_steps: int | None = None) -> np.ndarray:
        """Run the remaining epochs and return W + W~ as a (vocab_size, dim) float32 array.

        checkpoint_dir: after every epoch the full training state is written there
        (safetensors + JSON); resume=True continues from the latest complete checkpoint in it
        (a run with threads=1 then ends with the very vectors of an uninterrupted run).
        on_epoch_end(epochs_completed, mean_loss) is called after each epoch (1-based count).
        progress(n_pairs) reports pairs processed since the last call, from the calling thread.
        max_steps: stop after this many mini-batches in total (a smoke-test limit); the
        partial epoch's loss is recorded but no checkpoint is written for it.
        """
        cfg = self.config
        ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if resume and ckpt is not None:
            self._load_latest(ckpt)
        budget = _StepBudget(max_steps)
        while self.epochs_done < cfg.epochs:
            epoch = self.epochs_done
            loss, complete = self._run_epoch(epoch, progress, budget)
            self._check_diverged(epoch, loss)
            self.losses.append(loss)
            if not complete:
                break
            self.epochs_done += 1
            if ckpt is not None:
                self._save_checkpoint(ckpt)
            if on_epoch_end is not None:
                on_epoch_end(self.epochs_done, loss)
        return self.vectors()

    def _check_diverged(self, epoch: int, loss: float) -> None:
        """Once an epoch: its loss and every parameter (a pass as cheap as one mini-batch)."""
        where, hint = f"epoch {epoch + 1}", "lower --glove-lr"
        check_loss(loss, where, hint=hint)
        check_weights([("vectors and biases", self.params)], where, hint=hint)

    def vectors(self) -> np.ndarray:
        """W + W~ without biases (glove.c -model 2), (vocab_size, dim) float32."""
        V, D = self.vocab_size, self.config.dim
        return self.params[:V, :D] + self.params[V:, :D]

    # ------------------------------------------------------------------ epoch

    def _superbatches(self, epoch: int) -> list[np.ndarray]:
        """This epoch's block order, cut into super-batches (arrays of block numbers)."""
        n_blocks = -(-self.cooc.nnz // BLOCK)
        order = np.random.default_rng(_seed_for(self.config.seed, epoch, 0)).permutation(n_blocks)
        return [order[i:i + BLOCKS_PER_SUPERBATCH] for i in range(0, n_blocks, BLOCKS_PER_SUPERBATCH)]

    def _pair_order(self, epoch: int, index: int, blocks: np.ndarray) -> np.ndarray:
        """Positions of one super-batch's pairs in the co-occurrence arrays, shuffled."""
        n = self.cooc.nnz
        idx = (blocks[:, None].astype(np.int64) * BLOCK + np.arange(BLOCK)).ravel()  # (blocks*BLOCK,)
        if blocks.max() == (n - 1) // BLOCK:  # the last block is partial
            idx = idx[idx < n]
        shuffle = np.random.default_rng(_seed_for(self.config.seed, epoch, index + 1))
        return idx[shuffle.permutation(idx.size)]

    def _gather(self, epoch: int, index: int, blocks: np.ndarray):
        """Pairs of one super-batch in their shuffled order: (rows, cols, log X, f(X))."""
        idx = self._pair_order(epoch, index, blocks)
        rows = self.cooc.rows[idx].astype(np.intp)
        cols = self.cooc.cols[idx].astype(np.intp)
        cols += self.vocab_size  # context vectors live in rows V..2V-1
        x = np.asarray(self.cooc.values[idx], dtype=np.float32)
        weight = np.minimum(x / np.float32(self.config.x_max), np.float32(1.0))
        weight **= np.float32(self.config.alpha)
        return rows, cols, np.log(x), weight

    def _run_epoch(self, epoch: int, progress, budget: _StepBudget) -> tuple[float, bool]:
        """One pass over all pairs; returns (mean loss, whether the epoch ran to the end)."""
        if self._compiled is not None:
            return self._run_compiled_epoch(epoch, progress, budget)
        cfg = self.config
        superbatches = self._superbatches(epoch)
        n_threads = max(1, min(cfg.threads, len(superbatches)))
        done = [0] * n_threads  # pairs finished per thread (read by this thread for progress)
        costs = [0.0] * n_threads
        stopped = threading.Event()
        errors: list[BaseException] = []

        def worker(t: int) -> None:
            try:
                for index in range(t, len(superbatches), n_threads):
                    rows, cols, logx, weight = self._gather(epoch, index, superbatches[index])
                    cost = 0.0
                    # a diverging run overflows to inf/NaN, which the epoch's checks report in
                    # one line; numpy's warnings would be noise (its error state is per thread)
                    with np.errstate(over="ignore", invalid="ignore"):
                        for s in range(0, rows.shape[0], cfg.batch_size):
                            if not budget.take(1):
                                stopped.set()
                                break
                            e = s + cfg.batch_size
                            cost += self._step(rows[s:e], cols[s:e], logx[s:e], weight[s:e])
                            done[t] += min(e, rows.shape[0]) - s
                    costs[t] += float(cost)
                    if stopped.is_set():
                        return
            except BaseException as exc:  # re-raised in the calling thread
                errors.append(exc)
                stopped.set()

        threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(n_threads)]
        for th in threads:
            th.start()
        reported = 0
        while any(th.is_alive() for th in threads):
            time.sleep(0.1)  # progress is reported from the caller's thread, ~10 times a second
            if progress is not None:
                now = sum(done)
                if now > reported:
                    progress(now - reported)
                    reported = now
        for th in threads:
            th.join()
        if errors:
            raise errors[0]
        if progress is not None and sum(done) > reported:
            progress(sum(done) - reported)
        pairs = max(sum(done), 1)
        return sum(costs) / pairs, not stopped.is_set()

    def _run_compiled_epoch(self, epoch: int, progress, budget: _StepBudget) -> tuple[float, bool]:
        """The epoch of `_run_epoch` through the numba kernel, one super-batch per call, in
        the numpy path's order (a step of the budget is batch_size pairs here too)."""
        cfg = self.config
        cost, pairs = 0.0, 0
        for index, blocks in enumerate(self._superbatches(epoch)):
            order = self._pair_order(epoch, index, blocks)
            steps = -(-order.size // cfg.batch_size)
            granted = budget.take(steps)
            order = order[:granted * cfg.batch_size]
            cost += self._compiled.train_pairs(
                self.params, self.gradsq, self.cooc.rows, self.cooc.cols, self.cooc.values, order,
                vocab_size=self.vocab_size, x_max=cfg.x_max, alpha=cfg.alpha,
                learning_rate=cfg.learning_rate, grad_clip=GRAD_CLIP, threads=cfg.threads)
            pairs += order.size
            if progress is not None:
                progress(order.size)
            if granted < steps:
                return cost / max(pairs, 1), False
        return cost / max(pairs, 1), True

    def _step(self, rows: np.ndarray, cols: np.ndarray, logx: np.ndarray, weight: np.ndarray) -> float:
        """One AdaGrad update for B pairs; returns their summed cost 0.5 * f * diff^2."""
        B = rows.shape[0]
        D = self.config.dim
        eta = np.float32(self.config.learning_rate)
        idx = np.concatenate((rows, cols))  # (2B,) words then contexts
        p = self.params.take(idx, axis=0)  # (2B, D+1) copies: vectors and biases
        gradsq = self.gradsq.take(idx, axis=0)  # (2B, D+1)
        diff = np.einsum("ij,ij->i", p[:B, :D], p[B:, :D])  # (B,) w_i . w~_j
        diff += p[:B, D]
        diff += p[B:, D]
        diff -= logx
        np.nan_to_num(diff, copy=False, nan=0.0, posinf=0.0, neginf=0.0)  # glove.c skips such a pair
        fdiff = weight * diff
        cost = 0.5 * float(np.dot(fdiff, diff))
        neg = fdiff.reshape(B, 1) * -eta  # (B, 1): the step is minus the gradient
        # step[:, :D] = -eta * clip(grad): d loss / d w_i = fdiff * w~_j and the other way round
        step = np.empty_like(p)  # (2B, D+1)
        np.multiply(p[B:], neg, out=step[:B])
        np.multiply(p[:B], neg, out=step[B:])
        np.clip(step, -GRAD_CLIP * eta, GRAD_CLIP * eta, out=step)
        step[:B, D] = neg[:, 0]  # biases: not clipped, but scaled by eta (see module doc)
        step[B:, D] = neg[:, 0]
        np.sqrt(gradsq, out=gradsq)
        np.divide(step, gradsq, out=gradsq)  # gradsq now holds the parameter update
        np.square(step, out=step)  # and step the increment of the squared-gradient sums
        for pick in _distinct_rounds(idx):
            target = idx[pick]
            self.params[target] += gradsq[pick]
            self.gradsq[target] += step[pick]
        return cost

    # ------------------------------------------------------------------ checkpoints

    def _arrays(self) -> dict[str, np.ndarray]:
        V, D = self.vocab_size, self.config.dim
        p, g = self.params, self.gradsq
        return {
            "W": p[:V, :D], "W_context": p[V:, :D], "b": p[:V, D], "b_context": p[V:, D],
            "gradsq_W": g[:V, :D], "gradsq_W_context": g[V:, :D],
            "gradsq_b": g[:V, D], "gradsq_b_context": g[V:, D],
        }

    def _save_checkpoint(self, directory: Path) -> None:
        """Weights first (temp name + os.replace), then the JSON marker that makes it count;
        older checkpoints are removed only after the new marker exists."""
        directory.mkdir(parents=True, exist_ok=True)
        name = f"glove-epoch{self.epochs_done:04d}"
        tensors = {k: np.ascontiguousarray(v) for k, v in self._arrays().items()}
        tmp = directory / f"{name}.safetensors.tmp"
        save_numpy_file(tensors, str(tmp))
        os.replace(tmp, directory / f"{name}.safetensors")
        meta = {
            "format_version": CHECKPOINT_FORMAT, "epochs_done": self.epochs_done,
            "weights": f"{name}.safetensors", "config": asdict(self.config),
            "vocab_size": self.vocab_size, "nnz": self.cooc.nnz, "losses": self.losses,
        }
        tmp = directory / f"{name}.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp, directory / f"{name}.json")
        for old in directory.glob("glove-epoch*.json"):
            if old.name != f"{name}.json":
                old.unlink(missing_ok=True)
                (directory / (old.name[:-len(".json")] + ".safetensors")).unlink(missing_ok=True)

    def _load_latest(self, directory: Path) -> None:
        """Restore state from the newest complete checkpoint; no checkpoint: start fresh."""
        markers = sorted(directory.glob("glove-epoch*.json")) if directory.is_dir() else []
        if not markers:
            return
        meta_path = markers[-1]
        try:
            meta = json.loads(meta_path.read_text())
            tensors = load_file(str(directory / meta["weights"]))
        except (OSError, ValueError, KeyError) as exc:
            raise UserInputError(f"cannot read the GloVe checkpoint {meta_path} ({exc}); delete "
                                 f"{directory} to start over") from exc
        mine = asdict(self.config)
        theirs = meta.get("config", {})
        wrong = [k for k in _MUST_MATCH if theirs.get(k) != mine[k]]
        if meta.get("vocab_size") != self.vocab_size:
            wrong.append(f"vocab_size ({meta.get('vocab_size')} vs {self.vocab_size})")
        if meta.get("nnz") != self.cooc.nnz:
            wrong.append(f"co-occurrence pairs ({meta.get('nnz')} vs {self.cooc.nnz})")
        if wrong:
            raise UserInputError(
                f"the GloVe checkpoint in {directory} does not match this run ({', '.join(wrong)} "
                "differ); rerun with the original settings, or delete that directory to start over")
        for key, target in self._arrays().items():
            if key not in tensors or tuple(tensors[key].shape) != tuple(target.shape):
                raise UserInputError(f"the GloVe checkpoint {meta_path} is damaged ({key}); delete "
                                     f"{directory} to start over")
            target[...] = tensors[key]
        self.epochs_done = int(meta["epochs_done"])
        self.losses = [float(x) for x in meta.get("losses", [])]
