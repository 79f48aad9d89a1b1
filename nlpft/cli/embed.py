"""`nlpft embed train | eval | neighbors`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nlpft.cli.corpus import add_corpus_options
from nlpft.cli.main import (
    add_command_group,
    add_common_options,
    add_training_options,
    run_training,
)
from nlpft.cli.options import add_options, from_args

TRAIN_DESCRIPTION = """\
Train static word vectors from a corpus.

  word2vec  skip-gram or CBOW, with negative sampling or hierarchical softmax (gensim)
  fasttext  like word2vec, plus character n-gram (subword) vectors for unseen words (gensim)
  glove     GloVe: global co-occurrence counts fitted by weighted least squares (nlpft)

The corpus is read through nlpft's word tokenizer (NFKC, lowercase, split on anything
that is not a letter or digit), one line = one sentence: windows never cross lines.

Output (--out DIR):
  vectors.bin, vectors.txt   word2vec binary / text (gensim: KeyedVectors.load_word2vec_format)
  vectors.glove.txt          GloVe text format (no header)
  fasttext.bin               fastText only: the subword model (gensim.models.fasttext.load_facebook_model)
  tokenizer.json             the tokenizer with this vocabulary (stock `tokenizers` loads it)
  config.json, metrics.json  every resolved option; corpus counts, time, words/s, final loss
"""

TRAIN_EPILOG = """\
examples:
  nlpft embed train --algo word2vec --corpus lee --out runs/w2v
  nlpft embed train --algo word2vec --architecture cbow --loss hierarchical --corpus austen.txt --out runs/cbow
  nlpft embed train --algo fasttext --corpus texts/ --min-n 3 --max-n 5 --out runs/ft
  nlpft embed train --algo glove --corpus austen.txt kjv.txt --dim 100 --epochs 15 --out runs/glove
  nlpft embed train --algo glove --corpus big.txt.gz --out runs/glove --resume   # after an interruption
"""


def register(commands: argparse._SubParsersAction) -> None:
    from nlpft.embeddings.config import FASTTEXT, GLOVE, VOCABULARY, WORD2VEC
    from nlpft.embeddings.options import (
        EmbedEvalOptions,
        EmbedNeighborsOptions,
        EmbedTrainOptions,
    )

    embed, verbs = add_command_group(commands, "embed", help="static word vectors: train, evaluate, query",
                                description="Static word vectors: Word2Vec, fastText and GloVe.")

    train = verbs.add_parser("train", help="train vectors from a corpus", description=TRAIN_DESCRIPTION,
                             epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(train, EmbedTrainOptions)
    add_corpus_options(train, "the stream is read once, into the token file training passes over (with "
                              "word2vec/fastText, --max-steps bounds how much of it is read)")
    add_common_options(train)
    add_training_options(train, "default: 5 for word2vec/fastText, 15 for GloVe", max_memory_default=8.0,
                         max_memory_help="; also refuses to start when the estimated vector tables exceed it",
                         reports_training=False)
    add_options(train, EmbedTrainOptions, groups=(VOCABULARY, WORD2VEC, FASTTEXT, GLOVE))
    train.set_defaults(_handler=run_train, _parser=train)

    ev = verbs.add_parser("eval", help="analogy and word-similarity scores",
                          description="Evaluate vectors on Google analogies, WordSim-353 and SimLex-999 "
                                      "(from gensim's installed test data) and on your own files of the same formats.")
    add_options(ev, EmbedEvalOptions)
    add_common_options(ev, out_required=False)
    ev.set_defaults(_handler=run_eval, _parser=ev)

    nb = verbs.add_parser("neighbors", help="nearest neighbours of words",
                          description="Nearest neighbours by cosine similarity; `--analogy a b c` gives b - a + c.")
    add_options(nb, EmbedNeighborsOptions)
    nb.add_argument("--config", metavar="FILE", help="YAML or JSON file of options")
    nb.set_defaults(_handler=run_neighbors, _parser=nb)


def run_train(args: argparse.Namespace) -> int:
    return run_training(lambda: train_from_args(args), max_memory_gb=args.max_memory_gb)


def train_from_args(args: argparse.Namespace) -> Path:
    """The run of `nlpft embed train` (and of `nlpft.embed.train(...)`); returns OUT."""
    from nlpft.embeddings.options import EmbedTrainOptions
    from nlpft.runners.embed import train_embeddings

    # the runner imports gensim: here, after run_training's signal handlers are in place
    return train_embeddings(from_args(EmbedTrainOptions, args))


def run_eval(args: argparse.Namespace) -> int:
    from nlpft.embeddings.evaluation import evaluate, format_table
    from nlpft.embeddings.options import EmbedEvalOptions
    from nlpft.embeddings.vectors_io import load_vectors

    opts = from_args(EmbedEvalOptions, args)
    output = None
    if opts.out:
        from nlpft.runners.output import RunOutput, write_json

        output = RunOutput(opts.out, overwrite=opts.overwrite, command="embed eval",
                           inputs=[opts.vectors, *(opts.analogies or []), *(opts.similarity or [])])
    kv = load_vectors(opts.vectors)
    results = evaluate(kv, analogy_files=opts.analogies, similarity_files=opts.similarity,
                       restrict_vocab=opts.restrict_vocab)
    if opts.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_table(results))
    if output is not None:
        work = output.open()
        with output.cleaned_up_on_error():
            write_json(work / "eval.json", {"vectors": str(opts.vectors), "results": results})
            (work / "eval.txt").write_text(format_table(results) + "\n")
            output.publish()
        print(f"wrote {output.final}/eval.json", file=sys.stderr)
    return 0


def run_neighbors(args: argparse.Namespace) -> int:
    from nlpft.embeddings.evaluation import analogy, nearest_neighbors
    from nlpft.embeddings.options import EmbedNeighborsOptions
    from nlpft.embeddings.vectors_io import load_vectors
    from nlpft.errors import UserInputError

    opts = from_args(EmbedNeighborsOptions, args)
    if not opts.words and not opts.analogy:
        raise UserInputError("give one or more words, or --analogy A B C")
    kv = load_vectors(opts.vectors)
    results = nearest_neighbors(kv, opts.words, topn=opts.topn) if opts.words else {}
    if opts.analogy:
        a, b, c = opts.analogy
        results[f"{a}:{b}::{c}:?"] = analogy(kv, a, b, c, topn=opts.topn)
    if opts.json:
        print(json.dumps({k: [[w, float(s)] for w, s in v] for k, v in results.items()}, indent=2))
        return 0
    for query, neighbours in results.items():
        print(query)
        for word, score in neighbours:
            print(f"  {score:6.3f}  {word}")
    return 0
