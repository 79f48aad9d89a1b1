"""Pretraining transformers from text: packed blocks, masking, model building (the size
presets and what each architecture learns: `nlpft.pretrained.presets`).

GPT-style models learn causal LM (predict every next token); BERT-style models learn
masked LM (15% of tokens chosen, of those 80% -> [MASK], 10% -> a random token, 10% kept).

Text to blocks. The corpus is encoded once into a uint32 id stream on disk (see
`nlpft.data.token_ids`, which also makes the seeded train/valid/test split), then cut into
fixed-length blocks with no padding, as the reference `run_clm`/`run_mlm` scripts do:

    ids:     t0 t1 t2 t3 t4 t5 t6 t7 t8 t9 t10 t11 ...       (one stream, lines joined)
    GPT-2:   [t0 .. t7] [t8 .. t15] ...                       block = B tokens
    BERT:    [CLS t0 .. t5 SEP] [CLS t6 .. t11 SEP] ...       block = B-2 tokens + 2 specials

Byte-level BPE keeps each line's newline (text is encoded as "line\\n"), so generation
reproduces line breaks; WordPiece drops whitespace, so lines simply run on. A tail shorter
than a block is dropped (at most B-1 tokens per split).

Validation loss is deterministic: for MLM the evaluation masks are drawn from a generator
seeded by the block index, so "loss before" and "loss after" continued pretraining are
measured on exactly the same masked positions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict

import numpy as np
import torch

from nlpft.data.token_ids import DTYPE
from nlpft.errors import UserInputError
from nlpft.pretrained.presets import SizePreset


def checkpoint_objective(model_type: str, family: str, requested: str | None) -> str:
    """The objective for continued pretraining of a checkpoint: its family's own, or
    `requested` where the checkpoint can learn it (mlm+nsp: BERT checkpoints only, the one
    model type with an NSP head in transformers that nlpft builds pairs for)."""
    own = family_objective(model_type, family)
    if requested is None or requested == own:
        return own
    if requested == "mlm+nsp" and model_type == "bert":
        return requested
    needs = "a BERT checkpoint (model type 'bert')" if requested == "mlm+nsp" else f"a model that learns {requested}"
    raise UserInputError(f"--objective {requested} needs {needs}; this checkpoint is a {model_type} model that "
                         f"learns {own}; drop --objective")


def family_objective(model_type: str, family: str) -> str:
    """'clm' for decoders, 'mlm' for encoders (from `loading.detect_family`)."""
    if family == "decoder":
        return "clm"
    if family == "encoder":
        return "mlm"
    raise UserInputError(f"model type {model_type!r} is neither an encoder (BERT-style) nor a decoder "
                         "(GPT-style); nlpft pretrains only those")


# -- model ---------------------------------------------------------------------------------
def build_config(arch: str, preset: SizePreset, tokenizer, block_size: int | None = None):
    """A transformers config for a fresh model of `preset`'s shape around `tokenizer`
    (a transformers tokenizer)."""
    block_size = block_size or preset.block_size
    vocab_size = len(tokenizer)
    if arch == "gpt2":
        from transformers import GPT2Config

        eos = tokenizer.eos_token_id
        if eos is None:
            raise UserInputError("the tokenizer has no end-of-text token; a GPT-2 model needs one "
                                 "(train one with nlpft, or pass a GPT-2 tokenizer)")
        return GPT2Config(vocab_size=vocab_size, n_positions=block_size, n_embd=preset.hidden,
                          n_layer=preset.layers, n_head=preset.heads, n_inner=preset.intermediate,
                          bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    from transformers import BertConfig

    if tokenizer.mask_token_id is None or tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise UserInputError("the tokenizer lacks [MASK], [CLS] or [SEP]; a BERT model needs all three "
                             "(train one with nlpft, or pass a BERT tokenizer)")
    return BertConfig(vocab_size=vocab_size, hidden_size=preset.hidden, num_hidden_layers=preset.layers,
                      num_attention_heads=preset.heads, intermediate_size=preset.intermediate,
                      max_position_embeddings=max(block_size, 512), pad_token_id=tokenizer.pad_token_id or 0)


def build_model(arch: str, config, objective: str | None = None):
    """A fresh model; BERT with objective mlm+nsp is a `BertForPreTraining` (MLM and NSP heads)."""
    from transformers import BertForMaskedLM, BertForPreTraining, GPT2LMHeadModel

    if arch == "gpt2":
        return GPT2LMHeadModel(config)
    return BertForPreTraining(config) if objective == "mlm+nsp" else BertForMaskedLM(config)


def head_is_new(missing_keys: Iterable[str]) -> list[str]:
    """The missing weights that make up a language-model head (e.g. MiniLM ships only the
    encoder: `cls.predictions.*` must be initialised before MLM training)."""
    return sorted(k for k in missing_keys if k.startswith(("cls.", "lm_head", "vocab_", "predictions")))


def freeze_all_but_head(model) -> int:
    """Train only the LM-head weights (e.g. to fit a new head before touching the encoder);
    returns how many parameters stay trainable. A head tied to the input embedding stays
    frozen with it."""
    base = getattr(model, "base_model", None)
    frozen = {id(p) for p in base.parameters()} if base is not None else set()
    trainable = 0
    for param in model.parameters():
        param.requires_grad = id(param) not in frozen
        trainable += param.numel() if param.requires_grad else 0
    return trainable


# -- text -> ids ---------------------------------------------------------------------------
class SubwordLineEncoder:
    """Lines -> ids with a transformers tokenizer, no special tokens (`token_ids.LineEncoder`).

    `keep_newlines` (byte-level BPE): every line is encoded as "line\\n" and blank lines
    are kept as a newline, so text structure survives; only lines with text count towards
    `block_lines`. Otherwise blank lines are skipped."""

    #: text handed to the tokenizer per call: its per-token bookkeeping (offsets, token
    #: strings, Python lists) costs ~100 bytes a token, so calls are kept to about 1M characters
    ENCODE_CHARS = 1 << 20

    def __init__(self, tokenizer, keep_newlines: bool):
        self.tokenizer = tokenizer
        self.keep_newlines = keep_newlines
        self.vocab_size = len(tokenizer)

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        """The ids of each text, no special tokens."""
        if not texts:
            return []
        return self.tokenizer(texts, add_special_tokens=False, return_attention_mask=False,
                              return_token_type_ids=False, verbose=False)["input_ids"]

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.fromiter((i for ids in self._tokenize(texts) for i in ids), dtype=DTYPE)

    def blocks(self, lines: Iterable[str], block_lines: int) -> Iterator[tuple[np.ndarray, int]]:
        encoded: list[np.ndarray] = []  # the block so far, as ids
        texts: list[str] = []  # the block's text not yet encoded
        chars = n = 0
        for line in lines:
            line = line.rstrip("\r\n")
            if not line.strip():
                if self.keep_newlines and (texts or encoded):
                    texts.append("\n")
                continue
            texts.append(line + "\n" if self.keep_newlines else line)
            chars += len(line)
            n += 1
            if chars >= self.ENCODE_CHARS:
                encoded.append(self._encode(texts))
                texts, chars = [], 0
            if n == block_lines:
                yield np.concatenate([*encoded, self._encode(texts)]), n
                encoded, texts, chars, n = [], [], 0, 0
        if n:
            yield np.concatenate([*encoded, self._encode(texts)]), n


# -- blocks --------------------------------------------------------------------------------
class PackedBlocks(torch.utils.data.Dataset):
    """Fixed-length blocks over a 1-D id stream (a memmap: nothing is copied until a block
    is read). `cls_id`/`sep_id` given: each block is [CLS] + block_size-2 ids + [SEP]."""

    def __init__(self, ids: np.ndarray, block_size: int, cls_id: int | None = None, sep_id: int | None = None):
        self.ids = ids
        self.block_size = block_size
        self.wrap = cls_id is not None and sep_id is not None
        self.cls_id, self.sep_id = cls_id, sep_id
        self.content = block_size - 2 if self.wrap else block_size
        if self.content < 1:
            raise UserInputError(f"block size {block_size} is too small")

    def __len__(self) -> int:
        return int(self.ids.shape[0]) // self.content

    def block(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.content
        chunk = torch.from_numpy(self.ids[start:start + self.content].astype(np.int64))
        if self.wrap:
            chunk = torch.cat([torch.tensor([self.cls_id]), chunk, torch.tensor([self.sep_id])])
        return chunk

    def __getitem__(self, index: int) -> dict:
        return {"input_ids": self.block(index)}

    @property
    def tokens(self) -> int:
        return len(self) * self.content


def mask_tokens(ids: torch.Tensor, masker: TokenMasker, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of `ids` (any shape): (inputs, labels). Each non-special token is chosen
    with `masker.probability`; chosen ones become [MASK] (80%), a random id (10%) or stay
    (10%); labels are -100 except at chosen positions. Draws from `generator`, or from
    torch's global RNG when None."""
    chosen = torch.rand(ids.shape, generator=generator) < masker.probability
    chosen &= ~torch.isin(ids, masker.special_ids)
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    action = torch.rand(ids.shape, generator=generator)
    random_ids = torch.randint(masker.vocab_size, ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (action < 0.8)] = masker.mask_id
    swap = chosen & (action >= 0.8) & (action < 0.9)
    inputs[swap] = random_ids[swap]
    return inputs, labels


