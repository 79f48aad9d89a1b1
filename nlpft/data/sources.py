"""Inputs that the `datasets` library reads: a dataset on the Hugging Face Hub (or in the
local cache), a Parquet file, or a directory written by `Dataset.save_to_disk`.

How they are named wherever nlpft takes a labeled file or a corpus:

* `hf:NAME[:CONFIG][@SPLIT]` -> `datasets.load_dataset(NAME, CONFIG, split=SPLIT)`. NAME is a
  Hub id (`org/name`) or anything else `load_dataset` takes, such as a local folder of data
  files; SPLIT may be any split expression `load_dataset` takes (`train[:1000]`).
* `FILE.parquet` -> `load_dataset("parquet", data_files=FILE)`: one split.
* `DIR[@SPLIT]`, a `save_to_disk` directory (it holds state.json and dataset_info.json, or
  dataset_dict.json) -> `datasets.load_from_disk(DIR)`.

Without @SPLIT a source with several splits is read by the role it plays: `train` for
training, `validation` (or `valid`, `val`, `dev`) for validation, `test` for testing; a
missing split is a one-line error listing the splits the source has. When several splits
were there to choose from, `OpenedDataset.note` says which one was read.

`datasets` is imported only when such a source is opened: telling whether a spec is one
(`dataset_source`) is string and file-system work, so `--help` and CSV runs never pay for
the import. What goes wrong while loading (no such dataset, configuration or split, no
network, a file that is not Parquet, ...) becomes a one-line `UserInputError` naming the
source and the fix. Loading scripts are never run (`trust_remote_code` is never
set): a dataset that needs one is refused.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from nlpft.data.input_files import check_not_stream
from nlpft.errors import UserInputError

HUB_PREFIX = "hf:"
PARQUET_SUFFIX = ".parquet"
#: the files `Dataset.save_to_disk` / `DatasetDict.save_to_disk` write at the top of their directory
DATASET_MARKERS = ("state.json", "dataset_info.json")
DATASET_DICT_MARKER = "dataset_dict.json"
#: the splits a role reads when the source names none, in order of preference
ROLE_SPLITS = {"train": ("train",), "valid": ("validation", "valid", "val", "dev"), "test": ("test",)}
SOURCE_FORMS = "hf:NAME[:CONFIG][@SPLIT], a .parquet file or a save_to_disk directory"


@dataclass(frozen=True)
class DatasetSource:
    """One dataset source as parsed from its spec; `given` is the spec as the user wrote it."""

    given: str
    kind: str  # "hub" | "parquet" | "disk"
    location: str  # the Hub name (or what load_dataset takes), the Parquet file or the directory
    config: str | None = None
    split: str | None = None

    @property
    def local_path(self) -> Path | None:
        """The file or directory the data is read from when it is on this machine."""
        if self.kind != "hub":
            return Path(self.location)
        return Path(self.location) if os.path.exists(self.location) else None

    @property
    def without_split(self) -> str:
        return self.given[: -len(self.split) - 1] if self.split is not None else self.given

    @property
    def streamable(self) -> bool:
        return self.kind in ("hub", "parquet")


def dataset_source(spec: str | os.PathLike | None) -> DatasetSource | None:
    """The dataset source `spec` names, or None when it is a plain file (or a registry name).
    Raises UserInputError for an `hf:` spec without a name."""
    if spec is None:
        return None
    given = os.fspath(spec)
    if given.startswith(HUB_PREFIX):
        return _hub_source(given)
    if given.lower().endswith(PARQUET_SUFFIX):
        return DatasetSource(given, "parquet", given)
    if is_saved_dataset(given):
        return DatasetSource(given, "disk", given)
    base, at, split = given.rpartition("@")
    if at and split and is_saved_dataset(base):
        return DatasetSource(given, "disk", base, split=split)
    return None


def _hub_source(given: str) -> DatasetSource:
    body = given[len(HUB_PREFIX):]
    split = None
    if "@" in body:
        body, split = body.rsplit("@", 1)
        if not split:
            raise UserInputError(f"{given}: nothing after '@'; name a split (hf:NAME@train) or drop the '@'")
    name, _, config = body.partition(":")
    if not name:
        raise UserInputError(f"{given}: no dataset name; write hf:NAME[:CONFIG][@SPLIT], e.g. hf:stanfordnlp/imdb")
    return DatasetSource(given, "hub", name, config or None, split)


def is_saved_dataset(path: str | os.PathLike) -> bool:
    """Whether `path` is a directory written by `save_to_disk` (a Dataset or a DatasetDict)."""
    folder = Path(path)
    if not folder.is_dir():
        return False
    return all((folder / name).is_file() for name in DATASET_MARKERS) or (folder / DATASET_DICT_MARKER).is_file()


def input_path(spec: str | None) -> str | None:
    """What of an input lies on this machine, for the checks that compare paths (an output
    must not overlap an input): a dataset source's file or directory, a file spec itself."""
    source = dataset_source(spec)
    if source is None:
        return spec
    local = source.local_path
    return str(local) if local is not None else None


