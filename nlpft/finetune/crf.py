"""A linear-chain CRF over per-position tag scores, for any tagging backbone (`--crf`).

Score of a tag path y over the kept positions t_1 < ... < t_n of a sequence:

    start[y_1] + sum_i emission[t_i, y_i] + sum_i transition[y_{i-1}, y_i] + end[y_n]

The loss is the negative log-likelihood of the gold path, log Z - score(gold), with log Z
from the forward algorithm; `decode` is Viterbi and `marginals` gives each position's tag
probabilities (forward-backward), the confidence of a decoded tag. The mask need not be a prefix: masked
positions are skipped, so a transformer can pass `labels != -100` (first subwords only)
and the CRF runs over words. Sequences are compacted (kept positions moved to the front,
in order) before the recursion, which then needs only prefix masks.

`allowed_transitions` turns a tag scheme's rules into hard constraints (an I-X only after
B-X or I-X in IOB2): forbidden transitions score -10,000 in training and decoding, so
Viterbi never yields them while gradients stay finite. Start constraints are optional: a
window cut from a long sentence may begin inside an entity.

pytorch-crf (the usual package) was considered: it has been unchanged since 2019, requires
the first position of every sequence to be kept and has no transition constraints.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nlpft.data.tagged import split_tag

FORBIDDEN = -1e4


def allowed_transitions(labels: Sequence[str], scheme: str = "iob2") -> tuple[Tensor, Tensor, Tensor]:
    """(start (L,), transitions (L, L) from -> to, end (L,)) boolean masks of what `scheme`
    allows for these tag names. IOB2: I-X only after B-X/I-X, never first. BIOES also: B-X/I-X
    must be followed by I-X/E-X and E-X/S-X/O may not be, and the path may not end open.
    IOB1 allows any path (its B-X only separates entities; nothing it forbids is worth a rule)."""
    parts = [split_tag(label) for label in labels]
    n = len(labels)
    start = torch.ones(n, dtype=torch.bool)
    end = torch.ones(n, dtype=torch.bool)
    transitions = torch.ones(n, n, dtype=torch.bool)
    if scheme == "iob1":
        return start, transitions, end
    for j, (prefix_to, type_to) in enumerate(parts):
        continues = prefix_to in ("I", "E")
        start[j] = not continues
        if scheme == "bioes":
            end[j] = prefix_to not in ("B", "I")
        for i, (prefix_from, type_from) in enumerate(parts):
            is_open = prefix_from in ("B", "I")  # an entity the next tag may continue
            same_type = type_from == type_to
            if scheme == "bioes":
                # an open entity (B/I) must go on in its type; a closed one (E/S/O) may not
                transitions[i, j] = (continues and same_type) if is_open else not continues
            else:
                transitions[i, j] = not continues or (is_open and same_type)
    return start, transitions, end


class CRF(nn.Module):
    """Transition, start and end scores for `num_tags` tags; see the module docstring."""

    def __init__(self, num_tags: int, constraints: tuple[Tensor, Tensor, Tensor] | None = None,
                 constrain_start: bool = True):
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))  # (from, to)
        self.start_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        start, transitions, end = constraints or (torch.ones(num_tags, dtype=torch.bool),
                                                  torch.ones(num_tags, num_tags, dtype=torch.bool),
                                                  torch.ones(num_tags, dtype=torch.bool))
        if not constrain_start:
            start = torch.ones_like(start)
        # buffers, not parameters: saved with the weights, never trained
        self.register_buffer("start_penalty", _penalty(start), persistent=True)
        self.register_buffer("transition_penalty", _penalty(transitions), persistent=True)
        self.register_buffer("end_penalty", _penalty(end), persistent=True)

    # -- scores with the constraints applied ---------------------------------------------------
    def _start(self) -> Tensor:
        return self.start_transitions + self.start_penalty

    def _transitions(self) -> Tensor:
        return self.transitions + self.transition_penalty

    def _end(self) -> Tensor:
        return self.end_transitions + self.end_penalty

    # -- training ------------------------------------------------------------------------------
    def forward(self, emissions: Tensor, tags: Tensor, mask: Tensor, reduction: str = "mean") -> Tensor:
        """Negative log-likelihood of `tags`: emissions (B, T, L), tags (B, T) (any value where
        masked, e.g. -100), mask (B, T) bool. reduction "mean" (over sequences with at least
        one kept position), "sum" or "none" (B,)."""
        emissions, tags, mask = _compact(emissions.float(), tags, mask)
        nll = self.log_partition(emissions, mask, compacted=True) - self._path_score(emissions, tags, mask)
        if reduction == "none":
            return nll
        if reduction == "sum":
            return nll.sum()
        return nll.sum() / mask[:, 0].sum().clamp(min=1)

    def log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """log p(tags | emissions) per sequence, (B,); 0 for a sequence with no kept position."""
        return -self.forward(emissions, tags, mask, reduction="none")

    def log_partition(self, emissions: Tensor, mask: Tensor, compacted: bool = False) -> Tensor:
        """log Z per sequence (B,), by the forward algorithm; 0 for an empty sequence."""
        if not compacted:
            emissions, _, mask = _compact(emissions.float(), None, mask)
        transitions = self._transitions()
        alpha = self._start() + emissions[:, 0]  # (B, L)
        for t in range(1, emissions.size(1)):
            # (B, L_from, 1) + (L_from, L_to) + (B, 1, L_to) -> logsumexp over from -> (B, L_to)
            step = torch.logsumexp(alpha.unsqueeze(2) + transitions + emissions[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)
        log_z = torch.logsumexp(alpha + self._end(), dim=1)  # (B,)
        return log_z.masked_fill(~mask[:, 0], 0.0)

    def _path_score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Score of the given (compacted) tag paths, (B,)."""
        tags = tags.masked_fill(~mask, 0)  # (B, T): any in-range id where masked
        kept = mask.float()
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
        score = self._start()[tags[:, 0]] + (emitted * kept).sum(1)
        score = score + (self._transitions()[tags[:, :-1], tags[:, 1:]] * kept[:, 1:]).sum(1)
        last = (mask.sum(1) - 1).clamp(min=0)  # (B,)
        score = score + self._end()[tags.gather(1, last.unsqueeze(1)).squeeze(1)]
        return score.masked_fill(~mask[:, 0], 0.0)

    # -- decoding ------------------------------------------------------------------------------
    @torch.no_grad()
    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """p(tag at position t | emissions), (B, T, L), by the forward-backward algorithm;
        0 at masked positions. The confidence of a decoded tag, e.g. for an entity's score."""
        order = _kept_first(mask)
        emissions, _, compact_mask = _compact(emissions.float(), None, mask, order)
        transitions = self._transitions()
        steps = emissions.size(1)
        alphas = [self._start() + emissions[:, 0]]  # each (B, L)
        for t in range(1, steps):
            step = torch.logsumexp(alphas[-1].unsqueeze(2) + transitions + emissions[:, t].unsqueeze(1), dim=1)
            alphas.append(torch.where(compact_mask[:, t].unsqueeze(1), step, alphas[-1]))
        betas = [self._end().expand_as(alphas[0])]
        for t in range(steps - 2, -1, -1):
            # (L_from, L_to) + (B, 1, L_to) -> logsumexp over to -> (B, L_from)
            step = torch.logsumexp(transitions + (emissions[:, t + 1] + betas[-1]).unsqueeze(1), dim=2)
            betas.append(torch.where(compact_mask[:, t + 1].unsqueeze(1), step, betas[-1]))
        log_z = torch.logsumexp(alphas[-1] + self._end(), dim=1)  # (B,)
        compact = torch.stack([a + b for a, b in zip(alphas, reversed(betas), strict=True)], dim=1)  # (B, T, L)
        compact = (compact - log_z[:, None, None]).exp() * compact_mask.unsqueeze(2)
        result = torch.zeros_like(compact)
        result.scatter_(1, order.unsqueeze(2).expand_as(compact), compact)
        return result

    @torch.no_grad()
    def decode(self, emissions: Tensor, mask: Tensor, pad: int = -100) -> Tensor:
        """The best tag path (Viterbi), (B, T) long, at the kept positions of `mask`; `pad`
        elsewhere."""
        order = _kept_first(mask)
        emissions, _, compact_mask = _compact(emissions.float(), None, mask, order)
        batch, steps, _ = emissions.shape
        transitions = self._transitions()
        score = self._start() + emissions[:, 0]  # (B, L)
        backpointers = []
        for t in range(1, steps):
            candidates = score.unsqueeze(2) + transitions  # (B, L_from, L_to)
            best, best_from = candidates.max(dim=1)  # (B, L_to)
            keep = compact_mask[:, t].unsqueeze(1)
            score = torch.where(keep, best + emissions[:, t], score)
            # a skipped step points every tag at itself, so the walk back passes through it
            identity = torch.arange(self.num_tags, device=emissions.device).expand(batch, -1)
            backpointers.append(torch.where(keep, best_from, identity))
        best_last = (score + self._end()).argmax(dim=1)  # (B,)
        path = [best_last]
        for pointers in reversed(backpointers):
            path.append(pointers.gather(1, path[-1].unsqueeze(1)).squeeze(1))
        compact_path = torch.stack(path[::-1], dim=1)  # (B, T): kept positions first
        result = torch.full_like(mask, pad, dtype=torch.long)
        result.scatter_(1, order, compact_path.masked_fill(~compact_mask, pad))
        return result.masked_fill(~mask, pad)


