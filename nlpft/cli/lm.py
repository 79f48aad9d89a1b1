"""`nlpft lm train | eval | generate`: the RNN language model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nlpft.cli.corpus import CORPUS_HELP, add_corpus_options, add_text_col_option
from nlpft.cli.main import (
    add_command_group,
    add_common_options,
    add_offline_option,
    add_training_options,
    non_negative_float,
    non_negative_int,
    positive_int,
    run_training,
    seed_int,
)
from nlpft.cli.options import add_options, from_args

TRAIN_DESCRIPTION = """\
Train an LSTM/GRU language model on a corpus.

The corpus is tokenized once (word level, nlpft's shared tokenizer: trained on the corpus,
or --tokenizer FILE, or the vocabulary of --init-vectors), every line ending in [EOS],
and stored as memory-mapped ids with a seeded train/valid/test split (blocks of 200 lines).
Training is truncated BPTT with the hidden state carried from window to window, gradient
clipping, a learning rate cut by --lr-decay whenever validation perplexity stops improving,
early stopping after --patience such evaluations, and the best weights kept.

A checkpoint is written every --checkpoint-every steps and at every epoch end; Ctrl-C or
SIGTERM writes one and stops; `--resume` continues (also after a kill). Scale out with
`torchrun --nproc-per-node N -m nlpft lm train ...` (same command, DDP).

Output (--out DIR): config.json, model.safetensors, tokenizer.json, metrics.json
(valid/test perplexity and bits per token, tokens/s, peak memory), training.json.
"""

TRAIN_EPILOG = """\
examples:
  nlpft lm train --corpus austen.txt --out runs/lm
  nlpft lm train --corpus austen.txt --out runs/lm-w2v --init-vectors runs/w2v --hidden-dim 400
  nlpft lm train --corpus austen.txt --out runs/lm --max-steps 20          # smoke test
  nlpft lm train --corpus austen.txt --out runs/lm --resume                # after an interruption
