"""Word2Vec and fastText through gensim, with pickle-free epoch checkpoints.

gensim does the training (in its fast `corpus_file` mode, which reads nlpft's token file
directly); nlpft adds what gensim leaves to the caller: a progress bar, a checkpoint after
every epoch in safetensors + JSON (gensim's own `save` pickles), and resume from the last
finished epoch with the learning-rate schedule continued where it stopped. Vectors that are
no longer finite after an epoch stop the run (`TrainingDiverged`) before that epoch's
checkpoint is written.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from gensim.models import FastText, Word2Vec
from gensim.models.callbacks import CallbackAny2Vec
from safetensors.numpy import load_file

from nlpft.embeddings.config import EmbeddingConfig, gensim_kwargs
from nlpft.errors import UserInputError
from nlpft.training.divergence import check_weights
from nlpft.training.weights import save_numpy_file

CHECKPOINT_WEIGHTS = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"

#: gensim's per-second progress line in corpus_file mode
_PROGRESS = re.compile(r"EPOCH (\d+) - PROGRESS: at ([\d.]+)% words")

ProgressFn = Callable[[float], None]  # words done so far, over all epochs


def _trainable_arrays(model: Word2Vec) -> dict[str, np.ndarray]:
    """The arrays that define a model's training state (what resume must restore)."""
    arrays = {}
    if isinstance(model, FastText):
        arrays["vectors_vocab"] = model.wv.vectors_vocab
        arrays["vectors_ngrams"] = model.wv.vectors_ngrams
    else:
        arrays["vectors"] = model.wv.vectors
    if model.negative:
        arrays["syn1neg"] = model.syn1neg
    if model.hs:
        arrays["syn1"] = model.syn1
    return arrays


def _alpha_at_epoch(config: EmbeddingConfig, epoch: int) -> float:
    """Learning rate at the start of `epoch` under gensim's linear decay over all epochs."""
    start = config.learning_rate
    return start - (start - config.min_alpha) * epoch / config.epochs


def save_checkpoint(model: Word2Vec, directory: Path, epochs_done: int, config: EmbeddingConfig) -> None:
    """Write weights then state, each atomically; the state file is the completion marker."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (CHECKPOINT_WEIGHTS + ".tmp")
    save_numpy_file({k: np.ascontiguousarray(v) for k, v in _trainable_arrays(model).items()}, str(tmp))
    os.replace(tmp, directory / CHECKPOINT_WEIGHTS)
    state = {
        "epochs_done": epochs_done,
        "vocab": list(model.wv.index_to_key),
        "config": config.to_dict(),
    }
    tmp = directory / (CHECKPOINT_STATE + ".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, directory / CHECKPOINT_STATE)


def load_checkpoint(model: Word2Vec, directory: Path, config: EmbeddingConfig) -> int:
    """Restore a checkpoint into a model whose vocabulary is built; return epochs done."""
    state_path = directory / CHECKPOINT_STATE
    if not state_path.is_file():
        return 0
    state = json.loads(state_path.read_text())
    saved = dict(state["config"])
    for key in ("epochs", "threads", "max_memory_gb"):  # may change on resume
        saved.pop(key, None)
    current = {k: v for k, v in config.to_dict().items() if k in saved}
    if saved != current:
        changed = sorted(k for k in saved if saved[k] != current.get(k))
        raise UserInputError(
            f"{directory}: the checkpoint was made with other settings ({', '.join(changed)}); "
            "rerun with the same settings, or drop --resume to start over"
        )
    if state["vocab"] != list(model.wv.index_to_key):
        raise UserInputError(
            f"{directory}: the checkpoint's vocabulary does not match this corpus; "
            "resume on the same corpus, or drop --resume to start over"
        )
    arrays = load_file(str(directory / CHECKPOINT_WEIGHTS))
    for name, target in _trainable_arrays(model).items():
        if name not in arrays or arrays[name].shape != target.shape:
            raise UserInputError(f"{directory / CHECKPOINT_WEIGHTS}: missing or mis-shaped {name}; drop --resume")
        target[...] = arrays[name]
    return int(state["epochs_done"])


class _EpochCheckpoint(CallbackAny2Vec):
    def __init__(self, directory: Path | None, first_epoch: int, config: EmbeddingConfig,
                 on_epoch_end: Callable[[int], None] | None):
        self.directory, self.epoch, self.config, self.notify = directory, first_epoch, config, on_epoch_end
        self.epoch_losses: list[float] = []
        self._cumulative = 0.0

    def on_epoch_end(self, model):  # noqa: D401 - gensim hook
        self.epoch += 1
        # gensim keeps a running sum over the whole train() call
        total = float(model.get_latest_training_loss())
        self.epoch_losses.append(total - self._cumulative)
        self._cumulative = total
        # gensim's loss is a float32 running sum, useless as a check; the vectors are not
        check_weights(_trainable_arrays(model).items(), f"epoch {self.epoch}", hint="lower --alpha")
        if self.directory is not None:
            save_checkpoint(model, self.directory, self.epoch, self.config)
        if self.notify is not None:
            self.notify(self.epoch)


class _ProgressLog(logging.Handler):
    """Turns gensim's once-a-second progress log lines into progress callbacks."""

    def __init__(self, first_epoch: int, words_per_epoch: int, progress: ProgressFn):
        super().__init__(logging.INFO)
        self.first_epoch, self.words_per_epoch, self.progress = first_epoch, words_per_epoch, progress

    def emit(self, record: logging.LogRecord) -> None:
        match = _PROGRESS.match(record.getMessage())
        if match:
            epoch, pct = int(match[1]), float(match[2])
            self.progress((self.first_epoch + epoch + pct / 100.0) * self.words_per_epoch)


def train_gensim(
    config: EmbeddingConfig,
    token_file: Path,
    vocabulary: list[str],
    counts: dict[str, int],
    n_tokens: int,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    progress: ProgressFn | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
):
    """Train Word2Vec or fastText on a token file.

    Returns the trained gensim model and the summed training loss of each epoch run here.

    The vocabulary comes from nlpft's own counting pass (so memory can be estimated
    before gensim allocates anything) and is handed to gensim as frequencies.
    """
    model_cls = FastText if config.algo == "fasttext" else Word2Vec
    kwargs = gensim_kwargs(config)
    kwargs["min_count"] = 1  # the vocabulary is already filtered
    kwargs["max_final_vocab"] = None
    model = model_cls(**kwargs)
    model.build_vocab_from_freq({w: counts[w] for w in vocabulary}, corpus_count=0)
    model.corpus_total_words = n_tokens

    first_epoch = load_checkpoint(model, checkpoint_dir, config) if (resume and checkpoint_dir) else 0
    if isinstance(model, FastText) and first_epoch:
        model.wv.adjust_vectors()  # word vectors = own vector + its n-gram vectors
    remaining = config.epochs - first_epoch
    if remaining <= 0:  # killed after the last checkpoint, before publishing
        return model, []

    callback = _EpochCheckpoint(checkpoint_dir, first_epoch, config, on_epoch_end)
    logger = logging.getLogger("gensim.models.word2vec")
    handler = _ProgressLog(first_epoch, n_tokens, progress) if progress else None
    old_level = logger.level
    if handler:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        model.train(
            corpus_file=str(token_file),
            total_words=n_tokens,
            epochs=remaining,
            start_alpha=_alpha_at_epoch(config, first_epoch),
            end_alpha=config.min_alpha,
            compute_loss=True,
            callbacks=[callback],
        )
    finally:
        if handler:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
            logger.propagate = True
    return model, callback.epoch_losses
