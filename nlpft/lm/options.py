"""The options of `nlpft lm train | eval | generate`, each declared once.

Each field generates its command-line flag and config-file key (`nlpft.cli.options`);
`validate` checks a value given in Python as the command line checks its flag. The runner
builds the model's config (`RNNLMConfig`) and the trainer's (`LMTrainConfig`) from the
fields of the same names, and each checks its own ranges (dropouts below 1, --bptt at
least 2, ...) as it is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nlpft.data.corpus import check_stream_is_bounded
from nlpft.data.registry import CORPUS_HELP
from nlpft.errors import UserInputError, check_threads
from nlpft.options import (
    check_options,
    non_negative_float,
    non_negative_int,
    option,
    positive_float,
    positive_int,
    seed_int,
)
from nlpft.training.reporting import REPORT_TO, check_report_to

DATA = "vocabulary and data"
MODEL = "model"
OPTIMISATION = "optimisation"


@dataclass(frozen=True)
class LMTrainOptions:
    # --corpus, --text-col, --streaming: nlpft.cli.corpus.add_corpus_options; a run's
    # fingerprint records them through the corpus (its files' hashes, a dataset's column)
    corpus: Sequence[str] = option(shared=True)
    out: str = option(shared=True)
    text_col: str = option("text", shared=True)
    streaming: bool = option(False, shared=True)
    tokenizer: str | None = option(None, "use this tokenizer.json (e.g. runs/w2v/tokenizer.json)", group=DATA,
                                   metavar="FILE")
    init_vectors: str | None = option(None, "initialise the embedding from static vectors (an `nlpft embed train` "
                                            "directory or a word2vec file); with a directory its tokenizer is used "
                                            "unless --tokenizer is given", group=DATA, metavar="PATH")
    freeze_embeddings: bool = option(False, "keep the initial embedding fixed", group=DATA, fingerprinted=True)
    min_count: int = option(2, "words seen fewer times become [UNK] (default: %(default)s)", type=positive_int,
                            group=DATA, fingerprinted=True)
    max_vocab: int = option(50_000, "vocabulary cap (default: %(default)s)", type=positive_int, group=DATA,
                            fingerprinted=True)
    valid_fraction: float = option(0.05, "held-out share (default: %(default)s)", type=float, group=DATA,
                                   fingerprinted=True)
    test_fraction: float = option(0.05, "test share (default: %(default)s)", type=float, group=DATA,
                                  fingerprinted=True)
    arch: str = option("lstm", "recurrent cell (default: %(default)s)", choices=["lstm", "gru"], group=MODEL,
                       fingerprinted=True)
    embedding_dim: int | None = option(None, "default: 200, or the --init-vectors size", type=positive_int,
                                       group=MODEL, fingerprinted=True)
    hidden_dim: int = option(200, "default: %(default)s", type=positive_int, group=MODEL, fingerprinted=True)
    num_layers: int = option(2, "default: %(default)s", flag="--layers", type=positive_int, group=MODEL,
                             fingerprinted=True)
    tie_weights: bool = option(True, "separate decoder weights (tying shares them with the embedding; a projection "
                                     "is added when hidden and embedding sizes differ)", flag="--no-tie",
                               group=MODEL, fingerprinted=True)
    embedding_dropout: float = option(0.1, "drop whole words (default: %(default)s)", type=float, group=MODEL,
                                      fingerprinted=True)
    input_dropout: float = option(0.3, "locked dropout on inputs (default: %(default)s)", type=float, group=MODEL,
                                  fingerprinted=True)
    hidden_dropout: float = option(0.25, "locked dropout between layers (default: %(default)s)", type=float,
                                   group=MODEL, fingerprinted=True)
    output_dropout: float = option(0.4, "locked dropout on outputs (default: %(default)s)", type=float, group=MODEL,
                                   fingerprinted=True)
    weight_drop: float = option(0.0, "DropConnect on hidden-to-hidden weights (default: %(default)s)", type=float,
                                group=MODEL, fingerprinted=True)
    epochs: int | None = option(None, type=positive_int, shared=True)  # None: 10
    max_steps: int | None = option(None, type=positive_int, shared=True)
    batch_size: int = option(20, "parallel streams (default: %(default)s)", type=positive_int, group=OPTIMISATION,
                             fingerprinted=True)
    bptt: int = option(35, "tokens per truncated-BPTT window (default: %(default)s)", type=positive_int,
                       group=OPTIMISATION, fingerprinted=True)
    optimizer: str = option("adamw", "default: %(default)s", choices=["adamw", "sgd"], group=OPTIMISATION,
                            fingerprinted=True)
    lr: float | None = option(None, "learning rate (default: 2e-3 AdamW, 20 SGD)", type=positive_float,
                              group=OPTIMISATION)
    weight_decay: float = option(0.0, "default: %(default)s", type=non_negative_float, group=OPTIMISATION)
    clip: float = option(0.25, "gradient norm clip; 0 turns it off (default: %(default)s)", type=non_negative_float,
                         group=OPTIMISATION)
    lr_decay: float = option(0.25, "learning-rate factor on a plateau (default: %(default)s)", type=float,
                             group=OPTIMISATION)
    patience: int = option(2, "evaluations without improvement before stopping (default: %(default)s)",
                           type=non_negative_int, group=OPTIMISATION)
    checkpoint_every: int = option(500, "steps between checkpoints (default: %(default)s)", type=positive_int,
                                   group=OPTIMISATION)
    precision: str = option("fp32", "bf16 autocast runs the matrix work in bfloat16 (default: %(default)s)",
                            choices=["fp32", "bf16"], group=OPTIMISATION, fingerprinted=True)
    seed: int = option(1, type=seed_int, shared=True, fingerprinted=True)
    threads: int | None = option(None, "torch threads (default: all cores)", type=positive_int, group=OPTIMISATION)
    quiet: bool = option(False, "no progress bars", group=OPTIMISATION)
    report_to: str = option("none", choices=REPORT_TO, shared=True)  # --report-to: the training curves
    max_memory_gb: float | None = option(None, flag="--max-memory", type=positive_float, shared=True)
    resume: bool = option(False, shared=True)
    overwrite: bool = option(False, shared=True)  # replace an earlier nlpft output in `out`

    def validate(self) -> None:
        """Every option's type and choices, then the rules that tie values together."""
        check_options(self)
        rules = [
            (0 < self.valid_fraction < 0.5 and 0 < self.test_fraction < 0.5,
             "--valid-fraction and --test-fraction must be between 0 and 0.5"),
        ]
        for ok, message in rules:
            if not ok:
                raise UserInputError(message)
        check_stream_is_bounded(self.streaming, self.max_steps)
        check_threads(self.threads)
        check_report_to(self.report_to)


