"""`nlpft finetune | predict | evaluate`: classify (or score) a labeled CSV with any backbone."""

from __future__ import annotations

import argparse
import json
import sys

from nlpft.cli.main import (
    OUT_HELP,
    add_common_options,
    add_overwrite_option,
    add_training_options,
    non_negative_float,
    positive_float,
    positive_int,
    run_training,
)

DESCRIPTION = """\
Fine-tune a text classifier (or regressor) on a labeled CSV, TSV or JSONL file.

The file is read and checked before any model loads: missing columns, empty texts or
labels, ragged rows, bad encodings and single-class files are reported at once, with row
numbers (--skip-bad-rows trains on the good rows and says how many were dropped). Labels
are read as text ("1" and "1.0" are different labels); labels that differ only in case
("Pos", "pos") are reported with their counts, and --normalize-labels makes them one class
named by the most frequent spelling. Without --valid/--test files, a seeded, stratified
80/10/10 split is made.

Backbones (--model):
  minilm, a Hugging Face directory or cached hub id   BERT- or GPT-style transformer with a
                                                      classification head ([CLS] / last token)
  an `nlpft lm train` directory                       the RNN LM's encoder + concat pooling,
                                                      ULMFiT-style (gradual unfreezing,
                                                      discriminative learning rates)
  an `nlpft embed train` directory or word2vec file   static vectors, mean+max pooling + MLP
  tfidf                                               TF-IDF word 1-2 grams + logistic regression

Training uses the Hugging Face Trainer: warmup then linear decay, evaluation every epoch
(or --eval-every steps), the best weights by validation macro F1 kept, early stopping after
--patience evaluations without improvement, dynamic padding with length-grouped batches,
checkpoints (safetensors + JSON) every --checkpoint-every steps; --resume continues after
an interruption, and Ctrl-C/SIGTERM saves one first.

Output (--out DIR): for transformers a standard model directory (config.json with
id2label, model.safetensors, tokenizer) that `pipeline("text-classification", model=DIR)`
loads without nlpft; plus metrics.json, report.md, confusion_matrix.png, loss_curve.png,
predictions.csv (test split: text, gold, predicted, probabilities) and finetune.json.
"""

