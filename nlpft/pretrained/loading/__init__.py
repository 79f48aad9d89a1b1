"""Find a checkpoint, check it, load it: the only place nlpft calls `from_pretrained`.

A model spec is an alias (`minilm`, see `aliases`), a local directory in Hugging Face
format, or a hub id (`bert-base-uncased`). A hub id downloads by default, like every
Hugging Face tool, but only configs, tokenizer files and safetensors weights (never code
or pickles); HF_HUB_OFFLINE=1 (or a command's --offline) keeps it to the local cache. An
unreachable Hub costs one short timeout and one line (see `hub`).

Every spec resolves to a local directory, and that directory is checked before
transformers reads it, because loading is where checkpoints can run code:

- an `auto_map` in `config.json` or `tokenizer_config.json` means the checkpoint wants
  its own Python code: refused (nlpft passes `trust_remote_code=False` regardless);
- `pytorch_model.bin` and friends are pickles, and unpickling can run code: refused
  unless the caller passes `allow_pickle_weights=True` by name;
- every `*.safetensors` file is opened with `safetensors.safe_open` first, so a
  truncated download is reported by file name instead of as a deep transformers error.

The package, one step per module (each imports only those above it): `safety` (the checks
above), `hub` (the Hub and its cache: what is downloaded, when, how it fails), `resolve`
(spec -> local directory and its config), `load` (transformers objects), `describe`
(`nlpft models info`, from headers only).
"""

from nlpft.pretrained.loading.describe import (
    count_parameters,
    describe_model,
)
from nlpft.pretrained.loading.hub import (
    DOWNLOAD_PATTERNS,
    HUB_TIMEOUT_S,
    HubUnreachable,
    cached_snapshot,
    download_plan,
    hub_cache_dir,
    hub_offline,
    hub_snapshot,
)
from nlpft.pretrained.loading.load import (
    HEADS,
    TOKENIZER_VOCAB_PATTERNS,
    load_config,
    load_model,
    load_tokenizer,
)
from nlpft.pretrained.loading.resolve import (
    ResolvedModel,
    detect_family,
    max_positions,
    read_config_json,
    resolve_model,
)
from nlpft.pretrained.loading.safety import (
    CODE_HOOK_FILES,
    PICKLE_WEIGHT_PATTERNS,
    check_safetensors,
    check_weights,
    refuse_custom_code,
    safetensors_header,
    weight_files,
)

__all__ = [
    "CODE_HOOK_FILES",
    "DOWNLOAD_PATTERNS",
    "HEADS",
    "HUB_TIMEOUT_S",
    "PICKLE_WEIGHT_PATTERNS",
    "TOKENIZER_VOCAB_PATTERNS",
    "HubUnreachable",
    "ResolvedModel",
    "cached_snapshot",
    "check_safetensors",
    "check_weights",
    "count_parameters",
    "describe_model",
    "detect_family",
    "download_plan",
    "hub_cache_dir",
    "hub_offline",
    "hub_snapshot",
    "load_config",
    "load_model",
    "load_tokenizer",
    "max_positions",
    "read_config_json",
    "refuse_custom_code",
    "resolve_model",
    "safetensors_header",
    "weight_files",
]
