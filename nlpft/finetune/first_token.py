"""Classifying from [CLS]: the last encoder layer computes the first position only.

A sequence classifier over a BERT-style encoder reads one vector per text from the last
layer, position 0 ([CLS], through the pooler, or directly for RoBERTa's head). The stock
forward computes the last layer at every position and throws all but one away. Here the
last layer computes its queries, attention, output projection and feed-forward for position
0 only; its keys and values still come from every position, so the vector the head reads is
the same (up to rounding: smaller matrix products may sum in another order).

    hidden   (batch, seq, dim)           the last layer's input
    q        (batch, heads, 1, d)        from hidden[:, :1]
    k, v     (batch, heads, seq, d)      from hidden
    attn     (batch, 1, dim)             softmax(q k^T / sqrt(d) + mask) v, dropped out as usual
    out      (batch, 1, dim)             FFN(LayerNorm(hidden[:, :1] + O(attn)))   -> the head reads out[:, 0]

Per token a layer's linear work is 12 dim^2 multiply-adds (q, k, v, o: 4; the feed-forward:
8); the last layer keeps k and v (2), so MiniLM-L6 does about 14% less linear work per
training step (10/12 of one layer in six), and its last attention one row of scores per text
instead of seq.

Only the forward of that layer instance is replaced: the weights, their names and the saved
model are the stock ones, and `predict` loads them as any model. The patched model's
sequence output has length 1, so it is applied only where the head reads position 0 alone
(`first_token_last_layer` checks the model type), and only to the model being trained.
`NLPFT_FIRST_TOKEN=0` leaves the stock forward in place.
"""

from __future__ import annotations

import os
import types

# model types whose layers are BertLayer-shaped and whose sequence-classification head reads
# position 0 only (BERT: the pooler over [CLS]; RoBERTa-likes: the head's features[:, 0])
SUPPORTED_TYPES = ("bert", "roberta", "xlm-roberta", "camembert")


def first_token_last_layer(model) -> bool:
    """Make the last encoder layer of sequence classifier `model` compute position 0 only.
    Returns whether it did (False for another architecture or head, or NLPFT_FIRST_TOKEN=0)."""
    if os.environ.get("NLPFT_FIRST_TOKEN", "1") == "0":
        return False
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in SUPPORTED_TYPES or getattr(config, "is_decoder", False) \
            or not type(model).__name__.endswith("ForSequenceClassification"):
        return False
    layers = getattr(getattr(getattr(model, "base_model", None), "encoder", None), "layer", None)
    if not layers:
        return False
    last = layers[-1]
    attention = getattr(last, "attention", None)
    if not all(hasattr(getattr(attention, "self", None), name) for name in ("query", "key", "value")) \
            or not hasattr(attention, "output") or not hasattr(last, "feed_forward_chunk"):
        return False
    last.forward = types.MethodType(_first_token_forward, last)
    return True


def _first_token_forward(layer, hidden_states, attention_mask=None, *args, **kwargs):
    """The BertLayer forward for position 0 alone (see the module docstring)."""
    from transformers.models.bert.modeling_bert import (
        ALL_ATTENTION_FUNCTIONS,
        eager_attention_forward,
    )

    attention = layer.attention.self
    batch, length, _ = hidden_states.shape
    first = hidden_states[:, :1]

    def heads(x, positions):  # (batch, positions, dim) -> (batch, heads, positions, d)
        return x.view(batch, positions, -1, attention.attention_head_size).transpose(1, 2)

    query = heads(attention.query(first), 1)
    key, value = heads(attention.key(hidden_states), length), heads(attention.value(hidden_states), length)
    if attention_mask is not None and attention_mask.dim() == 4 and attention_mask.shape[-2] > 1:
        attention_mask = attention_mask[:, :, :1, :]  # the row of position 0: (batch, 1 | heads, 1, seq)
    interface = ALL_ATTENTION_FUNCTIONS.get_interface(attention.config._attn_implementation, eager_attention_forward)
    kwargs = {k: v for k, v in kwargs.items() if k not in ("cache", "past_key_values", "encoder_hidden_states",
                                                            "encoder_attention_mask")}
    context, _ = interface(attention, query, key, value, attention_mask,
                           dropout=attention.dropout.p if attention.training else 0.0, scaling=attention.scaling,
                           **kwargs)
    context = context.reshape(batch, 1, -1).contiguous()
    attended = layer.attention.output(context, first)  # dense, dropout, LayerNorm(+ first)
    return layer.feed_forward_chunk(attended)  # (batch, 1, dim)