# -- opening ---------------------------------------------------------------------------------
@dataclass
class OpenedDataset:
    """A loaded split: a `datasets.Dataset` (an `IterableDataset` when streamed), the name of
    the split read, and a line saying which split was picked when the source had several."""

    source: DatasetSource
    dataset: object
    split: str
    note: str | None = None

    @property
    def columns(self) -> list[str]:
        names = self.dataset.column_names
        if names is None:  # a streamed source whose columns are known only from its rows
            first = next(iter(self.dataset.take(1)), {})
            names = list(first)
        return list(names)

    @property
    def features(self) -> dict:
        return dict(self.dataset.features or {})

    def data_location(self) -> str | Path:
        """What identifies the data read, for a fingerprint: the spec of a Hub dataset, the
        Parquet file, the directory of the split read from a save_to_disk directory."""
        if self.source.kind == "parquet":
            return Path(self.source.location)
        if self.source.kind == "disk":
            folder = Path(self.source.location)
            return folder / self.split if (folder / DATASET_DICT_MARKER).is_file() else folder
        return self.source.given


def open_dataset(source: DatasetSource, role: str = "train", streaming: bool = False) -> OpenedDataset:
    """The split of `source` that `role` reads (see the module docstring), loaded or streamed."""
    if role not in ROLE_SPLITS:
        raise ValueError(f"role must be one of {', '.join(ROLE_SPLITS)}, not {role!r}")
    if streaming and not source.streamable:
        raise UserInputError(f"{source.given}: --streaming reads hf: sources and Parquet files; a save_to_disk "
                             "directory is read in place already: drop --streaming")
    if source.kind != "hub":
        _check_local(source)
    with _datasets_settings(source), _one_line_errors(source):
        if source.kind == "disk":
            return _pick_split(source, _load_from_disk(source.location), role)
        import datasets

        if source.kind == "parquet":
            loaded = datasets.load_dataset("parquet", data_files=source.location, split="train", streaming=streaming)
            return OpenedDataset(source, loaded, "train")  # a Parquet file is one split
        if source.split is not None:  # any split expression load_dataset takes, e.g. train[:1000]
            loaded = datasets.load_dataset(source.location, source.config, split=source.split, streaming=streaming)
            return OpenedDataset(source, loaded, source.split)
        return _pick_split(source, datasets.load_dataset(source.location, source.config, streaming=streaming), role)


def _check_local(source: DatasetSource) -> None:
    path = Path(source.location)
    if not path.exists():
        what = "file" if source.kind == "parquet" else "directory"
        raise UserInputError(f"{source.given}: no such {what}; pass an existing one, or {SOURCE_FORMS}")
    check_not_stream(path)
    if source.kind == "parquet" and path.is_dir():
        raise UserInputError(f"{source.given}: is a directory; pass one Parquet file")


def _load_from_disk(location: str):
    import datasets

    return datasets.load_from_disk(location)


def _pick_split(source: DatasetSource, loaded, role: str) -> OpenedDataset:
    """The split `source` names, else the one `role` reads, from a dict of splits (a single
    Dataset is its own split)."""
    if not hasattr(loaded, "keys"):
        if source.split is not None:
            raise UserInputError(f"{source.without_split}: holds a single dataset, not named splits; "
                                 f"drop '@{source.split}'")
        return OpenedDataset(source, loaded, "train")
    available = list(loaded.keys())
    if source.split is not None:
        if source.split not in available:
            raise UserInputError(f"{source.without_split}: no split {source.split!r}; it has "
                                 f"{_listed(available)}: pass {source.without_split}@SPLIT with one of them")
        return OpenedDataset(source, loaded[source.split], source.split)
    wanted = ROLE_SPLITS[role]
    name = next((candidate for candidate in wanted if candidate in available), None)
    if name is None:
        raise UserInputError(f"{source.given}: no {wanted[0]} split; it has {_listed(available)}: pass "
                             f"{source.given}@SPLIT with one of them")
    note = None
    if len(available) > 1:
        note = (f"{source.given}: reading split {name!r} (it has {_listed(available)}); name another with "
                f"{source.given}@SPLIT")
    return OpenedDataset(source, loaded[name], name, note)


