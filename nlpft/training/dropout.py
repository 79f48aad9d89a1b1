"""Dropout with cheaper random masks, for the transformer backbones on CPU.

On a CPU, dropout's cost is its random numbers: `F.dropout` draws one float per element
through `bernoulli_`, and a MiniLM training step (batch 16 x 256 tokens) drops out six
attention-probability tensors of 16 x 12 x 256 x 256 elements. Those draws took about a third
of the step's CPU time, more than the matrix products (`benchmarks/finetune/results/levers.md`).

Here a mask element costs 16 random bits instead of a float draw: one `randint` fills int64
words (from the same default generator, so `--seed` and resumed runs stay reproducible), and
the words are read as four int16 values each and compared with a threshold. The probability
of dropping an element is then `p` rounded to a multiple of 1/65536 (0.1 -> 0.100006), and the
kept elements are scaled by 1/(1 - p) as usual. The mask is kept as one byte per element
for the backward pass, as `F.dropout` keeps it.

    scores   (batch, heads, queries, keys)  = q @ k^T * scale + mask
    probs    (batch, heads, queries, keys)  = softmax(scores)
    dropped  (batch, heads, queries, keys)  = probs * keep / (1 - p)     <- here, not F.dropout
    output   (batch, queries, heads * dim)  = dropped @ v

`use_fast_dropout(model)` swaps a Hugging Face model's `nn.Dropout` modules for `FastDropout`
and, when the model computes attention through transformers' attention interface with SDPA,
routes its attention to `sdpa_with_fast_dropout`: that runs torch's SDPA unchanged whenever no
dropout applies (evaluation, inference, p = 0) and the product above while training.
Training commands call it on every model they train; `NLPFT_FAST_DROPOUT=0` leaves torch's
dropout in place.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

ATTENTION_NAME = "nlpft_sdpa"  # the name under which transformers looks the attention function up
_THRESHOLD_RANGE = 1 << 16


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, *, device=None) -> torch.Tensor:
    """A bool tensor of `shape`: True (keep) with probability 1 - p, drawn from 16 random bits
    per element."""
    count = math.prod(shape)
    words = -(-count // 4)  # four int16 values per int64 word
    bits = torch.randint(-(1 << 63), (1 << 63) - 1, (words,), dtype=torch.int64, device=device)
    values = bits.view(torch.int16)[:count].view(shape)  # uniform over -32768..32767
    threshold = round(p * _THRESHOLD_RANGE) - (1 << 15)
    return values >= threshold


class _MaskedScale(torch.autograd.Function):
    """x * keep / (1 - p), saving only the one-byte mask for the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x.mul(keep).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None, None


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """`F.dropout(x, p, training)` with masks from `keep_mask`."""
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    return _MaskedScale.apply(x, keep_mask(x.shape, p, device=x.device), 1.0 / (1.0 - p))


class FastDropout(nn.Dropout):
    """`nn.Dropout` (same `p`, same train/eval behaviour) drawing its masks with `keep_mask`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:  # nothing in the models nlpft trains asks for it; keep torch's semantics
            return super().forward(x)
        return fast_dropout(x, self.p, self.training)


def sdpa_with_fast_dropout(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                           is_causal: bool | None = None, **kwargs):
    """transformers' SDPA attention function, except that while training with attention
    dropout the product is written out and the probabilities dropped with `fast_dropout`.
    Arguments and the returned (output, None) are those of `sdpa_attention_forward`."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if dropout == 0.0 or not module.training or kwargs.get("position_bias") is not None \
            or getattr(module, "num_key_value_groups", 1) > 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    # query (batch, heads, queries, dim); key, value (batch, heads, keys, dim)
    queries, keys = query.shape[2], key.shape[2]
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scale  # (batch, heads, queries, keys)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # True = may attend; a fully masked row stays finite
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:  # additive
            scores = scores + attention_mask
    elif (is_causal if is_causal is not None else getattr(module, "is_causal", True)) and queries > 1:
        allowed = torch.ones(queries, keys, dtype=torch.bool, device=scores.device).tril(keys - queries)
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    output = torch.matmul(fast_dropout(probs, dropout), value)  # (batch, heads, queries, dim)
    return output.transpose(1, 2).contiguous(), None


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import (
        ALL_MASK_ATTENTION_FUNCTIONS,
        AttentionMaskInterface,
    )

    if ATTENTION_NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTENTION_NAME, sdpa_with_fast_dropout)
    if ATTENTION_NAME not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionMaskInterface.register(ATTENTION_NAME, ALL_MASK_ATTENTION_FUNCTIONS._global_mapping["sdpa"])


def use_fast_dropout(model: nn.Module) -> int:
    """Swap `model`'s `nn.Dropout` modules for `FastDropout` and, where its attention runs
    through transformers' SDPA function, its attention for `sdpa_with_fast_dropout`. Returns
    how many modules changed (0 under `NLPFT_FAST_DROPOUT=0`). The weights, the saved config
    and evaluation are unchanged."""
    if os.environ.get("NLPFT_FAST_DROPOUT") == "0":
        return 0
    swapped = 0
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout and child.p > 0:
                replacement = FastDropout(child.p)
                replacement.train(child.training)
                setattr(parent, name, replacement)
                swapped += 1
    for sub in model.modules():
        config = getattr(sub, "config", None)
        if getattr(config, "_attn_implementation", None) == "sdpa" and hasattr(sub, "set_attn_implementation"):
            _register_attention()
            sub.set_attn_implementation(ATTENTION_NAME)
            swapped += 1
            break
    return swapped
