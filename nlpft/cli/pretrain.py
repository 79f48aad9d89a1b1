"""`nlpft pretrain`: GPT-2 / BERT-style transformers, from scratch or continued."""

from __future__ import annotations

import argparse
from pathlib import Path

from nlpft.cli.corpus import add_corpus_options
from nlpft.cli.main import (
    add_common_options,
    add_offline_option,
    add_training_options,
    run_training,
)
from nlpft.cli.options import add_options, from_args

DESCRIPTION = """\
Pretrain a transformer language model on a corpus with the Hugging Face Trainer.

From scratch (--arch): GPT-2 learns causal LM (next token), BERT learns masked LM (15% of
tokens chosen; 80% of those masked, 10% swapped, 10% kept). Unless --tokenizer is given, a
tokenizer is trained on the corpus first: byte-level BPE for GPT-2, WordPiece for BERT.

Continued, domain-adaptive pretraining (--from MODEL): any BERT- or GPT-style checkpoint (an
alias such as `minilm`, a Hugging Face directory, or a hub id) keeps training with
its own objective and tokenizer. A checkpoint saved without its LM head (MiniLM ships the
encoder only) gets a new head, initialised and learned; the command says so.

The corpus is encoded once into memory-mapped ids with a seeded train/valid/test split
(blocks of 200 lines) and packed into fixed-length blocks. Validation loss is measured
before training, every --eval-every steps and at the end (MLM: on fixed masks, so numbers
compare across runs); perplexity = exp(loss).

BERT's next-sentence prediction (--objective mlm+nsp, --arch bert or --from a BERT
checkpoint): the model (BertForPreTraining) learns masked LM and, on pairs of segments of
consecutive lines, whether segment B is the text that follows A (IsNext) or comes from
another document (NotNext), half and half, drawn with --seed. A document is the text of
one file within one 200-line split block; blank lines do not end it. Evaluation reports
the MLM loss and NSP accuracy on held-out pairs.

Checkpoints (safetensors + JSON, no pickles) are written every --checkpoint-every steps and
when Ctrl-C/SIGTERM stops the run; `--resume` continues exactly, also after a kill.

Output (--out DIR): a plain Hugging Face model directory (config.json, model.safetensors,
tokenizer files) that `AutoModelForCausalLM`/`AutoModelForMaskedLM` (mlm+nsp:
`BertForPreTraining`), `AutoTokenizer` and `pipeline(...)` load without nlpft, plus
metrics.json and nlpft_pretrain.json. `nlpft finetune --model DIR` fine-tunes it.

Size presets (layers x hidden, heads, block, trained vocabulary):
  tiny   4 x 128, 4 heads, 128 tokens, 8,192 ids     minutes on 2 CPU cores
  small  6 x 256, 8 heads, 256 tokens, 16,384 ids    about an hour on 2 CPU cores
  base   12 x 768, 12 heads, 512 tokens, 30,522 ids  GPT-2/BERT-base shape: use an accelerator
"""

EPILOG = """\
examples:
  nlpft pretrain --arch gpt2 --corpus austen --out runs/gpt --max-steps 2000
  nlpft lm generate --model runs/gpt --prompt "It is a truth universally"
  nlpft pretrain --arch bert --corpus austen kjv --out runs/bert --size tiny --epochs 2
  nlpft pretrain --from minilm --corpus kjv --out runs/minilm-kjv --max-steps 300
  nlpft pretrain --arch bert --objective mlm+nsp --corpus austen kjv --out runs/bert-nsp --max-steps 600
  nlpft pretrain --arch gpt2 --corpus austen --out runs/gpt --max-steps 20         # smoke test
  nlpft pretrain --arch gpt2 --corpus austen --out runs/gpt --resume               # after an interruption
"""


def register(commands: argparse._SubParsersAction) -> None:
    from nlpft.pretrained.options import MODEL_AND_DATA, OPTIMISATION, PretrainOptions

    p = commands.add_parser("pretrain", help="pretrain or continue pretraining a GPT-2/BERT-style transformer",
                            description=DESCRIPTION, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_options(p, "needs --max-steps, which decides how much of the stream is read (and kept on disk "
                          "under OUT.partial while the run lasts)")
    add_options(p, PretrainOptions)
    add_offline_option(p)
    add_common_options(p)
    add_training_options(p, "default: 1; --max-steps wins when given")
    add_options(p, PretrainOptions, groups=(MODEL_AND_DATA, OPTIMISATION))
    p.set_defaults(_handler=run_pretrain, _parser=p)


def run_pretrain(args: argparse.Namespace) -> int:
    return run_training(lambda: pretrain_from_args(args), max_memory_gb=args.max_memory_gb)


def pretrain_from_args(args: argparse.Namespace) -> Path:
    """The run of `nlpft pretrain` (and of `nlpft.pretrain(...)`); returns OUT."""
    from nlpft.pretrained.options import PretrainOptions
    from nlpft.runners.pretrain import pretrain

    return pretrain(from_args(PretrainOptions, args))
