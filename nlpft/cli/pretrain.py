"""`nlpft pretrain`: GPT-2 / BERT-style transformers, from scratch or continued."""

from __future__ import annotations

import argparse
from pathlib import Path

from nlpft.cli.corpus import add_corpus_options
from nlpft.cli.main import (
    add_common_options,
    add_offline_option,
    add_training_options,
    non_negative_float,
    positive_float,
    positive_int,
    run_training,
)

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
    p = commands.add_parser("pretrain", help="pretrain or continue pretraining a GPT-2/BERT-style transformer",
                            description=DESCRIPTION, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_options(p, "needs --max-steps, which decides how much of the stream is read (and kept on disk "
                          "under OUT.partial while the run lasts)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--arch", choices=["gpt2", "bert"], help="pretrain a fresh model of this architecture")
    what.add_argument("--from", dest="from_model", metavar="MODEL",
                      help="continue pretraining this checkpoint (alias, directory or hub id)")
    add_offline_option(p)
    add_common_options(p)
    add_training_options(p, "default: 1; --max-steps wins when given")
    m = p.add_argument_group("model and data")
    p.add_argument("--name", metavar="NAME",
                   help="also remember the result under this model name (`nlpft models list` shows it; "
                        "--model NAME / --from NAME use it)")
    m.add_argument("--size", choices=["tiny", "small", "base"], default="tiny",
                   help="size preset with --arch (default: %(default)s; see above)")
    m.add_argument("--objective", choices=["mlm", "mlm+nsp", "clm"], default=None,
                   help="what the model learns (default: its own: clm for gpt2 and GPT-style checkpoints, mlm for "
                        "bert and BERT-style ones); mlm+nsp: masked LM plus next-sentence prediction on sentence "
                        "pairs (BERT only)")
    m.add_argument("--tokenizer", metavar="DIR",
                   help="use this Hugging Face tokenizer (a directory or alias) instead of training one")
    m.add_argument("--vocab-size", type=positive_int, default=None, help="ids of the trained tokenizer (default: by size)")
    m.add_argument("--block-size", type=positive_int, default=None,
                   help="tokens per training block (default: the size preset's, 128 with --from)")
    m.add_argument("--freeze-base", action="store_true",
                   help="train only the LM head (e.g. fit MiniLM's new MLM head before adapting the encoder)")
    m.add_argument("--mlm-probability", type=float, default=0.15, help="share of tokens masked (default: %(default)s)")
    m.add_argument("--valid-fraction", type=float, default=0.05, help="held-out share (default: %(default)s)")
    m.add_argument("--test-fraction", type=float, default=0.05, help="test share (default: %(default)s)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--batch-size", type=positive_int, default=32, help="blocks per step per process (default: %(default)s)")
    o.add_argument("--grad-accum", type=positive_int, default=1, help="batches per optimizer step (default: %(default)s)")
    o.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default: 1e-3 from scratch, 5e-5 with --from)")
    o.add_argument("--warmup", type=non_negative_float, default=0.05,
                   help="warmup: a fraction of all steps if below 1, else a number of steps (default: %(default)s)")
    o.add_argument("--scheduler", choices=["cosine", "linear", "constant_with_warmup"], default="cosine",
                   help="learning-rate schedule after warmup (default: %(default)s)")
    o.add_argument("--weight-decay", type=non_negative_float, default=0.01, help="default: %(default)s")
    o.add_argument("--eval-every", type=positive_int, default=200, help="steps between validations (default: %(default)s)")
    o.add_argument("--max-eval-blocks", type=positive_int, default=200,
                   help="validation/test blocks (sentence pairs with mlm+nsp) used, spread over the split "
                        "(default: %(default)s)")
    o.add_argument("--checkpoint-every", type=positive_int, default=200, help="steps between checkpoints (default: %(default)s)")
    o.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: bf16 autocast where the hardware does bf16 natively (AVX-512 BF16/AMX CPUs, "
                        "recent GPUs), else fp32; weights stay fp32 (default: %(default)s)")
    o.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: all cores)")
    o.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(_handler=run_pretrain, _parser=p)


OPTION_KEYS = ("arch", "from_model", "objective", "size", "tokenizer", "vocab_size", "block_size", "valid_fraction",
               "test_fraction", "mlm_probability", "freeze_base", "epochs", "max_steps", "batch_size", "grad_accum", "lr",
               "warmup", "weight_decay", "scheduler", "eval_every", "checkpoint_every", "max_eval_blocks",
               "precision", "seed", "threads", "quiet", "report_to", "resume", "overwrite", "name", "text_col",
               "streaming")


def run_pretrain(args: argparse.Namespace) -> int:
    return run_training(lambda: pretrain_from_args(args), max_memory_gb=args.max_memory_gb)


def pretrain_from_args(args: argparse.Namespace) -> Path:
    """The run of `nlpft pretrain` (and of `nlpft.pretrain(...)`); returns OUT."""
    from nlpft.runners.pretrain import PretrainOptions, pretrain

    values = {k: getattr(args, k) for k in OPTION_KEYS}
    return pretrain(PretrainOptions(corpus=args.corpus, out=args.out, **values))
