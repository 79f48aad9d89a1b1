"""`nlpft finetune | predict | evaluate | split`: classify (or score) a labeled CSV with any backbone."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from nlpft.cli.main import (
    OUT_HELP,
    add_common_options,
    add_config_option,
    add_offline_option,
    add_overwrite_option,
    add_training_options,
    run_training,
)
from nlpft.cli.options import (
    UNGROUPED,
    add_given_only_options,
    add_options,
    from_args,
    given_values,
)

DESCRIPTION = """\
Fine-tune a text classifier (or regressor) on a labeled CSV, TSV or JSONL file, or a
tagger (--task tag: one tag per word, e.g. named entities) on a CoNLL, JSONL or CSV file
of tokens and IOB2/IOB1/BIOES tags. A classifier also reads what the `datasets` library
reads: a Parquet file, a save_to_disk directory (DIR@SPLIT), or hf:NAME[:CONFIG][@SPLIT]
from the Hugging Face Hub or its local cache (row numbers are then the dataset's row
indices, and a ClassLabel column gives its label names).

The file is read and checked before any model loads: missing columns, empty texts or
labels, ragged rows, bad encodings and single-class files are reported at once, with row
numbers (--skip-bad-rows trains on the good rows and says how many were dropped). Labels
are read as text ("1" and "1.0" are different labels); labels that differ only in case
("Pos", "pos") are reported with their counts, and --normalize-labels makes them one class
named by the most frequent spelling. Without --valid/--test files, a seeded, stratified
80/10/10 split is made.

Backbones (--model), tried in this order:
{backbones}
Methods (--method), how the backbone is trained:
{methods}

Training uses the Hugging Face Trainer: warmup then linear decay, evaluation every epoch
(or --eval-every steps), the best weights by validation macro F1 kept, early stopping after
--patience evaluations without improvement, dynamic padding with length-grouped batches,
checkpoints (safetensors + JSON) every --checkpoint-every steps; --resume continues after
an interruption, and Ctrl-C/SIGTERM saves one first.

Output (--out DIR): for transformers a standard model directory (config.json with
id2label, model.safetensors, tokenizer) that `pipeline("text-classification", model=DIR)`
loads without nlpft; plus metrics.json, report.md, confusion_matrix.png, loss_curve.png,
predictions.csv (test split: text, gold, predicted, probabilities) and finetune.json.
A test split under 200 rows is reported with 95% percentile-bootstrap intervals (1000
draws, seeded by --seed) of accuracy and macro F1 (regression: MSE).
"""

EPILOG = """\
examples:
  nlpft finetune --train bbc_news.csv --out runs/bbc                        # MiniLM, defaults
  nlpft finetune --train reviews.csv --text-col review --label-col sentiment --out runs/rev --epochs 2
  nlpft finetune --train train.csv --valid valid.csv --test test.csv --model tfidf --out runs/tfidf
  nlpft finetune --train reviews.csv --method frozen --out runs/fast         # frozen MiniLM + logistic regression
  nlpft finetune --train tags.csv --task multi --label-delimiter ";" --out runs/tags
  nlpft finetune --train bbc-news --model tfidf --search 20 --out runs/tuned   # hyperparameter search
  nlpft predict  --model runs/bbc --input new.csv --out predictions.csv
  nlpft predict  --model runs/bbc --text "Shares rose sharply after the results"
  nlpft evaluate --model runs/bbc --input test.csv
  nlpft finetune --task tag --train tweets.conll --out runs/ner              # NER, MiniLM
  nlpft finetune --task tag --train tweets.conll --model runs/w2v --crf --out runs/ner-bilstm
  nlpft predict  --model runs/ner --text "Obama visited the Empire State Building"
"""

SPLIT_DESCRIPTION = """\
Write the seeded, stratified train/valid/test split that `nlpft finetune` makes from --train
(same reading, same checks, same rule: --seed, or --split-seed, and the same fractions) as
files: train.csv, valid.csv, test.csv (--task tag: CoNLL) in the columns read, train.txt
(the training text alone, one text a line: a corpus for `embed train` and `lm train` that
holds no validation or test row) and split.json (source, seed, fractions, row counts).

`nlpft finetune --train DATA --seed N` and `nlpft finetune --train OUT/train.csv --valid
OUT/valid.csv --test OUT/test.csv` train on the same rows. In an experiment, the corpus
`data:train` is this command's train.txt for the experiment's data.
"""

SPLIT_EPILOG = """\
examples:
  nlpft split --train bbc-news --seed 13 --out runs/bbc-split
  nlpft lm train --corpus runs/bbc-split/train.txt --out runs/bbc-lm      # an LM that never saw a test row
  nlpft finetune --train bbc-news --split-seed 13 --seed 2 --model runs/bbc-lm --out runs/bbc-rnn
