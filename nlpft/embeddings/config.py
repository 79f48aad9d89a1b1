"""The options static vectors are trained with (flags of `nlpft embed train`, each declared
once), and their translation into gensim's switches.

gensim speaks in 0/1 flags (`sg`, `hs`, `negative=0`, `cbow_mean`); nlpft speaks in words
(`architecture="skipgram"`, `loss="hierarchical"`). `gensim_kwargs` is the one place
where one becomes the other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

from nlpft.errors import UserInputError
from nlpft.options import (
    check_options,
    non_negative_float,
    non_negative_int,
    option,
    positive_float,
    positive_int,
    seed_int,
)

ALGORITHMS = ("word2vec", "fasttext", "glove")
ARCHITECTURES = ("skipgram", "cbow")
LOSSES = ("negative", "hierarchical")

# the --help sections of `nlpft embed train`
VOCABULARY = "vocabulary and context"
WORD2VEC = "word2vec and fastText"
FASTTEXT = "fastText"
GLOVE = "GloVe"


@dataclass(frozen=True)
class EmbeddingConfig:
    """The options the vectors are trained with (saved as config.json); each is a flag of
    `nlpft embed train` (see `nlpft.options.option`), which adds the corpus and the output
    (`nlpft.embeddings.options.EmbedTrainOptions`). Fingerprinted: all but --epochs,
    --max-steps, --threads and --max-memory, which a resumed run may change."""

    algo: str = option("word2vec", "algorithm (default: %(default)s)", choices=ALGORITHMS, fingerprinted=True)
    # every algorithm
    dim: int = option(100, "vector dimensions (default: %(default)s)", type=positive_int, group=VOCABULARY,
                      fingerprinted=True)
    window: int | None = option(  # None: 5 for word2vec/fastText, 15 for GloVe (the C default)
        None, "context words on each side (default: 5 for word2vec/fastText, 15 for GloVe)", type=positive_int,
        group=VOCABULARY, fingerprinted=True)
    min_count: int = option(5, "drop words seen fewer times (default: %(default)s)", type=positive_int,
                            group=VOCABULARY, fingerprinted=True)
    max_vocab: int | None = option(None, "keep at most this many most frequent words", type=positive_int,
                                   group=VOCABULARY, fingerprinted=True)
    lowercase: bool = option(True, "keep case", flag="--no-lowercase", group=VOCABULARY, fingerprinted=True)
    threads: int = option(2, "worker threads (default: %(default)s; use 1 with --seed for bit-identical reruns)",
                          type=positive_int, group=VOCABULARY)
    epochs: int | None = option(None, type=positive_int, shared=True)  # None: 5 for word2vec/fastText, 15 for GloVe
    seed: int = option(1, type=seed_int, shared=True, fingerprinted=True)
    max_memory_gb: float = option(8.0, flag="--max-memory", type=positive_float, shared=True)
    max_steps: int | None = option(None, type=positive_int, shared=True)
    # word2vec / fastText
    architecture: str = option("skipgram", "predict context from word (skipgram) or word from context (cbow) "
                                           "(default: %(default)s)", choices=ARCHITECTURES, group=WORD2VEC,
                               fingerprinted=True)
    loss: str = option("negative", "negative sampling or hierarchical softmax (default: %(default)s)",
                       choices=LOSSES, group=WORD2VEC, fingerprinted=True)
    negative: int = option(5, "negative samples per word (default: %(default)s)", type=non_negative_int,
                           group=WORD2VEC, fingerprinted=True)
    sample: float = option(1e-3, "down-sampling threshold for frequent words; 0 turns it off (default: "
                                 "%(default)s)", type=non_negative_float, group=WORD2VEC, fingerprinted=True)
    alpha: float | None = option(None, "initial learning rate, decayed linearly (default: 0.025 skipgram, 0.05 "
                                       "cbow)", type=positive_float, group=WORD2VEC, fingerprinted=True)
    min_alpha: float = option(1e-4, "final learning rate (default: %(default)s)", type=non_negative_float,
                              group=WORD2VEC, fingerprinted=True)
    # fastText
    min_n: int = option(3, "shortest character n-gram (default: %(default)s)", type=positive_int, group=FASTTEXT,
                        fingerprinted=True)
    max_n: int = option(6, "longest character n-gram (default: %(default)s)", type=positive_int, group=FASTTEXT,
                        fingerprinted=True)
    buckets: int = option(2_000_000, "hash buckets for n-gram vectors; memory is buckets x dim x 8 bytes "
                                     "(default: %(default)s)", type=positive_int, group=FASTTEXT, fingerprinted=True)
    # GloVe
    x_max: float = option(10.0, "count at which a pair's weight saturates (default: %(default)s)",
                          type=positive_float, group=GLOVE, fingerprinted=True)
    weight_power: float = option(0.75, "exponent of the weighting function (default: %(default)s)",
                                 type=positive_float, group=GLOVE, fingerprinted=True)
    glove_lr: float = option(0.05, "AdaGrad learning rate (default: %(default)s)", type=positive_float, group=GLOVE,
                             fingerprinted=True)

    def resolved(self) -> EmbeddingConfig:
        """A copy (of the same class) with the per-algorithm defaults filled in, validated."""
        glove = self.algo == "glove"
        defaults = {"window": 15 if glove else 5, "epochs": 15 if glove else 5}
        if not glove:
            defaults["alpha"] = self.learning_rate
        config = dataclasses.replace(self, **{name: value for name, value in defaults.items()
                                              if getattr(self, name) is None})
        config.validate()
        return config

    def validate(self) -> None:
        """Every option's type and choices (as the command line checks them), then the
        rules that tie values together."""
        check_options(self)
        rules = [
            (self.negative > 0 or self.loss != "negative", "--negative must be at least 1 with --loss negative"),
            (self.sample < 1, "--sample must be in [0, 1)"),
            (self.min_n <= self.max_n, "--min-n must be at least 1 and at most --max-n"),
        ]
        for ok, message in rules:
            if not ok:
                raise UserInputError(message)

    @property
    def learning_rate(self) -> float:
        """gensim's defaults: 0.025 for skip-gram, 0.05 for CBOW."""
        if self.alpha is not None:
            return self.alpha
        return 0.025 if self.architecture == "skipgram" else 0.05

    def to_dict(self) -> dict:
        """The vectors' training options, without the command's corpus and output (which
        `EmbedTrainOptions` adds), as config.json records them."""
        return {field.name: getattr(self, field.name) for field in fields(EmbeddingConfig)}