def _listed(names) -> str:
    return ", ".join(names) if names else "none"


@contextlib.contextmanager
def _datasets_settings(source: DatasetSource):
    """`datasets` set for one load: errors only through its logger (they are reported here);
    for data already on this machine no "Generating train split" bars and no request to the
    Hub to count the load (a Hub download keeps both)."""
    import datasets
    from datasets.utils import logging as ds_logging

    local = source.local_path is not None
    bars_were_on = not datasets.are_progress_bars_disabled()
    verbosity = ds_logging.get_verbosity()
    counting = datasets.config.HF_UPDATE_DOWNLOAD_COUNTS
    ds_logging.set_verbosity_error()
    if local:
        datasets.disable_progress_bars()
        datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False
    try:
        yield
    finally:
        ds_logging.set_verbosity(verbosity)
        datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = counting
        if bars_were_on:
            datasets.enable_progress_bars()


#: where the errors of a load come from besides `datasets` itself: reading files, talking to the Hub
_LOADING_LIBRARIES = ("datasets", "pyarrow", "fsspec", "huggingface_hub", "httpx")
_CHOICES = re.compile(r"(?:Available|available configs):\s*\[([^\]]*)\]")
_SPLITS = re.compile(r"Should be one of \[([^\]]*)\]")


@contextlib.contextmanager
def _one_line_errors(source: DatasetSource):
    """Whatever `datasets` raises while loading, as one UserInputError naming the source."""
    try:
        yield
    except UserInputError:
        raise
    except Exception as exc:  # noqa: BLE001 -- the datasets library raises many kinds; each becomes one line
        error = _explained(source, exc)
        if error is None:
            raise
        raise error from None


def _explained(source: DatasetSource, exc: Exception) -> UserInputError | None:
    from datasets import exceptions as ds_exceptions

    given = source.given
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if "scripts are no longer supported" in first or "trust_remote_code" in str(exc):
        return UserInputError(f"{given}: the dataset needs a loading script, and nlpft never runs a dataset's code; "
                              "use a copy of it in Parquet (on the Hub: its refs/convert/parquet revision) or "
                              "save_to_disk format")
    if isinstance(exc, ds_exceptions.DatasetNotFoundError):
        return UserInputError(f"{given}: no such dataset on the Hugging Face Hub, or it is private or gated "
                              "(log in with `hf auth login`); check the name")
    if isinstance(exc, ConnectionError) or "OfflineModeIsEnabled" in first:
        return UserInputError(f"{given}: not in the local cache, and the Hub cannot be reached ({first}); connect "
                              "to the network (and unset HF_HUB_OFFLINE), or pass a Parquet file or a "
                              "save_to_disk directory")
    if isinstance(exc, ValueError) and ("BuilderConfig" in first or "Config name is missing" in first):
        found = _CHOICES.search(str(exc))
        names = ", ".join(n.strip(" '\"") for n in found.group(1).split(",")) if found else "see the dataset card"
        if source.config is None:
            return UserInputError(f"{given}: the dataset has several configurations ({names}); name one with "
                                  f"{HUB_PREFIX}{source.location}:CONFIG")
        return UserInputError(f"{given}: no configuration {source.config!r}; it has {names}: pass "
                              f"{HUB_PREFIX}{source.location}:CONFIG with one of them")
    if isinstance(exc, ValueError) and first.startswith("Unknown split"):
        found = _SPLITS.search(first)
        splits = ", ".join(n.strip(" '\"") for n in found.group(1).split(",")) if found else "other splits"
        return UserInputError(f"{source.without_split}: no split {source.split!r}; it has {splits}: pass "
                              f"{source.without_split}@SPLIT with one of them")
    if isinstance(exc, (FileNotFoundError, ds_exceptions.DataFilesNotFoundError)):
        return UserInputError(f"{given}: no dataset found there ({first}); check the name, or pass {SOURCE_FORMS}")
    if isinstance(exc, (ds_exceptions.DatasetsError, OSError, ValueError)) or type(exc).__module__.startswith(
            _LOADING_LIBRARIES):
        return UserInputError(f"{given}: cannot be loaded ({type(exc).__name__}: {first}); check that it is "
                              f"{SOURCE_FORMS}")
    return None
