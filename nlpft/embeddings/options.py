"""The options of `nlpft embed train`, each declared once: the training options of
`EmbeddingConfig` (saved as config.json), and what the command reads and writes.

Each field generates its command-line flag and config-file key (`nlpft.cli.options`);
`validate` checks a value given in Python as the command line checks its flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nlpft.embeddings.config import VOCABULARY, EmbeddingConfig
from nlpft.options import option


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
