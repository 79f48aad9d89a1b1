"""The options of `nlpft finetune | predict | evaluate`, each declared once.

Each field generates its command-line flag and config-file key (`nlpft.cli.options`) and is
checked the same way from Python (`validate`). `--task` and `--model` list what the task
and backbone registries hold. Options that only one task or backbone understands (--crf,
--pooling, ...) are declared by that plug-in (`nlpft.finetune.plugin_options`) and arrive
here as `task_options` / `backbone_options`. Options are never changed in place: `finetune`
resolves them into a new object (`dataclasses.replace`) and saves that one with the model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from nlpft.errors import UserInputError, check_threads
from nlpft.finetune.search_space import search_space_text
from nlpft.options import (
    check_options,
    non_negative_float,
    non_negative_int,
    option,
    positive_float,
    positive_int,
    seed_int,
)
from nlpft.training.precision import training_precision_option
from nlpft.training.reporting import REPORT_TO, check_report_to

DATA = "data"
OPTIMISATION = "optimisation"
SEARCH = "hyperparameter search"


def _task_names() -> list[str]:
    from nlpft.finetune.tasks import task_names

    return task_names()


def _task_help() -> str:
    from nlpft.finetune.tasks import task_help

    return task_help() + " (default: %(default)s)"


def _search_help() -> str:
    from nlpft.finetune.search_space import search_help

    return search_help()


def _model_help() -> str:
    from nlpft.finetune.backbones import backbone_names

    return (f"backbone (default: %(default)s): a value that one of the registered backbones "
            f"({', '.join(backbone_names())}) recognises, tried in the order listed above")


def _method_names() -> list[str]:
    from nlpft.finetune.methods import method_names

    return method_names()


def _method_help() -> str:
    from nlpft.finetune.methods import method_help

    return "how the backbone is trained: " + method_help() + " (default: %(default)s)"


@dataclass(frozen=True)
class FinetuneOptions:
    train: str = option(help="labeled .csv, .tsv, .jsonl or .parquet, a save_to_disk directory [DIR@SPLIT], "
                             "hf:NAME[:CONFIG][@SPLIT] (the Hub or its cache; split train), or a dataset name: "
                             "polarity (installed), bbc-news; --task tag: CoNLL, or .jsonl/.csv of tokens and tags",
                        group=DATA, metavar="FILE", required=True, fingerprinted=False)
    out: str = option(shared=True)
    valid: str | None = option(None, "validation file or dataset (hf:NAME reads its validation split) (default: "
                                     "10%% of --train, stratified)", group=DATA, metavar="FILE")
    test: str | None = option(None, "test file or dataset (hf:NAME reads its test split) (default: 10%% of --train, "
                                    "stratified)", group=DATA, metavar="FILE")
    random_init: bool = option(False, "keep the backbone's architecture and tokenizer but start from random weights "
                                      "(a baseline that shows what pretraining buys)", fingerprinted=True)
    model: str = option("minilm", _model_help)
    method: str = option("auto", _method_help, choices=_method_names, fingerprinted=True)
    text_col: str = option("text", "default: %(default)s", group=DATA, fingerprinted=True)
    text_pair_col: str | None = option(None, "a second text column, for sentence pairs", group=DATA,
                                       fingerprinted=True)
    label_col: str = option("label", "default: %(default)s", group=DATA, fingerprinted=True)
    task: str = option("single", _task_help, choices=_task_names, group=DATA, fingerprinted=True)
    label_delimiter: str = option(";", "separates labels in a multi-label cell (default: %(default)s)", group=DATA,
                                  fingerprinted=True)
    skip_bad_rows: bool = option(False, "drop bad rows (and report them) instead of stopping", group=DATA,
                                 fingerprinted=True)
    normalize_labels: bool = option(  # merge labels that differ only in case (see data.labeled.label_key)
        False, "labels that differ only in case or surrounding spaces (Pos, pos, ' POS') are one class, named by "
               "its most frequent spelling; evaluate applies the same to its files", group=DATA)
    valid_fraction: float | None = option(None, "share of --train held out for validation when --valid is not given "
                                                "(default: 0.1, or enough for 20 rows on a small file, up to 0.2)",
                                          type=float, group=DATA, fingerprinted=True)
    test_fraction: float | None = option(None, "share of --train held out for the test when --test is not given "
                                               "(default: 0.1, or enough for 40 rows on a small file, up to 0.2)",
                                         type=float, group=DATA, fingerprinted=True)
    split_seed: int | None = option(None, "seed of the split made from --train when --valid or --test is not "
                                          "given (default: --seed); fix it to compare seeds or models on one "
                                          "split, as `nlpft split` writes it", type=seed_int, group=DATA,
                                    fingerprinted=True)
    epochs: int | None = option(None, type=positive_int, shared=True)
    max_steps: int | None = option(None, type=positive_int, shared=True)
    lr: float | None = option(None, "peak learning rate (default: 2e-5 for BERT-style, 5e-5 for GPT-style "
                                    "transformers, 5e-4 for either under 10M parameters, 1e-4 for --task tag on a "
                                    "larger transformer, 2e-3 for static vectors and the RNN LM)",
                              type=positive_float, group=OPTIMISATION)
    batch_size: int = option(16, "default: %(default)s", type=positive_int, group=OPTIMISATION, fingerprinted=True)
    grad_accum: int = option(1, "batches per optimizer step (default: %(default)s)", type=positive_int,
                             group=OPTIMISATION, fingerprinted=True)
    max_length: int = option(256, "tokens per text, or per window (see --long-text) (default: %(default)s)",
                             type=positive_int, group=OPTIMISATION, fingerprinted=True)
    warmup: float = option(0.1, "warmup: a fraction of all steps if below 1, else steps (default: %(default)s)",
                           type=non_negative_float, group=OPTIMISATION)
    scheduler: str = option("linear", "default: %(default)s", choices=["linear", "cosine", "constant_with_warmup"],
                            group=OPTIMISATION)
    weight_decay: float = option(0.01, "default: %(default)s", type=non_negative_float, group=OPTIMISATION)
    class_weights: str | None = option(None, "weight the loss per class: auto (inverse frequency) or explicit "
                                             "weights", metavar="auto|LABEL=W,...", group=OPTIMISATION,
                                       fingerprinted=True)
    patience: int | None = option(2, "evaluations without improvement before stopping (default: %(default)s)",
                                  type=positive_int, group=OPTIMISATION)
    eval_every: int | None = option(None, "evaluate every N steps (default: every epoch)", type=positive_int,
                                    group=OPTIMISATION)
    checkpoint_every: int = option(200, "default: %(default)s", type=positive_int, group=OPTIMISATION)
    group_by_length: bool = option(True, "shuffle freely instead of batching texts of similar length",
                                   flag="--no-group-by-length", group=OPTIMISATION, fingerprinted=True)
    stride: int | None = option(  # None: the task's default (tag: 16 words; text: a quarter of --max-length)
        None, "overlap between consecutive windows of a long input: subword tokens for text tasks (default: a "
              "quarter of --max-length), words for --task tag (default: 16)", type=non_negative_int,
        group=OPTIMISATION, fingerprinted=True)
    precision: str = training_precision_option(OPTIMISATION)  # resolved by the runner (auto: bf16 where native)
    seed: int = option(1, type=seed_int, shared=True, fingerprinted=True)
    threads: int | None = option(None, "torch threads (default: all cores)", type=positive_int, group=OPTIMISATION)
    quiet: bool = option(False, "no progress output", group=OPTIMISATION)
    report_to: str = option("none", choices=REPORT_TO, shared=True)  # --report-to: the training curves
    head_c: float | None = option(  # None: the backbone's own default
        None, "inverse regularisation strength C of the scikit-learn head: --model tfidf (default: 10) and --method "
              "frozen (default: 1)", type=positive_float, group=OPTIMISATION, metavar="C")
    search: int | None = option(None, _search_help, type=positive_int, group=SEARCH, metavar="N")
    search_space: str | None = option(None, 'a JSON object of parameters to search instead of the defaults, e.g. '
                                            '\'{"lr": [1e-5, 1e-3, "log"], "batch_size": [16, 32]}\' (in a config '
                                            'file: a search_space mapping)', type=search_space_text, group=SEARCH,
                                      metavar="JSON")
    resume: bool = option(False, shared=True)
    overwrite: bool = option(False, shared=True)  # replace an earlier nlpft output in `out`
    max_memory_gb: float | None = option(None, flag="--max-memory", type=positive_float, shared=True)
    offline: bool = option(False, shared=True)  # hub ids from the local cache only
    # the options the task and the backbone declare themselves (their `options` dataclasses,
    # see nlpft.finetune.plugin_options): a dict of the values given, or that dataclass;
    # `finetune` resolves each into the selected plug-in's dataclass
    task_options: Any = None
    backbone_options: Any = None

    @property
    def data_split_seed(self) -> int:
        """The seed of the train/valid/test split made from --train."""
        return self.seed if self.split_seed is None else self.split_seed

    def with_inputs_resolved(self) -> FinetuneOptions:
        """A copy with dataset names (such as `polarity`) resolved to paths. A dataset source
        (hf:NAME, Parquet, save_to_disk) stays as given: finetune.json records it so, and a
        resumed run compares it as given."""
        from nlpft.data.registry import resolve_labeled_file

        return dataclasses.replace(self, train=resolve_labeled_file(self.train),
                                   valid=resolve_labeled_file(self.valid) if self.valid else None,
                                   test=resolve_labeled_file(self.test) if self.test else None)

    def validate(self) -> None:
        """Every option's type and choices, then the rules that tie values together."""
        check_options(self)
        rules = [
            (self.max_length >= 8, "--max-length must be at least 8"),
            (all(f is None or 0 < f < 0.5 for f in (self.valid_fraction, self.test_fraction)),
             "--valid-fraction and --test-fraction must be between 0 and 0.5"),
            (self.search or not self.search_space, "--search-space applies to a search: add --search N"),
        ]
        for ok, message in rules:
            if not ok:
                raise UserInputError(message)
        check_threads(self.threads)
        check_report_to(self.report_to)