def _penalty(allowed: Tensor) -> Tensor:
    return torch.where(allowed, 0.0, FORBIDDEN).float()


def _kept_first(mask: Tensor) -> Tensor:
    """(B, T) positions with the kept ones first, each group in order."""
    return torch.argsort((~mask.bool()).to(torch.int8), dim=1, stable=True)


def _compact(emissions: Tensor, tags: Tensor | None, mask: Tensor, order: Tensor | None = None):
    """Move every sequence's kept positions to the front (in order) so the mask is a prefix."""
    mask = mask.bool()
    order = _kept_first(mask) if order is None else order
    emissions = emissions.gather(1, order.unsqueeze(2).expand(-1, -1, emissions.size(2)))
    tags = tags.gather(1, order) if tags is not None else None
    return emissions, tags, mask.gather(1, order)


@torch.no_grad()
def decoded_log_scores(crf: CRF, emissions: Tensor, mask: Tensor) -> Tensor:
    """Per-position scores (B, T, L) whose argmax is the Viterbi path and whose softmax is the
    CRF's marginal probabilities wherever the Viterbi tag is also the most probable one (the
    usual case): log marginals, with every other tag capped just below the Viterbi tag.

    A model with a CRF returns these as its logits at inference, so whatever reads logits
    (argmax decisions, softmax confidences, validation metrics) gets the CRF's decisions
    without knowing a CRF is there. Masked positions hold the plain emissions."""
    mask = mask.bool()
    path = crf.decode(emissions, mask)  # (B, T), -100 where masked
    log_marginals = crf.marginals(emissions, mask).clamp(min=1e-12).log()  # (B, T, L)
    chosen = path.clamp(min=0).unsqueeze(2)  # (B, T, 1)
    best = log_marginals.gather(2, chosen)  # (B, T, 1)
    capped = torch.minimum(log_marginals, best - 1e-4).scatter(2, chosen, best)
    return torch.where(mask.unsqueeze(2), capped, emissions.float())
