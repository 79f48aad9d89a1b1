"""What `nlpft models info` prints about a checkpoint, read from JSON files and
safetensors headers only: no weights loaded, no code run."""

from __future__ import annotations

import json
from pathlib import Path

from nlpft.pretrained.loading.resolve import max_positions, resolve_model
from nlpft.pretrained.loading.safety import (
    check_safetensors,
    config_int,
    safetensors_header,
    weight_files,
)

_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4"}


def count_parameters(files: list[Path]) -> tuple[int, dict[str, int]]:
    """Floating-point parameter count (and count per dtype) from safetensors headers.

    Integer tensors (e.g. BERT's saved `position_ids` buffer) are not parameters.
    """
    total, by_dtype = 0, {}
    for file in files:
        for key, info in safetensors_header(file).items():
            if key == "__metadata__" or not isinstance(info, dict) or info.get("dtype") not in _FLOAT_DTYPES:
                continue
            n = 1
            for dim in info.get("shape", []):
                n *= int(dim)
            total += n
            by_dtype[info["dtype"]] = by_dtype.get(info["dtype"], 0) + n
    return total, by_dtype


def describe_model(spec) -> dict:
    """What `nlpft models info` prints: read from JSON files and safetensors headers only."""
    resolved = resolve_model(spec)
    folder, config = resolved.path, resolved.config
    safe, pickles = weight_files(folder)
    for file in safe:
        check_safetensors(file)
    parameters, by_dtype = count_parameters(safe) if safe else (None, {})
    tok_config = {}
    if (folder / "tokenizer_config.json").is_file():
        try:
            tok_config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            tok_config = {}
    positions = max_positions(config)
    max_length = tok_config.get("model_max_length")
    if not isinstance(max_length, int) or max_length >= 10**6:
        max_length = positions
    elif positions:
        max_length = min(max_length, positions)
    custom = any(
        isinstance(data, dict) and data.get("auto_map")
        for data in (config, tok_config)
    )
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {
        "name": resolved.name,
        "source": resolved.source,
        "hub_id": resolved.hub_id,
        "path": str(folder),
        "architectures": list(resolved.architectures),
        "model_type": resolved.model_type,
        "family": resolved.family,
        "parameters": parameters,
        "parameters_by_dtype": by_dtype,
        "weights": "safetensors" if safe else ("pickle (refused unless allowed)" if pickles else "none"),
        "hidden_size": config_int(config, "hidden_size", "n_embd", "d_model", "dim"),
        "layers": config_int(config, "num_hidden_layers", "n_layer", "num_layers", "n_layers"),
        "attention_heads": config_int(config, "num_attention_heads", "n_head", "num_heads", "n_heads"),
        "vocab_size": config_int(config, "vocab_size"),
        "max_positions": positions,
        "tokenizer_class": tok_config.get("tokenizer_class") or (
            "PreTrainedTokenizerFast" if (folder / "tokenizer.json").is_file() else None),
        "max_length": max_length,
        "custom_code": custom,
        "files": [{"name": str(p.relative_to(folder)), "bytes": p.stat().st_size} for p in files],
        "total_bytes": sum(p.stat().st_size for p in files),
    }