EPILOG = """\
examples:
  nlpft finetune --train bbc_news.csv --out runs/bbc                        # MiniLM, defaults
  nlpft finetune --train reviews.csv --text-col review --label-col sentiment --out runs/rev --epochs 2
  nlpft finetune --train train.csv --valid valid.csv --test test.csv --model tfidf --out runs/tfidf
  nlpft finetune --train tags.csv --task multi --label-delimiter ";" --out runs/tags
  nlpft predict  --model runs/bbc --input new.csv --out predictions.csv
  nlpft predict  --model runs/bbc --text "Shares rose sharply after the results"
  nlpft evaluate --model runs/bbc --input test.csv
"""


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("finetune", help="train a classifier on a labeled CSV", description=DESCRIPTION,
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--train", required=True, metavar="FILE",
                   help="labeled .csv, .tsv or .jsonl, or a dataset name: polarity (installed), bbc-news")
    d.add_argument("--valid", metavar="FILE", help="validation file (default: 10%% of --train, stratified)")
    d.add_argument("--test", metavar="FILE", help="test file (default: 10%% of --train, stratified)")
    d.add_argument("--text-col", default="text", help="default: %(default)s")
    d.add_argument("--text-pair-col", default=None, help="a second text column, for sentence pairs")
    d.add_argument("--label-col", default="label", help="default: %(default)s")
    d.add_argument("--task", choices=["single", "multi", "regression"], default="single",
                   help="one label per text, several (multi), or a number (default: %(default)s)")
    d.add_argument("--label-delimiter", default=";", help="separates labels in a multi-label cell (default: %(default)s)")
    d.add_argument("--skip-bad-rows", action="store_true", help="drop bad rows (and report them) instead of stopping")
    d.add_argument("--normalize-labels", action="store_true",
                   help="labels that differ only in case or surrounding spaces (Pos, pos, ' POS') are one class, "
                        "named by its most frequent spelling; evaluate applies the same to its files")
    d.add_argument("--valid-fraction", type=float, default=0.1, help="default: %(default)s")
    d.add_argument("--test-fraction", type=float, default=0.1, help="default: %(default)s")
    p.add_argument("--random-init", action="store_true",
                   help="keep the backbone's architecture and tokenizer but start from random weights "
                        "(a baseline that shows what pretraining buys)")
    p.add_argument("--model", default="minilm",
                   help="backbone: a model alias, a Hugging Face directory, a cached hub id, or tfidf "
                        "(default: %(default)s)")
    add_common_options(p)
    add_training_options(p, "default: 3 for transformers, 20 for static vectors and the RNN LM; "
                            "early stopping may end sooner")
    o = p.add_argument_group("optimisation")
    o.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default: 2e-5 for BERT-style, 5e-5 for GPT-style "
                        "transformers, 5e-4 for either under 10M parameters, 2e-3 for static vectors "
                        "and the RNN LM)")
    o.add_argument("--batch-size", type=positive_int, default=16, help="default: %(default)s")
    o.add_argument("--grad-accum", type=positive_int, default=1, help="batches per optimizer step (default: %(default)s)")
    o.add_argument("--max-length", type=positive_int, default=256, help="tokens per text, longer ones are cut (default: %(default)s)")
    o.add_argument("--warmup", type=non_negative_float, default=0.1,
                   help="warmup: a fraction of all steps if below 1, else steps (default: %(default)s)")
    o.add_argument("--scheduler", choices=["linear", "cosine", "constant_with_warmup"], default="linear",
                   help="default: %(default)s")
    o.add_argument("--weight-decay", type=non_negative_float, default=0.01, help="default: %(default)s")
    o.add_argument("--class-weights", default=None, metavar="auto|LABEL=W,...",
                   help="weight the loss per class: auto (inverse frequency) or explicit weights")
    o.add_argument("--patience", type=positive_int, default=2,
                   help="evaluations without improvement before stopping (default: %(default)s)")
    o.add_argument("--eval-every", type=positive_int, default=None, help="evaluate every N steps (default: every epoch)")
    o.add_argument("--checkpoint-every", type=positive_int, default=200, help="default: %(default)s")
    o.add_argument("--no-group-by-length", dest="group_by_length", action="store_false",
                   help="shuffle freely instead of batching texts of similar length")
    o.add_argument("--freeze-embeddings", action="store_true",
                   help="static vectors / RNN LM: keep the word embedding fixed")
    o.add_argument("--no-gradual-unfreeze", action="store_true",
                   help="RNN LM: train every layer from the start (default: ULMFiT gradual unfreezing)")
    o.add_argument("--layer-lr-factor", type=float, default=2.6,
                   help="RNN LM: each layer down the stack learns this many times slower (default: %(default)s; "
                        "1 = one rate)")
    o.add_argument("--pooling", choices=["cls", "mean"], default="cls",
                   help="BERT-style encoders: cls = the stock [CLS] pooler, and the output works with "
                        "pipeline('text-classification'); mean = the average of the token states (how sentence-"
                        "embedding models such as MiniLM were trained), loaded by nlpft predict/evaluate "
                        "(default: %(default)s)")
    o.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: bf16 autocast where the hardware does bf16 natively (AVX-512 BF16/AMX CPUs, "
                        "recent GPUs), else fp32; weights stay fp32 (default: %(default)s)")
    o.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: all cores)")
    o.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(_handler=run_finetune, _parser=p)

    pr = commands.add_parser("predict", help="classify new texts with a fine-tuned model",
                             description="Predict labels (and probabilities) for new texts with the --out directory "
                                         "of `nlpft finetune`. Rows without text are reported and skipped; texts "
                                         "longer than the model's limit are cut and counted (a text is first cut "
                                         "to 16 characters per token of that limit, so a huge cell costs no more "
                                         "than a page of text).")
    pr.add_argument("--model", required=True, metavar="DIR", help="the --out directory of `nlpft finetune`")
    src = pr.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", metavar="FILE", help=".csv, .tsv or .jsonl with a text column")
    src.add_argument("--text", help="one text, classified and printed")
    pr.add_argument("--out", metavar="FILE", help="predictions CSV (needed with --input); a file, not a directory "
                                                  "nor the --input file")
    pr.add_argument("--text-pair", metavar="TEXT", help="the second text, for a model trained on text pairs")
    pr.add_argument("--text-col", default=None, help="default: the column the model was trained on")
    pr.add_argument("--text-pair-col", default=None, help="pair models: default: the column the model was trained on")
    pr.add_argument("--batch-size", type=positive_int, default=32, help="default: %(default)s")
    pr.add_argument("--config", metavar="FILE", help="YAML or JSON file of options")
    pr.set_defaults(_handler=run_predict, _parser=pr)

    ev = commands.add_parser("evaluate", help="metrics of a fine-tuned model on a labeled file",
                             description="Accuracy, F1, MCC, per-class scores and the confusion matrix of a "
                                         "fine-tuned model on a labeled file (labels unseen in training are an error).")
    ev.add_argument("--model", required=True, metavar="DIR", help="the --out directory of `nlpft finetune`")
    ev.add_argument("--input", required=True, metavar="FILE", help="labeled .csv, .tsv or .jsonl")
    ev.add_argument("--text-col", default=None, help="default: the column the model was trained on")
    ev.add_argument("--text-pair-col", default=None, help="pair models: default: the column the model was trained on")
    ev.add_argument("--label-col", default=None, help="default: the column the model was trained on")
    ev.add_argument("--out", metavar="DIR", help="also write metrics.json, report.md, predictions.csv and plots to "
                                                 "this " + OUT_HELP)
    add_overwrite_option(ev)
    ev.add_argument("--batch-size", type=positive_int, default=32, help="default: %(default)s")
    ev.add_argument("--normalize-labels", action="store_true",
                    help="merge labels that differ only in case into the model's spelling (automatic when the "
                         "model was fine-tuned with --normalize-labels)")
    ev.add_argument("--json", action="store_true", help="print JSON")
    ev.add_argument("--config", metavar="FILE", help="YAML or JSON file of options")
    ev.set_defaults(_handler=run_evaluate, _parser=ev)


