"""The options of `nlpft embed train | eval | neighbors`, each declared once; those of
`embed train` are the training options of `EmbeddingConfig` (saved as config.json) and
what the command reads and writes.

Each field generates its command-line flag and config-file key (`nlpft.cli.options`);
`validate` checks a value given in Python as the command line checks its flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nlpft.embeddings.config import VOCABULARY, EmbeddingConfig
from nlpft.options import option, positive_int, seed_int


@dataclass(frozen=True, kw_only=True)
class EmbedTrainOptions(EmbeddingConfig):
    # --corpus, --text-col, --streaming: nlpft.cli.corpus.add_corpus_options; a run's
    # fingerprint records them through the corpus (its files' hashes, a dataset's column)
    corpus: Sequence[str] = option(shared=True)
    text_col: str = option("text", shared=True)
    streaming: bool = option(False, shared=True)
    out: str = option(shared=True)
    resume: bool = option(False, shared=True)
    overwrite: bool = option(False, shared=True)  # replace an earlier nlpft output in `out`
    quiet: bool = option(False, "no progress bars or summary line", group=VOCABULARY)


VECTORS_HELP = "a directory written by `nlpft embed train`, or a word2vec text/binary or GloVe file"


@dataclass(frozen=True)
class EmbedEvalOptions:
    vectors: str = option(help=VECTORS_HELP, metavar="PATH", required=True)
    analogies: Sequence[str] | None = option(None, "analogy files in questions-words.txt format (default: Google "
                                                   "analogies)", nargs="*", metavar="FILE")
    similarity: Sequence[str] | None = option(None, "word-pair files: word1 word2 score, tab-separated (default: "
                                                    "WordSim-353, SimLex-999)", nargs="*", metavar="FILE")
    restrict_vocab: int = option(300_000, "only the most frequent N words answer analogies (default: %(default)s)",
                                 type=positive_int)
    json: bool = option(False, "print the results as JSON instead of a table")
    out: str | None = option(None, shared=True)  # also write eval.json and eval.txt there
    overwrite: bool = option(False, shared=True)
    seed: int = option(1, type=seed_int, shared=True)


@dataclass(frozen=True)
class EmbedNeighborsOptions:
    vectors: str = option(help="vectors directory or file", metavar="PATH", required=True)
    words: Sequence[str] | None = option(None, "words to look up", nargs="*", positional=True)
    topn: int = option(10, "neighbours per word (default: %(default)s)", type=positive_int)
    analogy: Sequence[str] | None = option(None, "a is to b as c is to ?", nargs=3, metavar=("A", "B", "C"))
    json: bool = option(False, "print JSON")