"""


def register(commands: argparse._SubParsersAction) -> None:
    from nlpft.finetune import plugin_options
    from nlpft.finetune.backbones import backbone_class, backbone_names
    from nlpft.finetune.methods import AUTO_RULE, METHODS
    from nlpft.finetune.options import (
        DATA,
        OPTIMISATION,
        SEARCH,
        EvaluateOptions,
        FinetuneOptions,
        PredictOptions,
    )

    backbones = "\n".join(_backbone_line(backbone_class(name)) for name in backbone_names())
    methods = "\n".join([*(_described(method.name, method.summary) for method in METHODS.values()),
                         _described("auto", f"(the default) {AUTO_RULE}; the choice and the reason are printed "
                                            "and saved in finetune.json and metrics.json")])
    p = commands.add_parser("finetune", help="train a classifier on a labeled CSV",
                            description=DESCRIPTION.format(backbones=backbones, methods=methods), epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, FinetuneOptions, groups=(DATA, UNGROUPED))
    add_offline_option(p)
    add_common_options(p)
    add_training_options(p, "default: 3 for transformers, 20 for static vectors and the RNN LM; "
                            "early stopping may end sooner")
    add_options(p, FinetuneOptions, groups=(OPTIMISATION, SEARCH))
    for section in plugin_options.sections():  # the options each registered plug-in declares
        add_given_only_options(p, section.title, section.fields)
    p.set_defaults(_handler=run_finetune, _parser=p)

    pr = commands.add_parser("predict", help="classify new texts with a fine-tuned model",
                             description="Predict labels (and probabilities) for new texts with the --out directory "
                                         "of `nlpft finetune`. Rows without text are reported and skipped; texts "
                                         "longer than the model's limit are cut and counted (a text is first cut "
                                         "to 16 characters per token of that limit, so a huge cell costs no more "
                                         "than a page of text).")
    add_options(pr, PredictOptions)
    add_config_option(pr)
    pr.set_defaults(_handler=run_predict, _parser=pr)

    ev = commands.add_parser("evaluate", help="metrics of a fine-tuned model on a labeled file",
                             description="Accuracy, F1, MCC, per-class scores and the confusion matrix of a "
                                         "fine-tuned model on a labeled file (labels unseen in training are an error).")
    add_options(ev, EvaluateOptions)
    ev.add_argument("--out", metavar="DIR", help="also write metrics.json, report.md, predictions.csv and plots to "
                                                 "this " + OUT_HELP)
    add_overwrite_option(ev)
    add_config_option(ev)
    ev.set_defaults(_handler=run_evaluate, _parser=ev)

    sp = commands.add_parser("split", help="write the train/valid/test split that finetune makes, as files",
                             description=SPLIT_DESCRIPTION, epilog=SPLIT_EPILOG,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(sp, FinetuneOptions, groups=(DATA,))
    add_common_options(sp)
    for section in plugin_options.sections():  # how a task reads its files (--task tag: --tag-col, ...)
        if all(plugin_options.kind_of(field.name) == plugin_options.TASK for field in section.fields):
            add_given_only_options(sp, section.title, section.fields)
    sp.set_defaults(_handler=run_split, _parser=sp)


def _backbone_line(backbone) -> str:
    """One registered backbone for the description: its name, then its summary wrapped."""
    return _described(backbone.name, backbone.summary)


def _described(name: str, summary: str) -> str:
    return textwrap.fill(summary, width=88, initial_indent=f"  {name:<11} ", subsequent_indent=" " * 14)


def run_finetune(args: argparse.Namespace) -> int:
    return run_training(lambda: finetune_from_args(args), max_memory_gb=args.max_memory_gb)


def finetune_from_args(args: argparse.Namespace) -> Path:
    """The run of `nlpft finetune` (and of `nlpft.finetune(...)`); returns OUT."""
    from nlpft.finetune import plugin_options
    from nlpft.finetune.options import FinetuneOptions
    from nlpft.runners.finetune import finetune

    given = given_values(args, plugin_options.declared_fields())
    return finetune(from_args(FinetuneOptions, args, **plugin_options.split_given(given)))


def run_split(args: argparse.Namespace) -> int:
    from nlpft.finetune import plugin_options
    from nlpft.finetune.options import FinetuneOptions
    from nlpft.runners.split import split

    given = given_values(args, plugin_options.declared_fields())
    split(from_args(FinetuneOptions, args, **plugin_options.split_given(given)))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from nlpft.finetune.options import PredictOptions
    from nlpft.runners.predict import run_predict as predict

    result = predict(from_args(PredictOptions, args))
    if result["skipped"]:
        rows = ", ".join(str(s.row) for s in result["skipped"][:10])
        more = f" and {len(result['skipped']) - 10} more" if len(result["skipped"]) > 10 else ""
        print(f"skipped {len(result['skipped'])} rows without text (rows {rows}{more})", file=sys.stderr)
    if result["truncated"]:
        print(f"{result['truncated']} texts were longer than {result['max_length']} tokens and were cut",
              file=sys.stderr)
    if args.text is not None:
        print("\n".join(result["lines"]))
    else:
        print(f"{len(result['rows'])} predictions -> {args.out}", file=sys.stderr)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from nlpft.finetune.options import EvaluateOptions
    from nlpft.runners.predict import run_evaluate as evaluate

    result = evaluate(from_args(EvaluateOptions, args))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(result["headline"])
    per = result.get("per_class") or result.get("per_label") or result.get("per_type")
    if per:
        width = max(len(n) for n in per)
        print(f"{'label':<{width}}  precision  recall     F1  support")
        for name, v in per.items():
            print(f"{name:<{width}}  {v['precision']:9.3f}  {v['recall']:6.3f}  {v['f1']:5.3f}  {v['support']:7d}")
    return 0
