"""Hub ids: the local Hugging Face cache, and the Hub itself.

A hub id downloads by default, as with every Hugging Face tool; `HF_HUB_OFFLINE=1` (or a
command's `--offline`) forbids the network and uses the cache only. What is downloaded is
decided from the repo's listing, before any file is fetched: the top folder's configs,
tokenizer and vocabulary files, model cards and safetensors weights (`DOWNLOAD_PATTERNS`);
never code (*.py), pickles (*.bin, *.pt, *.pkl) or other frameworks' weights. A repo
whose only weights are such files is refused from its listing, and one whose config asks
for its own code (`auto_map`) once its JSON files are in, before its weights are fetched.

Every call to the Hub waits at most `HUB_TIMEOUT_S`, and the listing comes first, so an
unreachable Hub costs one timeout and one line, never a retry loop. Files land in the Hub
cache through huggingface_hub's own atomic writes (a temporary file renamed when
complete); `refs/main` is written only once every file is in, so an interrupted download
is not found by a later offline run.

Settings are read when a call is made (`HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_HOME`,
`HF_HUB_OFFLINE`), falling back to what huggingface_hub read when it was imported.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from nlpft.errors import UserInputError
from nlpft.pretrained.loading.safety import (
    PICKLE_WEIGHT_PATTERNS,
    first_line,
    refuse_custom_code,
)

#: seconds any one request to the Hub may wait for an answer (the listing, each file's metadata)
HUB_TIMEOUT_S = 5

#: files fetched from a repo's top folder: never code (*.py), never pickles (*.bin)
DOWNLOAD_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja", "*.md")

#: weights nlpft does not load; named when a repo has no safetensors weights
_UNLOADABLE_WEIGHT_PATTERNS = (*PICKLE_WEIGHT_PATTERNS, "*.h5", "*.msgpack", "*.onnx", "*.gguf")

_TRUE = {"1", "true", "yes", "on"}

#: (endpoint, cache, hub id) -> snapshot folder, so a command that resolves a spec several
#: times asks the Hub once
_snapshots: dict[tuple[str, str, str], Path] = {}


def hub_offline() -> bool:
    """Whether the network is forbidden: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) now or at import."""
    from huggingface_hub import constants

    return any(os.environ.get(name, "").strip().lower() in _TRUE
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")) or constants.HF_HUB_OFFLINE


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_cache_dir() -> str:
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return constants.HF_HUB_CACHE


def human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cached_snapshot(repo_id: str) -> Path | None:
    """The Hugging Face cache snapshot holding `repo_id`'s config.json, without any network."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json", cache_dir=hub_cache_dir())
    except Exception:  # invalid id, unreadable cache: treat as not cached
        return None
    return Path(found).parent if isinstance(found, str) else None


class HubUnreachable(Exception):
    """The Hub gave no listing: no connection, a timeout, or an error on its side."""


@dataclass(frozen=True)
class RepoListing:
    """What the Hub says a model repo holds, at one commit."""

    hub_id: str
    sha: str
    files: dict[str, int | None]  # path in the repo -> size in bytes (None when not reported)

    def download_files(self) -> list[str]:
        """The files nlpft fetches (see `DOWNLOAD_PATTERNS`); refuses a repo without loadable weights."""
        top = [name for name in self.files if "/" not in name]  # transformers loads the top folder only
        wanted = [name for name in top if _matches(name, DOWNLOAD_PATTERNS)]
        weights = [name for name in wanted if name.endswith(".safetensors")]
        if "model.safetensors" in weights:  # the one transformers loads; other variants are dead weight
            wanted = [name for name in wanted if not name.endswith(".safetensors") or name == "model.safetensors"]
        if not weights:
            unloadable = sorted(name for name in top if _matches(name, _UNLOADABLE_WEIGHT_PATTERNS))
            if unloadable:
                raise UserInputError(
                    f"{self.hub_id}: the repo has no safetensors weights, only {', '.join(unloadable[:3])}, which "
                    "nlpft never downloads (loading a pickle can run code); pick a repo with model.safetensors, "
                    "or convert it once where you trust the file (transformers' from_pretrained, then "
                    "save_pretrained(DIR)) and pass DIR")
        return wanted

    def download_bytes(self, files: list[str]) -> int | None:
        sizes = [self.files.get(name) for name in files]
        return None if any(size is None for size in sizes) else sum(sizes)


def _matches(name: str, patterns) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def _missing_message(hub_id: str) -> str:
    return (f"{hub_id}: not a local directory, and no such model on the Hugging Face Hub ({hub_endpoint()}), or "
            "it is private; check the path or the id (see `nlpft models list`), or log in with `hf auth login` "
            "if the repo is yours")


def _gated_message(hub_id: str) -> str:
    return (f"{hub_id}: a gated model: accept its conditions at {hub_endpoint()}/{hub_id} while logged in, then "
            "log in here with `hf auth login` (or set HF_TOKEN)")


