"""Pretrained Hugging Face checkpoints: find, check, load, encode.

`loading` is the only module in nlpft that calls `from_pretrained`. Every checkpoint
goes through the same gate there before transformers sees it: no custom code
(`auto_map`), no pickle weights unless asked for by name, every safetensors file
readable. Hub ids download only configs, tokenizer files and safetensors weights, and
not at all under HF_HUB_OFFLINE=1 (or --offline).

Submodules import transformers/torch inside their functions, so importing this
package (or running `nlpft --help`) stays cheap.
"""

from nlpft.pretrained.aliases import DEFAULT_ENCODER, list_models
from nlpft.pretrained.loading import (
    ResolvedModel,
    load_config,
    load_model,
    load_tokenizer,
    resolve_model,
)

__all__ = [
    "DEFAULT_ENCODER",
    "ResolvedModel",
    "list_models",
    "load_config",
    "load_model",
    "load_tokenizer",
    "resolve_model",
]