def gensim_kwargs(config: EmbeddingConfig) -> dict:
    """Keyword arguments for `gensim.models.Word2Vec` / `FastText` (without the corpus)."""
    kwargs = dict(
        vector_size=config.dim,
        window=config.window,
        min_count=config.min_count,
        max_final_vocab=config.max_vocab,
        sample=config.sample,
        sg=1 if config.architecture == "skipgram" else 0,
        hs=1 if config.loss == "hierarchical" else 0,
        negative=config.negative if config.loss == "negative" else 0,
        alpha=config.learning_rate,
        min_alpha=config.min_alpha,
        epochs=config.epochs,
        workers=config.threads,
        seed=config.seed,
    )
    if config.algo == "fasttext":
        kwargs.update(min_n=config.min_n, max_n=config.max_n, bucket=config.buckets)
    return kwargs


def estimate_memory_bytes(config: EmbeddingConfig, vocab_size: int) -> int:
    """Peak memory of training, from the vocabulary size alone (never the corpus size)."""
    row = config.dim * 4
    if config.algo == "glove":
        # W, W~, their AdaGrad accumulators (+ biases); the co-occurrence matrix is
        # capped separately by the counter against the same budget.
        return 4 * vocab_size * (row + 8)
    total = vocab_size * row * 2  # input vectors + output layer (syn1neg or syn1)
    if config.algo == "fasttext":
        # vectors_vocab + vectors_ngrams (and their lock factors) + the final vectors
        total += (vocab_size + config.buckets) * row * 2
    return total