def fetch_listing(hub_id: str) -> RepoListing:
    """The repo's files and sizes at its current commit: one request, at most HUB_TIMEOUT_S.
    A missing or gated repo raises a one-line UserInputError; no answer raises HubUnreachable."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
    )

    try:
        info = HfApi(endpoint=hub_endpoint()).model_info(hub_id, timeout=HUB_TIMEOUT_S, files_metadata=True)
    except GatedRepoError:
        raise UserInputError(_gated_message(hub_id)) from None
    except RepositoryNotFoundError:
        raise UserInputError(_missing_message(hub_id)) from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status is not None and status < 500 and status != 429:
            raise UserInputError(f"{hub_id}: the Hugging Face Hub refused the listing ({first_line(exc)})") from None
        raise HubUnreachable(first_line(exc)) from None
    except Exception as exc:  # no connection, a timeout, an answer that is not the Hub's: all "no listing"
        raise HubUnreachable(f"{type(exc).__name__}: {first_line(exc)}") from None
    if not info.sha:
        raise HubUnreachable(f"{hub_endpoint()} gave no commit for {hub_id}")
    return RepoListing(hub_id=hub_id, sha=info.sha,
                       files={s.rfilename: s.size for s in info.siblings or ()})


def hub_snapshot(hub_id: str, cached_as: tuple[str, ...] = ()) -> Path:
    """The local snapshot folder of `hub_id`: downloaded (what is missing) when the network is
    allowed, else from the cache. `cached_as`: other names the repo may be cached under.

    When the Hub gives no listing, a cached snapshot is used (with a note); without one this
    raises a one-line UserInputError, after at most HUB_TIMEOUT_S."""
    cached = next((path for name in (hub_id, *cached_as) if (path := cached_snapshot(name)) is not None), None)
    if hub_offline():
        if cached is None:
            raise UserInputError(
                f"{hub_id}: not a local directory, and not in the Hugging Face cache ({hub_cache_dir()}) while "
                "the network is off (HF_HUB_OFFLINE=1 or --offline); run it once without them, or download it "
                f"where there is internet (`hf download {hub_id} --local-dir DIR`) and pass DIR")
        return cached
    key = (hub_endpoint(), hub_cache_dir(), hub_id)
    if key not in _snapshots:
        _snapshots[key] = _fetch_or_fall_back(hub_id, cached)
    return _snapshots[key]


def _fetch_or_fall_back(hub_id: str, cached: Path | None) -> Path:
    try:
        listing = fetch_listing(hub_id)
    except HubUnreachable as exc:
        if cached is None:
            raise UserInputError(
                f"{hub_id}: not a local directory, and the Hugging Face Hub ({hub_endpoint()}) gave no answer "
                f"({exc}; nlpft waits {HUB_TIMEOUT_S} s at most), and the model is not in the cache; check the "
                "connection (or HF_ENDPOINT), pass a local checkpoint directory, or set HF_HUB_OFFLINE=1 to stop "
                "nlpft trying the network") from None
        reason = f"the Hub gave no listing ({exc})"
    except UserInputError as exc:  # missing, gated, refused: a cached copy (say, from a lost login) still loads
        if cached is None:
            raise
        reason = str(exc)
    else:
        return download_snapshot(listing)
    print(f"{hub_id}: using the cached copy in {cached}; {reason}", file=sys.stderr)
    return cached


def download_snapshot(listing: RepoListing) -> Path:
    """Fetch what `listing` allows that the cache lacks, into the cache snapshot of its commit:
    the small files first, then (once no config asks for custom code) the weights."""
    from huggingface_hub.file_download import repo_folder_name

    files = listing.download_files()
    storage = Path(hub_cache_dir()) / repo_folder_name(repo_id=listing.hub_id, repo_type="model")
    snapshot = storage / "snapshots" / listing.sha
    missing = [name for name in files if not (snapshot / name).exists()]
    if missing:
        size = listing.download_bytes(missing)
        print(f"downloading {listing.hub_id} from {hub_endpoint()}: {len(missing)} files"
              + (f", {human_size(size)}" if size is not None else ""), file=sys.stderr)
    weights = [name for name in missing if name.endswith(".safetensors")]
    for name in (name for name in missing if name not in weights):
        _download_file(listing, name)
    refuse_custom_code(snapshot, name=listing.hub_id)
    for name in weights:
        _download_file(listing, name)
    _record_main(storage, listing.sha)
    return snapshot


def _download_file(listing: RepoListing, filename: str) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        hf_hub_download(listing.hub_id, filename, revision=listing.sha, cache_dir=hub_cache_dir(),
                        endpoint=hub_endpoint(), etag_timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        raise UserInputError(_gated_message(listing.hub_id)) from None
    except RepositoryNotFoundError:
        raise UserInputError(_missing_message(listing.hub_id)) from None
    except Exception as exc:  # the connection dropped, a size mismatch, a full disk
        raise UserInputError(f"{listing.hub_id}: downloading {filename} failed ({first_line(exc)}); run the command "
                             "again (the files already complete are kept in the cache)") from None


def _record_main(storage: Path, sha: str) -> None:
    """Point refs/main at `sha`, last: until then an offline run does not find the snapshot.
    Written to a temporary file and renamed, as huggingface_hub writes its refs."""
    ref = storage / "refs" / "main"
    ref.parent.mkdir(parents=True, exist_ok=True)
    if ref.is_file() and ref.read_text() == sha:
        return
    tmp = ref.with_name(f"main.{os.getpid()}.tmp")
    tmp.write_text(sha)
    os.replace(tmp, ref)


def download_plan(hub_id: str) -> tuple[list[str], int | None]:
    """(files, bytes) that a first use of `hub_id` downloads, from the Hub's listing.
    Raises HubUnreachable, or UserInputError for a missing, gated or refused repo."""
    listing = fetch_listing(hub_id)
    files = listing.download_files()
    return files, listing.download_bytes(files)
