"""GloVe training on a co-occurrence matrix, vectorised in torch, with pickle-free checkpoints.

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
1024: the gathered rows, ~1.6 MiB, stay in L2) is done with a handful of torch ops:
one `index_select` gathers parameters and AdaGrad state of both words (they live side by
side in one (2V, 2, dim+1) tensor), and one `index_add_` writes both updates back.  Pairs
that share a word inside a batch add their updates, like lock-free Hogwild threads in the C
code.  With `threads` > 1 that many Python threads run batches concurrently (torch releases
the GIL inside its kernels), each with one intra-op thread.

Order: the pairs are cut into blocks of 4096 consecutive entries; each epoch permutes the
blocks and then every super-batch of 64 blocks (262,144 pairs) with generators seeded from
(seed, epoch, super-batch).  That is a full shuffle for the optimizer's purposes, costs a
fraction of a global 40M-element permutation, and makes a resumed run replay the same order.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from nlpft.embeddings.cooccurrence import CooccurrenceMatrix
from nlpft.errors import UserInputError
from nlpft.training.divergence import check_loss, check_weights
from nlpft.training.weights import save_file

CHECKPOINT_FORMAT = 1
#: consecutive pairs that move together when an epoch is shuffled
BLOCK = 4096
#: blocks per super-batch: the unit that is gathered, fully shuffled and handed to a thread
BLOCKS_PER_SUPERBATCH = 64
#: glove.c's grad_clip_value: each component of fdiff * w is clipped to +-this
GRAD_CLIP = 100.0
#: config fields a checkpoint must share with the run that resumes it
_MUST_MATCH = ("dim", "x_max", "alpha", "learning_rate", "batch_size", "seed")


@dataclass
class GloveConfig:
    dim: int = 100
    epochs: int = 15
    x_max: float = 10.0
    alpha: float = 0.75
    learning_rate: float = 0.05
    batch_size: int = 1024  # pairs per update; 1024 measured fastest on 2 cores (L2-sized rows)
    threads: int = 2
    seed: int = 1

    def validate(self) -> None:
        for name in ("dim", "epochs", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise UserInputError(f"GloVe {name} must be at least 1 (got {getattr(self, name)})")
        if self.x_max <= 0 or self.learning_rate <= 0:
            raise UserInputError("GloVe x_max and learning rate must be positive")


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
        # (2V, 2, D+1): row v < V is word v, row V + v is context word v;
        # [:, 0] = vector and bias (last column), [:, 1] = AdaGrad squared-gradient sums
        self.state = torch.empty(2 * V, 2, D + 1, dtype=torch.float32)
        gen = torch.Generator().manual_seed(_seed_for(config.seed, 0x61_07e))
        self.state[:, 0].uniform_(-0.5 / (D + 1), 0.5 / (D + 1), generator=gen)
        self.state[:, 1].fill_(1.0)
        self.losses: list[float] = []
        self.epochs_done = 0

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
        step_counter = itertools.count()
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(1)  # parallelism comes from our own threads, one kernel each
        try:
            while self.epochs_done < cfg.epochs:
                epoch = self.epochs_done
                loss, complete = self._run_epoch(epoch, progress, step_counter, max_steps)
                self._check_diverged(epoch, loss)
                self.losses.append(loss)
                if not complete:
                    break
                self.epochs_done += 1
                if ckpt is not None:
                    self._save_checkpoint(ckpt)
                if on_epoch_end is not None:
                    on_epoch_end(self.epochs_done, loss)
        finally:
            torch.set_num_threads(previous_threads)
        return self.vectors()

    def _check_diverged(self, epoch: int, loss: float) -> None:
        """Once an epoch: its loss and every parameter (a pass as cheap as one mini-batch)."""
        where, hint = f"epoch {epoch + 1}", "lower --glove-lr"
        check_loss(loss, where, hint=hint)
        check_weights([("vectors and biases", self.state[:, 0])], where, hint=hint)

    def vectors(self) -> np.ndarray:
        """W + W~ without biases (glove.c -model 2), (vocab_size, dim) float32."""
        V, D = self.vocab_size, self.config.dim
        return (self.state[:V, 0, :D] + self.state[V:, 0, :D]).numpy().copy()

    # ------------------------------------------------------------------ epoch

    def _superbatches(self, epoch: int) -> list[np.ndarray]:
        """This epoch's block order, cut into super-batches (arrays of block numbers)."""
        n_blocks = -(-self.cooc.nnz // BLOCK)
        order = np.random.default_rng(_seed_for(self.config.seed, epoch, 0)).permutation(n_blocks)
        return [order[i:i + BLOCKS_PER_SUPERBATCH] for i in range(0, n_blocks, BLOCKS_PER_SUPERBATCH)]

    def _gather(self, epoch: int, index: int, blocks: np.ndarray):
        """Pairs of one super-batch in their shuffled order: (rows, cols, log X, f(X))."""
        n = self.cooc.nnz
        idx = (blocks[:, None].astype(np.int64) * BLOCK + np.arange(BLOCK)).ravel()  # (blocks*BLOCK,)
        if blocks.max() == (n - 1) // BLOCK:  # the last block is partial
            idx = idx[idx < n]
        gen = torch.Generator().manual_seed(_seed_for(self.config.seed, epoch, index + 1))
        idx = idx[torch.randperm(idx.size, generator=gen).numpy()]
        rows = torch.from_numpy(np.asarray(self.cooc.rows[idx], dtype=np.int64))
        cols = torch.from_numpy(np.asarray(self.cooc.cols[idx], dtype=np.int64))
        cols += self.vocab_size  # context vectors live in rows V..2V-1
        x = torch.from_numpy(np.asarray(self.cooc.values[idx], dtype=np.float32))
        weight = torch.clamp_max(x / self.config.x_max, 1.0).pow_(self.config.alpha)
        return rows, cols, torch.log(x), weight

    def _run_epoch(self, epoch: int, progress, step_counter, max_steps) -> tuple[float, bool]:
        """One pass over all pairs; returns (mean loss, whether the epoch ran to the end)."""
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
                    cost = torch.zeros((), dtype=torch.float64)
                    for s in range(0, rows.shape[0], cfg.batch_size):
                        if max_steps is not None and next(step_counter) >= max_steps:
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

    def _step(self, rows: torch.Tensor, cols: torch.Tensor, logx: torch.Tensor,
              weight: torch.Tensor) -> torch.Tensor:
        """One AdaGrad update for B pairs; returns their summed cost 0.5 * f * diff^2."""
        B = rows.shape[0]
        D = self.config.dim
        eta = self.config.learning_rate
        state = self.state
        idx = torch.cat((rows, cols))  # (2B,) words then contexts
        g = state.index_select(0, idx)  # (2B, 2, D+1) copies: params and gradsq
        p, gradsq = g[:, 0], g[:, 1]  # (2B, D+1) each
        w, c = p[:B, :D], p[B:, :D]  # (B, D) word and context vectors
        diff = torch.linalg.vecdot(w, c) + p[:B, D] + p[B:, D] - logx  # (B,)
        diff.nan_to_num_(0.0, 0.0, 0.0)  # glove.c skips such a pair: zero cost and update
        fdiff = weight * diff
        cost = 0.5 * torch.dot(fdiff, diff)
        neg = fdiff.neg().unsqueeze(1)  # (B, 1): the update is minus the gradient
        # update[:, 0] = -grad / sqrt(gradsq), update[:, 1] = grad^2, for all 2B rows at once
        update = torch.empty(2 * B, 2, D + 1, dtype=torch.float32)
        grad = update[:, 1]  # (2B, D+1) view, holds -grad until squared below
        torch.mul(c, neg, out=grad[:B, :D])  # d loss / d w_i = fdiff * w~_j
        torch.mul(w, neg, out=grad[B:, :D])  # d loss / d w~_j = fdiff * w_i
        grad[:B, D] = neg[:, 0]  # biases: not clipped, but scaled by eta (see module doc)
        grad[B:, D] = neg[:, 0]
        grad[:, :D].clamp_(-GRAD_CLIP, GRAD_CLIP)
        grad.mul_(eta)
        torch.mul(grad, gradsq.pow(-0.5), out=update[:, 0])  # pow(-0.5) is 3x faster than sqrt here
        grad.square_()
        state.view(state.shape[0], -1).index_add_(0, idx, update.view(2 * B, -1))  # (2B, 2*(D+1))
        return cost

    # ------------------------------------------------------------------ checkpoints

    def _arrays(self) -> dict[str, torch.Tensor]:
        V, D = self.vocab_size, self.config.dim
        s = self.state
        return {
            "W": s[:V, 0, :D], "W_context": s[V:, 0, :D], "b": s[:V, 0, D], "b_context": s[V:, 0, D],
            "gradsq_W": s[:V, 1, :D], "gradsq_W_context": s[V:, 1, :D],
            "gradsq_b": s[:V, 1, D], "gradsq_b_context": s[V:, 1, D],
        }

    def _save_checkpoint(self, directory: Path) -> None:
        """Weights first (temp name + os.replace), then the JSON marker that makes it count;
        older checkpoints are removed only after the new marker exists."""
        directory.mkdir(parents=True, exist_ok=True)
        name = f"glove-epoch{self.epochs_done:04d}"
        tensors = {k: v.contiguous() for k, v in self._arrays().items()}
        tmp = directory / f"{name}.safetensors.tmp"
        save_file(tensors, str(tmp))
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
            target.copy_(tensors[key])
        self.epochs_done = int(meta["epochs_done"])
        self.losses = [float(x) for x in meta.get("losses", [])]
