"""Named corpora: `--corpus austen` instead of a path; `resolve_corpus` also takes paths and
dataset sources (`nlpft.data.sources`).

The registry (`corpora/registry.json`, installed as `nlpft.corpora`) says where each
corpus lives. `gensim` entries ship with gensim's test data; `shared` entries are looked
up in `$NLPFT_CORPORA_DIR` and then in `../shared/corpora` beside a development checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from nlpft.data.corpus import DatasetLines, TextCorpus
from nlpft.data.sources import dataset_source
from nlpft.errors import UserInputError


@dataclass(frozen=True)
class CorpusEntry:
    name: str
    description: str
    source: str
    licence: str
    location: dict
    sha256: str
    bytes: int
    obtain: str

    def path(self) -> Path | None:
        """Where the corpus is on this machine, or None when it is not here."""
        if "package" in self.location:  # small files installed with nlpft itself
            candidate = Path(str(resources.files("nlpft.corpora").joinpath(self.location["package"])))
            return candidate if candidate.is_file() else None
        if "gensim" in self.location:
            from gensim.test.utils import datapath

            candidate = Path(datapath(self.location["gensim"]))
            return candidate if candidate.is_file() else None
        for folder in shared_corpora_dirs():
            candidate = folder / self.location["shared"]
            if candidate.is_file():
                return candidate
        return None

    def verify(self) -> bool:
        path = self.path()
        if path is None:
            return False
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest() == self.sha256


def shared_corpora_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("NLPFT_CORPORA_DIR"):
        dirs.append(Path(os.environ["NLPFT_CORPORA_DIR"]))
    dirs.append(Path.cwd().parent / "shared" / "corpora")
    # a development checkout: <root>/nlpft/data/registry.py -> <root>/../shared/corpora
    dirs.append(Path(__file__).resolve().parents[3] / "shared" / "corpora")
    return dirs


def load_registry() -> dict[str, CorpusEntry]:
    text = resources.files("nlpft.corpora").joinpath("registry.json").read_text(encoding="utf-8")
    return {name: CorpusEntry(name=name, **fields) for name, fields in json.loads(text).items()}


#: what `resolve_corpus` takes, for the --help of the commands that read a corpus
CORPUS_HELP = ("text file(s), .gz/.bz2/.xz, directories of text files, names from `nlpft corpus list`, or "
               "datasets: hf:NAME[:CONFIG][@SPLIT] (the Hub or its local cache), .parquet files, save_to_disk "
               "directories (one row = one document, from --text-col)")


def resolve_corpus(specs: str | list[str], text_col: str = "text", streaming: bool = False) -> TextCorpus:
    """A `TextCorpus` for paths, registry names (paths win when both exist) and dataset
    sources (hf:NAME[:CONFIG][@SPLIT], Parquet files, save_to_disk directories), whose
    `text_col` column is read; `streaming` streams the hf: and Parquet ones."""
    specs = [specs] if isinstance(specs, str) else list(specs)
    registry = None
    paths: list[Path | DatasetLines] = []
    for spec in specs:
        source = dataset_source(spec)
        if source is not None:
            paths.append(DatasetLines(source, text_col, streaming=streaming and source.streamable))
            continue
        if Path(spec).exists():
            paths.append(Path(spec))
            continue
        registry = registry or load_registry()
        entry = registry.get(spec)
        if entry is None:
            if os.sep in spec or "." in spec:
                raise UserInputError(
                    f"{spec}: no such file or directory; pass a text file, a .gz/.bz2 file, "
                    "a directory of text files, or a name from `nlpft corpus list`"
                )
            raise UserInputError(
                f"{spec}: not a path and not a known corpus; known: {', '.join(sorted(registry))}"
            )
        path = entry.path()
        if path is None:
            raise UserInputError(
                f"corpus {spec!r} is not on this machine; to get it: {entry.obtain}"
            )
        paths.append(path)
    if streaming and not any(isinstance(p, DatasetLines) and p.streaming for p in paths):
        raise UserInputError("--streaming reads hf: sources and Parquet files, and --corpus names none; drop "
                             "--streaming (files are read in pieces already)")
    return TextCorpus(paths, name="+".join(specs) if len(specs) > 1 else None)


def resolve_labeled_file(spec: str) -> str:
    """A labeled file path: `spec` itself when it exists (or does not name a registry
    entry), else the file of the registry entry it names (e.g. `polarity`, `bbc-news`)."""
    if Path(spec).exists():
        return spec
    entry = load_registry().get(spec)
    if entry is None:
        return spec  # the reader reports the missing file
    path = entry.path()
    if path is None:
        raise UserInputError(f"dataset {spec!r} is not on this machine; to get it: {entry.obtain}")
    return str(path)
