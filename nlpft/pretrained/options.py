"""The options of `nlpft pretrain`, each declared once.

Each field generates its command-line flag and config-file key (`nlpft.cli.options`);
`validate` checks a value given in Python as the command line checks its flag, then the
rules that tie options together. Options are never changed in place: the runner resolves
them into a new object (`dataclasses.replace`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nlpft.data.corpus import check_stream_is_bounded
from nlpft.errors import UserInputError, check_threads
from nlpft.options import (
    check_options,
    non_negative_float,
    option,
    positive_float,
    positive_int,
    seed_int,
)
from nlpft.pretrained.presets import ARCHS, OBJECTIVES, SIZES, check_objective
from nlpft.training.precision import training_precision_option
from nlpft.training.reporting import REPORT_TO, check_report_to

MODEL_AND_DATA = "model and data"
OPTIMISATION = "optimisation"


@dataclass(frozen=True)
class PretrainOptions:
    # --corpus, --text-col, --streaming: nlpft.cli.corpus.add_corpus_options; a run's
    # fingerprint records them through the corpus (its files' hashes, a dataset's column)
    corpus: Sequence[str] = option(shared=True)
    out: str = option(shared=True)
    text_col: str = option("text", shared=True)
    streaming: bool = option(False, shared=True)
    arch: str | None = option(None, "pretrain a fresh model of this architecture", choices=ARCHS,
                              exclusive="what", required=False, fingerprinted=True)
    from_model: str | None = option(None, "continue pretraining this checkpoint (alias, directory or hub id)",
                                    flag="--from", metavar="MODEL", exclusive="what", required=False)
    name: str | None = option(None, "also remember the result under this model name (`nlpft models list` shows "
                                    "it; --model NAME / --from NAME use it)", metavar="NAME")
    offline: bool = option(False, shared=True)
    size: str = option("tiny", "size preset with --arch (default: %(default)s; see above)",
                       choices=tuple(SIZES), group=MODEL_AND_DATA, fingerprinted=True)
    objective: str | None = option(  # fingerprinted by the runner, as resolved (see its _fingerprint)
        None, "what the model learns (default: its own: clm for gpt2 and GPT-style checkpoints, mlm for bert and "
              "BERT-style ones); mlm+nsp: masked LM plus next-sentence prediction on sentence pairs (BERT only)",
        choices=OBJECTIVES, group=MODEL_AND_DATA)
    tokenizer: str | None = option(None, "use this Hugging Face tokenizer (a directory or alias) instead of "
                                         "training one", group=MODEL_AND_DATA, metavar="DIR")
    vocab_size: int | None = option(None, "ids of the trained tokenizer (default: by size)", type=positive_int,
                                    group=MODEL_AND_DATA, fingerprinted=True)
    block_size: int | None = option(None, "tokens per training block (default: the size preset's, 128 with --from)",
                                    type=positive_int, group=MODEL_AND_DATA, fingerprinted=True)
    freeze_base: bool = option(False, "train only the LM head (e.g. fit MiniLM's new MLM head before adapting the "
                                      "encoder)", group=MODEL_AND_DATA, fingerprinted=True)
    mlm_probability: float = option(0.15, "share of tokens masked (default: %(default)s)", type=float,
                                    group=MODEL_AND_DATA, fingerprinted=True)
    valid_fraction: float = option(0.05, "held-out share (default: %(default)s)", type=float, group=MODEL_AND_DATA,
                                   fingerprinted=True)
    test_fraction: float = option(0.05, "test share (default: %(default)s)", type=float, group=MODEL_AND_DATA,
                                  fingerprinted=True)
    epochs: int | None = option(None, type=positive_int, shared=True)  # None: 1 (--max-steps wins when given)
    max_steps: int | None = option(None, type=positive_int, shared=True)
    batch_size: int = option(32, "blocks per step per process (default: %(default)s)", type=positive_int,
                             group=OPTIMISATION, fingerprinted=True)
    grad_accum: int = option(1, "batches per optimizer step (default: %(default)s)", type=positive_int,
                             group=OPTIMISATION, fingerprinted=True)
    lr: float | None = option(None, "peak learning rate (default: 1e-3 from scratch, 5e-5 with --from)",
                              type=positive_float, group=OPTIMISATION)
    warmup: float = option(0.05, "warmup: a fraction of all steps if below 1, else a number of steps (default: "
                                 "%(default)s)", type=non_negative_float, group=OPTIMISATION)
    scheduler: str = option("cosine", "learning-rate schedule after warmup (default: %(default)s)",
                            choices=["cosine", "linear", "constant_with_warmup"], group=OPTIMISATION)
    weight_decay: float = option(0.01, "default: %(default)s", type=non_negative_float, group=OPTIMISATION)
    eval_every: int = option(200, "steps between validations (default: %(default)s)", type=positive_int,
                             group=OPTIMISATION)
    max_eval_blocks: int = option(200, "validation/test blocks (sentence pairs with mlm+nsp) used, spread over the "
                                       "split (default: %(default)s)", type=positive_int, group=OPTIMISATION)
    checkpoint_every: int = option(200, "steps between checkpoints (default: %(default)s)", type=positive_int,
                                   group=OPTIMISATION)
    precision: str = training_precision_option(OPTIMISATION)  # resolved by the runner (auto: bf16 where native)
    seed: int = option(1, type=seed_int, shared=True, fingerprinted=True)
    threads: int | None = option(None, "torch threads (default: all cores)", type=positive_int, group=OPTIMISATION)
    quiet: bool = option(False, "no progress bars", group=OPTIMISATION)
    report_to: str = option("none", choices=REPORT_TO, shared=True)  # --report-to: the training curves
    max_memory_gb: float | None = option(None, flag="--max-memory", type=positive_float, shared=True)
    resume: bool = option(False, shared=True)
    overwrite: bool = option(False, shared=True)  # replace an earlier nlpft output in `out`

    def validate(self) -> None:
        """Every option's type and choices, then the rules that tie values together (cheap:
        nothing is read, loaded or imported)."""
        check_options(self)
        check_stream_is_bounded(self.streaming, self.max_steps)
        if (self.arch is None) == (self.from_model is None):
            raise UserInputError("pass either --arch gpt2|bert (pretrain from scratch) or --from MODEL "
                                 "(continue pretraining a checkpoint), not both")
        if self.arch is not None and self.objective is not None:
            check_objective(self.arch, self.objective)
        rules = [
            (self.arch is not None or self.vocab_size is None,
             ("--vocab-size applies to a tokenizer trained from scratch; with --from the checkpoint's tokenizer "
              "is used")),
            (not (self.tokenizer and self.from_model),
             "--tokenizer cannot be combined with --from: a checkpoint only works with its own tokenizer"),
            (self.block_size is None or self.block_size >= 8, "--block-size must be at least 8"),
            (self.vocab_size is None or self.vocab_size >= 300, "--vocab-size must be at least 300"),
            (0 < self.mlm_probability < 1, "--mlm-probability must be between 0 and 1"),
            (0 < self.valid_fraction < 0.5 and 0 < self.test_fraction < 0.5,
             "--valid-fraction and --test-fraction must be between 0 and 0.5"),
        ]
        for ok, message in rules:
            if not ok:
                raise UserInputError(message)
        self._check_name()
        check_threads(self.threads)
        check_report_to(self.report_to)

    def _check_name(self) -> None:
        if not self.name:
            return
        from nlpft.pretrained.aliases import ALIASES, KNOWN_HUB_IDS

        if self.name in ALIASES or self.name in KNOWN_HUB_IDS or "/" in self.name or not self.name.strip():
            raise UserInputError(f"--name {self.name!r} is taken by a built-in name or is not a plain name")
