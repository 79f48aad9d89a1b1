"""Every option of `nlpft embed train`, and their translation into gensim's switches.

gensim speaks in 0/1 flags (`sg`, `hs`, `negative=0`, `cbow_mean`); nlpft speaks in words
(`architecture="skipgram"`, `loss="hierarchical"`). `gensim_kwargs` is the one place
where one becomes the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from nlpft.errors import UserInputError, check_seed

ALGORITHMS = ("word2vec", "fasttext", "glove")
ARCHITECTURES = ("skipgram", "cbow")
LOSSES = ("negative", "hierarchical")


@dataclass
class EmbeddingConfig:
    algo: str = "word2vec"
    # shared
    dim: int = 100
    window: int | None = None  # 5 for word2vec/fastText, 15 for GloVe (the C default)
    min_count: int = 5
    max_vocab: int | None = None
    epochs: int | None = None  # 5 for word2vec/fastText, 15 for GloVe
    threads: int = 2
    seed: int = 1
    lowercase: bool = True
    max_memory_gb: float = 8.0
    max_steps: int | None = None
    # word2vec / fastText
    architecture: str = "skipgram"
    loss: str = "negative"
    negative: int = 5
    sample: float = 1e-3
    alpha: float | None = None
    min_alpha: float = 1e-4
    # fastText
    min_n: int = 3
    max_n: int = 6
    buckets: int = 2_000_000
    # GloVe
    x_max: float = 10.0
    weight_power: float = 0.75
    glove_lr: float = 0.05

    def resolved(self) -> "EmbeddingConfig":
        """A copy with the per-algorithm defaults filled in, validated."""
        glove = self.algo == "glove"
        values = self.to_dict()
        if values["window"] is None:
            values["window"] = 15 if glove else 5
        if values["epochs"] is None:
            values["epochs"] = 15 if glove else 5
        if values["alpha"] is None and not glove:
            values["alpha"] = 0.025 if self.architecture == "skipgram" else 0.05
        config = EmbeddingConfig(**values)
        config.validate()
        return config

    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise UserInputError(msg)

        need(self.algo in ALGORITHMS, f"--algo must be one of {', '.join(ALGORITHMS)}, not {self.algo!r}")
        need(self.architecture in ARCHITECTURES, f"--architecture must be skipgram or cbow, not {self.architecture!r}")
        need(self.loss in LOSSES, f"--loss must be negative or hierarchical, not {self.loss!r}")
        need(self.dim > 0, "--dim must be a positive number of dimensions")
        need(self.window is None or self.window > 0, "--window must be at least 1")
        need(self.min_count >= 1, "--min-count must be at least 1")
        need(self.max_vocab is None or self.max_vocab > 0, "--max-vocab must be positive")
        need(self.epochs is None or self.epochs > 0, "--epochs must be at least 1")
        need(self.threads > 0, "--threads must be at least 1")
        need(self.max_memory_gb > 0, "--max-memory must be positive (GiB)")
        need(self.max_steps is None or self.max_steps > 0, "--max-steps must be positive")
        need(self.negative > 0 or self.loss != "negative", "--negative must be at least 1 with --loss negative")
        need(0 <= self.sample < 1, "--sample must be in [0, 1)")
        need(1 <= self.min_n <= self.max_n, "--min-n must be at least 1 and at most --max-n")
        need(self.buckets > 0, "--buckets must be positive")
        need(self.x_max > 0 and self.weight_power > 0, "--x-max and --weight-power must be positive")
        check_seed(self.seed)

    @property
    def learning_rate(self) -> float:
        """gensim's defaults: 0.025 for skip-gram, 0.05 for CBOW."""
        if self.alpha is not None:
            return self.alpha
        return 0.025 if self.architecture == "skipgram" else 0.05

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


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