MODEL_DIR_HELP = "the --out directory of `nlpft finetune` (or of `nlpft export`)"
TRAINED_COLUMN = "default: the column the model was trained on"


# predict and evaluate: how the model runs (each dataclass needs fields of its own)
def _runtime_option():
    return option("auto", "auto = ONNX Runtime when the model directory holds an export (`nlpft export`), else "
                          "torch; torch = the safetensors weights; onnx = the exported model.onnx (default: "
                          "%(default)s)", choices=["auto", "torch", "onnx"])


def _precision_option():
    return option("auto", "torch runtime: auto = bf16 autocast for transformers where the CPU does bf16 natively "
                          "(AVX-512 BF16/AMX), unless the model was fine-tuned in fp32; else fp32. ONNX Runtime runs "
                          "the export as written (fp32 or int8) (default: %(default)s)", choices=["auto", "fp32", "bf16"])


def _threads_option():
    return option(None, "CPU threads of torch or ONNX Runtime (default: torch's, all cores)", type=positive_int)


@dataclass(frozen=True)
class PredictOptions:
    model: str = option(help=MODEL_DIR_HELP, metavar="DIR", required=True)
    input: str | None = option(None, ".csv, .tsv or .jsonl with a text column; tagging models: a .txt file of one "
                                     "text per line, or a tagged file (.conll, .jsonl, .csv) whose tokens are tagged",
                               metavar="FILE", exclusive="source")
    text: str | None = option(None, "one text, classified and printed; tagging models print its entities as JSON "
                                    "(type, text, start, end, score), the text split into words by nlpft's rule: "
                                    "URLs, e-mails, @user and #hashtags whole, English clitics split off (don't -> do "
                                    "n't), each other punctuation mark a word", exclusive="source")
    out: str | None = option(None, "predictions CSV (needed with --input); tagging models: entities as JSON lines "
                                   "for a .jsonl/.json name, else CoNLL; a file, not a directory nor the --input "
                                   "file", metavar="FILE")
    text_pair: str | None = option(None, "the second text, for a model trained on text pairs", metavar="TEXT")
    text_col: str | None = option(None, TRAINED_COLUMN)
    text_pair_col: str | None = option(None, f"pair models: {TRAINED_COLUMN}")
    batch_size: int = option(32, "default: %(default)s", type=positive_int)
    runtime: str = _runtime_option()
    precision: str = _precision_option()
    threads: int | None = _threads_option()


