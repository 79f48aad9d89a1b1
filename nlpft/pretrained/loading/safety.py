"""The checks a checkpoint directory passes before transformers reads it, because
loading is where checkpoints can run code:

- an `auto_map` in `config.json` or `tokenizer_config.json` means the checkpoint wants
  its own Python code: refused (nlpft passes `trust_remote_code=False` regardless);
- `pytorch_model.bin` and friends are pickles, and unpickling can run code: refused
  unless the caller passes `allow_pickle_weights=True` by name;
- every `*.safetensors` file is opened with `safetensors.safe_open` first, so a
  truncated download is reported by file name instead of as a deep transformers error;
- the embedding size config.json claims must fit in the weights actually stored.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from nlpft.errors import UserInputError

if TYPE_CHECKING:  # the checks below run before (and while) a spec resolves, so they cannot import resolve
    from nlpft.pretrained.loading.resolve import ResolvedModel

#: small JSON files whose `auto_map` would ask transformers to import the checkpoint's code
CODE_HOOK_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json",
                   "processor_config.json", "feature_extractor_config.json")

PICKLE_WEIGHT_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")

#: how many claimed embedding weights one stored tensor element may stand for: quantised
#: checkpoints pack several weights into one integer element
_PACKED_WEIGHTS_PER_ELEMENT = 8


def refuse_custom_code(folder: Path, name: str | None = None) -> None:
    """Refuse a checkpoint that asks for its own Python code, before anything imports it.
    `name` (a hub id) stands for `folder` in the message."""
    for filename in CODE_HOOK_FILES:
        file = folder / filename
        if not file.is_file():
            continue
        label = f"{name}: {filename}" if name else str(file)
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserInputError(f"{label}: not valid JSON ({exc})") from None
        if isinstance(data, dict) and data.get("auto_map"):
            raise UserInputError(
                f"{label}: has an auto_map, so this checkpoint needs its own Python code; nlpft never runs "
                "checkpoint code (trust_remote_code=False): use a checkpoint whose architecture "
                "transformers ships, or remove auto_map if the model_type is a standard one")


def _read_header(file: Path) -> tuple[int, dict]:
    try:
        with open(file, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ValueError("shorter than a safetensors header")
            (n,) = struct.unpack("<Q", head)
            if n > 100 * 2**20:
                raise ValueError(f"header length {n} is implausible")
            raw = fh.read(n)
            if len(raw) < n:
                raise ValueError("header cut short")
            header = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{file}: not a readable safetensors file ({exc}); download it again") from None
    if not isinstance(header, dict):
        raise UserInputError(f"{file}: not a readable safetensors file; download it again")
    return n, header


def safetensors_header(file: Path) -> dict:
    """The JSON header of a safetensors file (names, dtypes, shapes, offsets): no tensor data read."""
    return _read_header(file)[1]


def check_safetensors(file: Path) -> None:
    """Open `file` with safetensors (which validates header and size) before transformers does."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="numpy") as handle:
            handle.keys()
    except Exception as exc:  # SafetensorError and friends
        raise UserInputError(f"{file}: corrupt or truncated safetensors file ({first_line(exc)}); "
                             "download or save it again") from None
    # belt and braces: the tensor data must end exactly at the end of the file
    n, header = _read_header(file)
    ends = [v["data_offsets"][1] for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v]
    expected, size = 8 + n + (max(ends) if ends else 0), file.stat().st_size
    if size != expected:
        raise UserInputError(f"{file}: truncated safetensors file ({size} bytes, its header says {expected}); "
                             "download or save it again")


def weight_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(safetensors files, pickle weight files) directly in `folder`."""
    safe = sorted(folder.glob("*.safetensors"))
    pickles = sorted({p for pattern in PICKLE_WEIGHT_PATTERNS for p in folder.glob(pattern)})
    return safe, pickles


def check_weights(folder: Path, allow_pickle_weights: bool = False) -> str:
    """Return 'safetensors' or 'pickle' (the latter only when explicitly allowed); raise otherwise."""
    safe, pickles = weight_files(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, KeyError, TypeError) as exc:
            raise UserInputError(f"{index}: not a valid safetensors index ({exc})") from None
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            raise UserInputError(f"{index}: shard(s) missing: {', '.join(missing)}; download them again")
    if safe:
        for file in safe:
            check_safetensors(file)
        return "safetensors"
    if pickles:
        if allow_pickle_weights:
            return "pickle"
        raise UserInputError(
            f"{folder}: has only pickle weights ({pickles[0].name}), and loading a pickle can run arbitrary "
            "code; convert it once where you trust the file (load it with transformers, then "
            "save_pretrained(NEW_DIR) writes model.safetensors) and pass NEW_DIR")
    raise UserInputError(f"{folder}: no model weights (*.safetensors); pass a complete checkpoint directory")


def check_claimed_embedding(resolved: ResolvedModel, files: list[Path]) -> None:
    """config.json's vocabulary x embedding width is a claim: the input embedding it implies
    is stored in the weights, so it cannot (much) exceed what they hold. Checked from the
    safetensors headers, before transformers allocates a model of the claimed size."""
    vocab = config_int(resolved.config, "vocab_size")
    width = config_int(resolved.config, "embedding_size", "hidden_size", "n_embd", "d_model", "dim")
    if not vocab or not width or vocab < 1 or width < 1:
        return
    stored = 0
    for file in files:
        for key, info in safetensors_header(file).items():
            if key != "__metadata__" and isinstance(info, dict):
                stored += math.prod(int(d) for d in info.get("shape", []))
    if vocab * width > stored * _PACKED_WEIGHTS_PER_ELEMENT:
        raise UserInputError(
            f"{resolved.path / 'config.json'}: vocab_size {vocab:,} x width {width:,} makes an embedding of "
            f"{vocab * width:,} weights, but the weights files hold only {stored:,} values; the config does "
            "not belong to these weights (fix vocab_size, or save the model again)"
        )


def config_int(config: dict, *keys: str) -> int | None:
    """The value of the first of `keys` that the config sets to a whole number."""
    for key in keys:
        if isinstance(config.get(key), int):
            return config[key]
    return None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
