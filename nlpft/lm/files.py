"""Recognise and load a directory written by `nlpft lm train`."""

from __future__ import annotations

import json
from pathlib import Path

from nlpft.errors import UserInputError


def is_rnn_lm_dir(spec: str) -> bool:
    """True for a directory written by `nlpft lm train`."""
    config = Path(spec) / "config.json"
    if not config.is_file():
        return False  # before importing the model module, which imports torch: most specs end here
    from nlpft.lm.model import MODEL_TYPE

    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type") == MODEL_TYPE
    except (OSError, ValueError, AttributeError):
        return False


def load_model_dir(model_dir: str | Path):
    """(model, tokenizer) from a directory written by `nlpft lm train`, checked to match."""
    from nlpft.lm.model import RNNLanguageModel
    from nlpft.tokenization import WordTokenizer
    from nlpft.training.weights import model_tensors, refuse_non_finite

    path = Path(model_dir)
    if not path.is_dir():
        raise UserInputError(f"{path}: not a directory; pass the --out directory of `nlpft lm train`")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise UserInputError(f"{path}: no config.json here; pass the --out directory of `nlpft lm train`")
    tokenizer = WordTokenizer.load(path)
    model = RNNLanguageModel.from_pretrained(path)
    refuse_non_finite(model_tensors(model), path)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise UserInputError(
            f"{path}: tokenizer.json has {tokenizer.vocab_size} ids but the model was trained with "
            f"{model.config.vocab_size}; the files come from different runs")
    model.eval()
    return model, tokenizer