@dataclass(frozen=True)
class LMEvalOptions:
    model: str = option(help="the --out directory of `nlpft lm train` or `nlpft pretrain`, a model alias, a Hugging "
                             "Face directory or a hub id", metavar="MODEL", required=True)
    corpus: Sequence[str] = option(help=f"text to score: {CORPUS_HELP}", nargs="+", metavar="PATH", required=True)
    text_col: str = option("text", shared=True)
    batch_size: int = option(10, "default: %(default)s", type=positive_int)
    bptt: int = option(35, "RNN LM: tokens per window (default: %(default)s)", type=positive_int)
    block_size: int | None = option(None, "transformers: tokens per block (default: 512 GPT-style, 128 BERT-style, "
                                          "at most the model's positions)", type=positive_int)
    seed: int = option(13, "transformers, BERT-style: seed of the masks (default: %(default)s)", type=seed_int)
    precision: str = option("fp32", choices=["fp32", "bf16"])
    threads: int | None = option(None, type=positive_int)
    json: bool = option(False, "print JSON")
    offline: bool = option(False, shared=True)


@dataclass(frozen=True)
class LMGenerateOptions:
    model: str = option(help="an `nlpft lm train` or `nlpft pretrain` directory, or a GPT-style checkpoint",
                        metavar="MODEL", required=True)
    prompt: str = option("", "text to continue (default: start of a line)")
    max_tokens: int = option(50, "default: %(default)s", type=non_negative_int)
    temperature: float = option(1.0, "0 = greedy (default: %(default)s)", type=non_negative_float)
    top_k: int | None = option(None, "sample among the k likeliest tokens", type=positive_int)
    top_p: float | None = option(None, "nucleus sampling: smallest set with this mass", type=float)
    seed: int | None = option(None, "random seed for reproducible samples", type=seed_int)
    offline: bool = option(False, shared=True)