class TokenMasker:
    """Fresh masks for every training batch, drawn from torch's global RNG at the moment the
    batch is trained on (not when the data loader prefetches it), so a resumed run that
    restores the RNG draws exactly the masks an uninterrupted run would have drawn."""

    def __init__(self, tokenizer, probability: float = 0.15):
        if tokenizer.mask_token_id is None:
            raise UserInputError("the tokenizer has no [MASK] token, so it cannot be used for masked-LM training")
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        self.probability = probability

    def __call__(self, batch: dict) -> dict:
        inputs, labels = mask_tokens(batch["input_ids"], self)
        return {**batch, "input_ids": inputs, "labels": labels}


class FixedMaskBlocks(torch.utils.data.Dataset):
    """MLM evaluation blocks (or sentence pairs) with masks drawn once per index (seeded):
    the same text gets the same masks in every evaluation, so losses compare across runs and
    models. The items' other fields (token types, NSP labels) pass through."""

    def __init__(self, blocks, masker: TokenMasker, seed: int = 0):
        self.blocks = blocks
        self.masker = masker
        self.seed = seed

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        item = self.blocks[index]
        inputs, labels = mask_tokens(item["input_ids"], self.masker, gen)
        return {**item, "input_ids": inputs, "labels": labels}


def collate_causal(examples: list[dict]) -> dict:
    """Equal-length blocks -> a batch; the model shifts labels itself."""
    input_ids = torch.stack([e["input_ids"] for e in examples])  # (batch, block)
    return {"input_ids": input_ids, "labels": input_ids.clone()}


def collate_stacked(examples: list[dict]) -> dict:
    return {key: torch.stack([e[key] for e in examples]) for key in examples[0]}


def preset_dict(preset: SizePreset) -> dict:
    return asdict(preset)
