"""`nlpft lm train | eval | generate`: the RNN language model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nlpft.cli.corpus import add_corpus_options, add_text_col_option
from nlpft.cli.main import (
    add_command_group,
    add_common_options,
    add_offline_option,
    add_training_options,
    run_training,
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
    from nlpft.lm.options import (
        DATA,
        MODEL,
        OPTIMISATION,
        LMEvalOptions,
        LMGenerateOptions,
        LMTrainOptions,
    )

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
    add_options(ev, LMEvalOptions)
    add_text_col_option(ev)
    add_offline_option(ev)
    ev.add_argument("--config", metavar="FILE", help="YAML or JSON file of options")
    ev.set_defaults(_handler=run_eval, _parser=ev)

    gen = verbs.add_parser("generate", help="sample text",
                           description="Sample text from an RNN LM (`nlpft lm train`) or a GPT-style "
                                       "transformers checkpoint (e.g. from `nlpft pretrain --arch gpt2`).")
    add_options(gen, LMGenerateOptions)
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
    from nlpft.lm.options import LMEvalOptions

    opts = from_args(LMEvalOptions, args)
    if is_rnn_lm_dir(opts.model):
        from nlpft.runners.lm import eval_lm

        result = eval_lm(opts.model, opts.corpus, batch_size=opts.batch_size, bptt=opts.bptt,
                         precision=opts.precision, threads=opts.threads, text_col=opts.text_col)
    else:
        from nlpft.runners.hf_lm import eval_hf_lm

        result = eval_hf_lm(opts.model, opts.corpus, batch_size=opts.batch_size, block_size=opts.block_size,
                            precision=opts.precision, threads=opts.threads, seed=opts.seed, text_col=opts.text_col)
    if opts.json:
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
    from nlpft.lm.options import LMGenerateOptions

    opts = from_args(LMGenerateOptions, args)
    sampling = {"max_tokens": opts.max_tokens, "temperature": opts.temperature, "top_k": opts.top_k,
                "top_p": opts.top_p, "seed": opts.seed}
    if is_rnn_lm_dir(opts.model):
        from nlpft.runners.lm import generate_lm

        text = generate_lm(opts.model, opts.prompt, **sampling)
        print((opts.prompt + " " if opts.prompt else "") + text)
    else:
        from nlpft.runners.hf_lm import generate_hf

        print(opts.prompt + generate_hf(opts.model, opts.prompt, **sampling))
    return 0