OPTION_KEYS = ("valid", "test", "model", "text_col", "text_pair_col", "label_col", "task", "label_delimiter",
               "skip_bad_rows", "normalize_labels", "valid_fraction", "test_fraction", "epochs", "max_steps", "lr",
               "batch_size", "grad_accum", "max_length", "warmup", "weight_decay", "scheduler", "class_weights",
               "patience", "eval_every", "checkpoint_every", "group_by_length", "freeze_embeddings",
               "no_gradual_unfreeze", "layer_lr_factor", "random_init", "pooling", "precision", "seed", "threads",
               "quiet", "resume", "overwrite")


def run_finetune(args: argparse.Namespace) -> int:
    from nlpft.runners.finetune import FinetuneOptions, finetune

    values = {k: getattr(args, k) for k in OPTION_KEYS}
    return run_training(lambda: finetune(FinetuneOptions(train=args.train, out=args.out, **values)),
                        max_memory_gb=args.max_memory_gb)


def run_predict(args: argparse.Namespace) -> int:
    from nlpft.runners.finetune import predict

    result = predict(args.model, args.input, args.text, args.out, text_col=args.text_col,
                     batch_size=args.batch_size, text_pair=args.text_pair, text_pair_col=args.text_pair_col)
    if result["skipped"]:
        rows = ", ".join(str(s.row) for s in result["skipped"][:10])
        more = f" and {len(result['skipped']) - 10} more" if len(result["skipped"]) > 10 else ""
        print(f"skipped {len(result['skipped'])} rows without text (rows {rows}{more})", file=sys.stderr)
    if result["truncated"]:
        print(f"{result['truncated']} texts were longer than {result['max_length']} tokens and were cut",
              file=sys.stderr)
    if args.text is not None:
        scores, names = result["scores"][0], result["names"]
        if result["task"] == "regression":
            print(f"{float(scores):.6g}")
        elif result["task"] == "multi":
            chosen = [n for n, on in zip(names, result["decided"][0], strict=True) if on]
            print(";".join(chosen) if chosen else "(no label)")
            for name, p in sorted(zip(names, scores, strict=True), key=lambda x: -x[1])[:5]:
                print(f"  {name}\t{p:.4f}")
        else:
            print(names[int(result["decided"][0])])
            for name, p in sorted(zip(names, scores, strict=True), key=lambda x: -x[1])[:5]:
                print(f"  {name}\t{p:.4f}")
    else:
        print(f"{len(result['rows'])} predictions -> {args.out}", file=sys.stderr)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from nlpft.runners.finetune import evaluate

    result = evaluate(args.model, args.input, out=args.out, text_col=args.text_col, label_col=args.label_col,
                      batch_size=args.batch_size, text_pair_col=args.text_pair_col,
                      normalize_labels=args.normalize_labels, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(result["headline"])
    per = result.get("per_class") or result.get("per_label")
    if per:
        width = max(len(n) for n in per)
        print(f"{'label':<{width}}  precision  recall     F1  support")
        for name, v in per.items():
            print(f"{name:<{width}}  {v['precision']:9.3f}  {v['recall']:6.3f}  {v['f1']:5.3f}  {v['support']:7d}")
    return 0