@dataclass(frozen=True)
class EvaluateOptions:
    model: str = option(help=MODEL_DIR_HELP, metavar="DIR", required=True)
    input: str = option(help="labeled .csv, .tsv or .jsonl", metavar="FILE", required=True)
    text_col: str | None = option(None, TRAINED_COLUMN)
    text_pair_col: str | None = option(None, f"pair models: {TRAINED_COLUMN}")
    label_col: str | None = option(None, TRAINED_COLUMN)
    out: str | None = option(None, shared=True)
    overwrite: bool = option(False, shared=True)
    batch_size: int = option(32, "default: %(default)s", type=positive_int)
    normalize_labels: bool = option(False, "merge labels that differ only in case into the model's spelling "
                                           "(automatic when the model was fine-tuned with --normalize-labels)")
    json: bool = option(False, "print JSON")
    runtime: str = _runtime_option()
    precision: str = _precision_option()
    threads: int | None = _threads_option()


ONNX_OPSET = 18  # the lowest opset the torch.onnx (dynamo) exporter writes natively


@dataclass(frozen=True)
class ExportOptions:
    model: str = option(help="the --out directory of `nlpft finetune` with a transformer backbone (hf-encoder, "
                             "hf-decoder)", metavar="DIR", required=True)
    out: str = option(shared=True)
    overwrite: bool = option(False, shared=True)
    format: str = option("onnx", "default: %(default)s", choices=["onnx"])
    quantize: str = option("none", "int8 = ONNX Runtime dynamic quantization of the weights (a smaller file, faster "
                                   "than the fp32 export; refused below 99%% agreement with the original) (default: "
                                   "%(default)s)", choices=["none", "int8"])
    check: str | None = option(None, "texts to compare the export with the original on (.csv, .tsv, .jsonl with the "
                                     "model's text column; taggers: .txt or a tagged file) (default: the model's "
                                     "own test predictions)", metavar="FILE")
    opset: int = option(ONNX_OPSET, "ONNX opset (default: %(default)s)", type=positive_int)
    threads: int | None = _threads_option()

    def validate(self) -> None:
        check_options(self)
        if self.opset < ONNX_OPSET:
            raise UserInputError(f"--opset must be at least {ONNX_OPSET} (the exporter writes opset "
                                 f"{ONNX_OPSET} and later), not {self.opset}")


