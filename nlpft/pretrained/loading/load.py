"""Load a resolved, checked checkpoint with transformers: config, tokenizer, model.
The only place nlpft calls `from_pretrained`, always with `trust_remote_code=False` and
`local_files_only=True`."""

from __future__ import annotations

from pathlib import Path

from nlpft.errors import UserInputError
from nlpft.pretrained.aliases import ALIASES
from nlpft.pretrained.loading.resolve import ResolvedModel, max_positions, resolve_model
from nlpft.pretrained.loading.safety import (
    check_claimed_embedding,
    check_weights,
    first_line,
    refuse_custom_code,
    weight_files,
)

#: head name -> transformers Auto class
HEADS = {
    "base": "AutoModel",
    "mlm": "AutoModelForMaskedLM",
    "clm": "AutoModelForCausalLM",
    "mlm+nsp": "AutoModelForPreTraining",  # BERT: masked LM and next-sentence prediction heads
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
}

#: a tokenizer needs at least one of these (transformers 5 otherwise builds an empty one)
TOKENIZER_VOCAB_PATTERNS = ("tokenizer.json", "vocab.txt", "vocab.json", "*.model", "*.tiktoken")


def load_config(spec):
    """`transformers.AutoConfig` for `spec` (alias, directory, hub id or ResolvedModel)."""
    resolved = resolve_model(spec)
    refuse_custom_code(resolved.path)
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(resolved.path), trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise UserInputError(f"{resolved.where}: cannot read the config ({first_line(exc)})") from None


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
        raise UserInputError(f"{where}: cannot load the tokenizer ({first_line(exc)}); the directory needs "
                             "an intact tokenizer.json (as save_pretrained writes it) or the vocabulary files") from None


def load_model(spec, head: str = "base", *, allow_pickle_weights: bool = False, quiet: bool = False,
               **kwargs):
    """A transformers model in eval mode, with the given head.

    head: "base" (AutoModel), "mlm", "clm", "mlm+nsp" (BERT pretraining) or "sequence-classification"; extra keyword
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
        check_claimed_embedding(resolved, weight_files(resolved.path)[0])
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
        raise UserInputError(f"{resolved.where}: cannot load as a {head} model ({first_line(exc)})") from None
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
