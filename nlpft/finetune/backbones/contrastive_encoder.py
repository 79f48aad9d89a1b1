"""The backbone `--method contrastive` trains through (`nlpft.finetune.methods`): SetFit's
recipe on a BERT-style Hugging Face encoder. The encoder is first tuned on pairs of training
rows (`nlpft.finetune.contrastive`: same class -> cosine 1, different -> 0, pairs shared
equally between classes), then read exactly as `--method frozen` reads an encoder: mean-pooled
embeddings and the shared linear head. Saving, loading and scoring are the frozen encoder's;
the saved directory also loads with `sentence_transformers.SentenceTransformer`.

--lr (default 2e-5), --epochs (default 1) and --batch-size set the encoder's tuning; the
pairs are capped (`contrastive.DEFAULT_MAX_PAIRS`) so that a few hundred rows tune in about
two minutes on a CPU.

--long-text windows: the head reads each text as the mean of its windows' embeddings (as
frozen does), and the tuning reads, each time a row is in a pair, one of its training
windows (at most --max-windows, evenly spaced) drawn with the seed, so every part of a text
is pulled toward its class. The tuning costs what it costs truncated: the same capped
pairs and steps, each text at most one window long.
"""

from __future__ import annotations

from pathlib import Path

from nlpft.finetune.backbones.frozen_encoder import FrozenEncoder
from nlpft.finetune.search_space import Param

CONTRASTIVE_LR = 2e-5  # SetFit's default body learning rate
CONTRASTIVE_EPOCHS = 1


class ContrastiveEncoder(FrozenEncoder):
    name = "contrastive-encoder"
    summary = ("chosen by --method contrastive on a BERT-style encoder, not by --model: the encoder tuned on "
               "same/different-class pairs (SetFit), then mean-pooled embeddings + logistic regression")
    # the tuning's rate and the head's C; one epoch over capped pairs is the recipe
    search_parameters = {"lr": Param(1e-5, 1e-4, log=True), "head_c": Param(0.01, 100.0, log=True)}
    uses_precision = True  # the tuning runs under --precision; the embeddings the head reads are fp32
    # the tuning reads --lr and --epochs (besides what the frozen encoder reads), nothing else of the trainer's
    ignored_options = FrozenEncoder.ignored_options - {"lr", "epochs"}
    default_lr_range = (CONTRASTIVE_LR, CONTRASTIVE_LR)
    tuning = None  # the last `tune_encoder`'s TuningSummary (steps for metrics.json)
    method_name = "contrastive"

    def supports(self, task) -> bool:
        # its pairs are pairs of labeled rows, so it needs classes to compare and one text per row
        return task.target_kind in ("class", "label-set") and not task.reading.get("text_pair_col")

    def tune_encoder(self, encoder, opts, task, splits, windows: dict | None) -> None:
        from nlpft.finetune.contrastive import tune_encoder

        texts, _ = task.texts_and_pairs(splits.train)
        label_sets = [row.label if isinstance(row.label, tuple) else (row.label,) for row in splits.train]
        summary = tune_encoder(encoder.model, encoder.tokenizer, texts, label_sets,
                               lr=opts.lr or CONTRASTIVE_LR, epochs=int(opts.epochs or CONTRASTIVE_EPOCHS),
                               batch_size=opts.batch_size, max_length=opts.max_length, seed=opts.seed,
                               precision=opts.precision, progress=not opts.quiet,
                               windows=windows_per_text(windows["train"]) if windows is not None else None)
        self.tuning = summary

    def fit(self, opts, task, splits, work: Path, output) -> dict:
        import json

        from nlpft.finetune.contrastive import write_sentence_transformers_files

        result = super().fit(opts, task, splits, work, output)
        hidden = json.loads((work / "config.json").read_text(encoding="utf-8"))["hidden_size"]
        write_sentence_transformers_files(work, opts.max_length, hidden)
        if self.tuning is not None:
            result = {**result, "steps": self.tuning.steps, "epochs": float(opts.epochs or CONTRASTIVE_EPOCHS)}
        return result


def windows_per_text(encoded) -> list[list[list[int]]]:
    """Each text's windows' token ids, in order (`encoded`: an `encode_windows` output)."""
    grouped: list[list[list[int]]] = [[] for _ in encoded.windows_made]
    for ids, text in zip(encoded.input_ids, encoded.documents, strict=True):
        grouped[text].append(ids)
    return grouped
