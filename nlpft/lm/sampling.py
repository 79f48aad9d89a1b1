"""Text generation from an RNN language model: temperature, top-k and nucleus (top-p) sampling.

The prompt is encoded once; afterwards each new token is fed alone with the carried hidden
state, so generating N tokens costs N single-step forwards, not N re-encodings of a growing
prefix.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from nlpft.errors import UserInputError
from nlpft.lm.model import RNNLanguageModel


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Set to -inf every logit of a (V,) vector outside the top k and outside the nucleus of mass top_p.

    The nucleus is the smallest set of most probable tokens whose probability reaches top_p;
    the most probable token is always kept.
    """
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the tokens before it already reach top_p (so the first always stays)
        drop_sorted = (torch.cumsum(probs, dim=-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter_(0, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _check_id(name: str, token_id: int, vocab_size: int) -> None:
    if isinstance(token_id, bool) or not isinstance(token_id, int) or not 0 <= token_id < vocab_size:
        raise UserInputError(f"{name}: {token_id!r} is not a token id in [0, {vocab_size})")


@torch.no_grad()
def sample(
    model: RNNLanguageModel,
    prompt_ids: list[int],
    max_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    banned_ids: Iterable[int] = (),
    stop_id: int | None = None,
) -> list[int]:
    """Continue `prompt_ids` by up to `max_tokens` ids and return only the new ones.

    temperature 0 is greedy (argmax); `banned_ids` (e.g. pad, unk) are never produced;
    generation ends before `stop_id` (which is not returned). Randomness comes from a local
    generator seeded with `seed`, so the global RNG is left alone. The model runs in eval mode
    and gets its previous mode back afterwards.
    """
    vocab_size = model.config.vocab_size
    prompt_ids = list(prompt_ids)
    if not prompt_ids:
        raise UserInputError("the prompt is empty: sampling needs at least one token to start from")
    for token_id in prompt_ids:
        _check_id("prompt", token_id, vocab_size)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
        raise UserInputError(f"max_tokens must be a non-negative integer, got {max_tokens!r}")
    if not temperature >= 0.0:  # also rejects NaN
        raise UserInputError(f"temperature must be >= 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise UserInputError(f"top_k must be a positive integer, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise UserInputError(f"top_p must be in (0, 1], got {top_p!r}")
    banned = sorted(set(banned_ids))
    for token_id in banned:
        _check_id("banned id", token_id, vocab_size)
    if len(banned) == vocab_size:
        raise UserInputError("every token id is banned: nothing left to sample")
    if stop_id is not None:
        _check_id("stop id", stop_id, vocab_size)
    if max_tokens == 0:
        return []

    device = model.embedding.weight.device
    generator = torch.Generator(device=device)
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    banned_t = torch.tensor(banned, dtype=torch.long, device=device)

    was_training = model.training
    model.eval()
    try:
        prompt = torch.tensor([prompt_ids], dtype=torch.long, device=device)  # (1, T)
        features, hidden = model.encode(prompt)
        logits = model.decode(features[:, -1:])[0, -1]  # (V,): only the last position is needed
        new_ids: list[int] = []
        while True:
            logits = logits.float().index_fill(0, banned_t, float("-inf"))
            if temperature == 0.0:
                next_id = int(torch.argmax(logits))
            else:
                logits = filter_logits(logits / temperature, top_k, top_p)
                probs = torch.softmax(logits, dim=-1)
                next_id = int(torch.multinomial(probs, 1, generator=generator))
            if next_id == stop_id:
                break
            new_ids.append(next_id)
            if len(new_ids) == max_tokens:
                break
            step = torch.tensor([[next_id]], dtype=torch.long, device=device)  # (1, 1)
            logits, hidden = model(step, hidden)
            logits = logits[0, -1]
        return new_ids
    finally:
        model.train(was_training)