SERVER = "server"
BATCHING = "micro-batching"
LIMITS = "limits (a request over one gets a JSON error naming the field and the limit)"
PORT_LIMIT = 65535


@dataclass(frozen=True)
class ServeOptions:
    model: str = option(help=MODEL_DIR_HELP, metavar="DIR", required=True)
    runtime: str = _runtime_option()
    precision: str = _precision_option()
    host: str = option("127.0.0.1", "address to listen on (default: %(default)s, this machine only); 0.0.0.0 "
                                    "listens on every interface: anyone who reaches the machine can then call the "
                                    "model, so put an authenticating proxy in front", group=SERVER)
    port: int = option(8000, "default: %(default)s; 0 picks a free port, named in the line printed when ready",
                       type=non_negative_int, group=SERVER)
    workers: int = option(1, "server processes sharing the port, each loading its own copy of the model: memory "
                             "grows with N (default: %(default)s; one process already overlaps the HTTP work with "
                             "the model's)", type=positive_int, group=SERVER, metavar="N")
    threads: int | None = option(None, "torch threads per process (default: all cores; with --workers N, about "
                                       "cores/N keeps the processes from competing)", type=positive_int,
                                 group=SERVER)
    max_connections: int = option(256, "open connections at most; a request beyond them gets 503 at once "
                                       "(default: %(default)s)", type=positive_int, group=SERVER, metavar="N")
    max_batch: int = option(32, "texts of concurrent requests gathered into one model call (default: %(default)s); "
                                "1 turns micro-batching off (one request per call); a request is never split, so "
                                "one with more texts runs alone", type=positive_int, group=BATCHING, metavar="N")
    max_wait_ms: float = option(5.0, "how long the first request of a batch waits for others to join it, in "
                                     "milliseconds (default: %(default)s); 0 takes only what is already waiting",
                                type=non_negative_float, group=BATCHING, metavar="MS")
    batch_size: int = option(32, "texts per forward pass within one model call: bounds the model's memory "
                                 "(default: %(default)s)", type=positive_int, group=BATCHING)
    max_queue: int = option(1024, "texts waiting for the model at most; a request that would pass it gets 503 "
                                  "with Retry-After: 1 instead of a queue that grows without bound (default: "
                                  "%(default)s)", type=positive_int, group=LIMITS, metavar="N")
    max_texts: int = option(256, "texts per request (default: %(default)s)", type=positive_int, group=LIMITS,
                            metavar="N")
    max_chars: int = option(20000, "characters per text and per text_pair (default: %(default)s)",
                            type=positive_int, group=LIMITS, metavar="N")
    max_body_bytes: int = option(2 * 1024 * 1024, "request body size, checked against Content-Length before "
                                                  "reading and counted while reading, so a huge body is refused "
                                                  "unread (default: %(default)s)", type=positive_int,
                                 group=LIMITS, metavar="BYTES")

    def validate(self) -> None:
        check_options(self)
        if self.port > PORT_LIMIT:
            raise UserInputError(f"--port must be from 0 to {PORT_LIMIT}, not {self.port}")
        if self.max_queue < self.max_texts:
            raise UserInputError(f"--max-queue {self.max_queue} is below --max-texts {self.max_texts}: a full "
                                 "request could never be queued; raise --max-queue or lower --max-texts")
        check_threads(self.threads)