"""


def register(commands: argparse._SubParsersAction) -> None:
    from nlpft.lm.options import DATA, MODEL, OPTIMISATION, LMTrainOptions

    lm, verbs = add_command_group(commands, "lm", help="RNN language model: train, evaluate, generate",
                             description="LSTM/GRU language models.")

    train = verbs.add_parser("train", help="train a language model", description=TRAIN_DESCRIPTION,
                             epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_options(train, "needs --max-steps, which decides how much of the stream is read (and kept on disk "
                              "under OUT.partial while the run lasts)")
    add_common_options(train)
    add_training_options(train, "default: 10; early stopping may end sooner")
    add_options(train, LMTrainOptions, groups=(DATA, MODEL, OPTIMISATION))
    train.set_defaults(_handler=run_train, _parser=train)

    ev = verbs.add_parser("eval", help="perplexity on held-out text",
                          description="Perplexity and bits per token of a language model on a corpus: an "
                                      "RNN LM from `nlpft lm train`, or a transformers checkpoint (GPT-style: "
                                      "perplexity over blocks of --block-size tokens; BERT-style: MLM loss on "
                                      "fixed, seeded 15%% masks, and its exponential).")
    ev.add_argument("--model", required=True, metavar="MODEL",
                    help="the --out directory of `nlpft lm train` or `nlpft pretrain`, a model alias, a "
                         "Hugging Face directory or a hub id")
    ev.add_argument("--corpus", nargs="+", required=True, metavar="PATH", help=f"text to score: {CORPUS_HELP}")
    add_text_col_option(ev)
    ev.add_argument("--batch-size", type=positive_int, default=10, help="default: %(default)s")
    ev.add_argument("--bptt", type=positive_int, default=35, help="RNN LM: tokens per window (default: %(default)s)")
    ev.add_argument("--block-size", type=positive_int, default=None,
                    help="transformers: tokens per block (default: 512 GPT-style, 128 BERT-style, "
                         "at most the model's positions)")
    ev.add_argument("--seed", type=seed_int, default=13, help="transformers, BERT-style: seed of the masks (default: %(default)s)")
    ev.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ev.add_argument("--threads", type=positive_int, default=None)
    ev.add_argument("--json", action="store_true", help="print JSON")
    add_offline_option(ev)
    ev.add_argument("--config", metavar="FILE", help="YAML or JSON file of options")
    ev.set_defaults(_handler=run_eval, _parser=ev)

    gen = verbs.add_parser("generate", help="sample text",
                           description="Sample text from an RNN LM (`nlpft lm train`) or a GPT-style "
                                       "transformers checkpoint (e.g. from `nlpft pretrain --arch gpt2`).")
    gen.add_argument("--model", required=True, metavar="MODEL",
                     help="an `nlpft lm train` or `nlpft pretrain` directory, or a GPT-style checkpoint")
    gen.add_argument("--prompt", default="", help="text to continue (default: start of a line)")
    gen.add_argument("--max-tokens", type=non_negative_int, default=50, help="default: %(default)s")
    gen.add_argument("--temperature", type=non_negative_float, default=1.0, help="0 = greedy (default: %(default)s)")
    gen.add_argument("--top-k", type=positive_int, default=None, help="sample among the k likeliest tokens")
    gen.add_argument("--top-p", type=float, default=None, help="nucleus sampling: smallest set with this mass")
    gen.add_argument("--seed", type=seed_int, default=None, help="random seed for reproducible samples")
    add_offline_option(gen)
    gen.add_argument("--config", metavar="FILE", help="YAML or JSON file of options")
    gen.set_defaults(_handler=run_generate, _parser=gen)


def run_train(args: argparse.Namespace) -> int:
    return run_training(lambda: train_from_args(args), max_memory_gb=args.max_memory_gb)


def train_from_args(args: argparse.Namespace) -> Path:
    """The run of `nlpft lm train` (and of `nlpft.lm.train(...)`); returns OUT."""
    from nlpft.lm.options import LMTrainOptions
    from nlpft.runners.lm import train_lm

    return train_lm(from_args(LMTrainOptions, args))


def run_eval(args: argparse.Namespace) -> int:
    from nlpft.lm.files import is_rnn_lm_dir

    if is_rnn_lm_dir(args.model):
        from nlpft.runners.lm import eval_lm

        result = eval_lm(args.model, args.corpus, batch_size=args.batch_size, bptt=args.bptt,
                         precision=args.precision, threads=args.threads, text_col=args.text_col)
    else:
        from nlpft.runners.hf_lm import eval_hf_lm

        result = eval_hf_lm(args.model, args.corpus, batch_size=args.batch_size, block_size=args.block_size,
                            precision=args.precision, threads=args.threads, seed=args.seed, text_col=args.text_col)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    lines = []
    if result.get("objective") == "mlm":
        lines.append(f"MLM loss        {result['loss']:.3f}  (on {result['scored_tokens']:,} masked tokens)")
    lines += [f"perplexity      {result['perplexity']:.2f}",
              f"bits per token  {result['bits_per_token']:.3f}",
              f"tokens          {result['tokens']:,}"]
    if "oov_rate" in result:
        lines.append(f"unknown words   {result['oov_rate']:.2%}")
    print("\n".join(lines))
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from nlpft.lm.files import is_rnn_lm_dir

    options = dict(max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k,
                   top_p=args.top_p, seed=args.seed)
    if args.max_tokens < 0:
        from nlpft.errors import UserInputError

        raise UserInputError("--max-tokens must be 0 or more")
    if is_rnn_lm_dir(args.model):
        from nlpft.runners.lm import generate_lm

        text = generate_lm(args.model, args.prompt, **options)
        print((args.prompt + " " if args.prompt else "") + text)
    else:
        from nlpft.runners.hf_lm import generate_hf

        print(args.prompt + generate_hf(args.model, args.prompt, **options))
    return 0
