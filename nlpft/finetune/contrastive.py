"""Few-shot contrastive tuning of a sentence encoder, as SetFit does it (Tunstall et al., 2022).

A pretrained sentence encoder is first tuned on pairs of labeled rows: the cosine of the
two mean-pooled embeddings is regressed onto the pair's label similarity (1.0 for the same
class, 0.0 for different classes) with sentence-transformers' `CosineSimilarityLoss`,
SetFit's default. A classifier head is then fitted on the tuned embeddings by the caller.
A few labeled rows give many pairs (n rows, n * (n - 1) / 2 pairs), which is why this
works with 8 examples per class.

Pairs (`contrastive_pairs`) follow SetFit's counts: `iterations * n` positive and as many
negative pairs for n rows. Unlike SetFit, which draws from all pairs at once (so a 90/10
class split gives the large class about 80 times more positive pairs), the pairs are
shared out equally between the classes: each class anchors the same number of positive
and of negative pairs, cycling through its rows, so a rare class is oversampled.

Multi-label rows: a pair's target is the Jaccard similarity of the two label sets
(|A & B| / |A | B|, 1.0 for two empty sets). SetFit instead calls a pair positive (target
1.0) as soon as the sets share one label; that tells the encoder {sport} = {sport,
politics} = {politics} and pulls overlapping label sets onto one point, which the head
then cannot separate. Jaccard agrees with SetFit on equal and on disjoint sets and grades
the partial overlaps in between. Each label is a class for the balancing, and the rows
without any label form one more class.

`tune_encoder` runs a small torch loop around the library loss rather than
`SentenceTransformerTrainer`: the encoder arrives as an in-memory Hugging Face model
(the one nlpft loads and later saves), so there is nothing to wrap or reload, and the
loop writes nothing to disk, reports nowhere, and is seeded end to end.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nlpft.errors import UserInputError

#: a class needs two rows to form one same-class pair
MIN_EXAMPLES_PER_CLASS = 2

#: SetFit's 20 iterations give 2 * 20 * n pairs: 6400 for 160 rows, 400 steps of 16, about
#: 11 minutes of MiniLM on one CPU core (measured: 80 steps in 130-140 s CPU time). The cap
#: keeps a 160-row run near two minutes; 8 or 16 rows per class of 2 classes stay under it.
DEFAULT_MAX_PAIRS = 1280

#: the class key of rows whose label set is empty (multi-label rows with no label)
NO_LABEL = "(no label)"


@dataclass(frozen=True)
class TuningSummary:
    pairs: int
    steps: int
    first_loss: float
    last_loss: float
    seconds: float


# -- pairs -----------------------------------------------------------------------------------
def contrastive_pairs(label_sets: Sequence[Iterable[Hashable]], iterations: int, seed: int, *,
                      max_pairs: int | None = None) -> list[tuple[int, int, float]]:
    """(i, j, target similarity) pairs of row indices, `iterations * n` positive and as many
    negative (together at most `max_pairs`), shared equally between the classes and
    shuffled; the same seed gives the same pairs. Single-label rows pass one-element sets."""
    for name, value, least in (("iterations", iterations, 1), ("max pairs", max_pairs, 2)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise UserInputError(f"contrastive {name} must be a whole number of at least {least}, not {value!r}")
    sets = [frozenset(labels) for labels in label_sets]
    classes = _class_rows(sets)
    check_enough_examples(sets)
    rng = np.random.default_rng(seed)
    keys = sorted(classes, key=str)
    per_sign = iterations * len(sets) if max_pairs is None else min(iterations * len(sets), max_pairs // 2)
    quotas = _share(per_sign, len(keys))
    pairs: list[tuple[int, int, float]] = []
    for key, quota in zip(keys, quotas):
        members = classes[key]
        anchors = _cycle(rng, members, quota)
        for anchor in anchors:
            partner = _other_member(rng, members, anchor)
            pairs.append((anchor, partner, _jaccard(sets[anchor], sets[partner])))
        negatives = _negative_partners(rng, sets, anchors)
        pairs.extend((anchor, partner, 0.0) for anchor, partner in negatives)
    return [pairs[k] for k in rng.permutation(len(pairs))]


def check_enough_examples(label_sets: Sequence[Iterable[Hashable]]) -> None:
    """Raise naming each class with fewer than two rows (no same-class pair), or when the
    rows hold fewer than two classes (no different-class pair). Cheap: call it before
    loading a model."""
    sets = [frozenset(labels) for labels in label_sets]
    classes = _class_rows(sets)
    short = sorted(((key, len(rows)) for key, rows in classes.items() if len(rows) < MIN_EXAMPLES_PER_CLASS),
                   key=lambda item: str(item[0]))
    if short:
        named = ", ".join(f"{key!r} has {count}" for key, count in short[:5])
        more = f" (and {len(short) - 5} more)" if len(short) > 5 else ""
        raise UserInputError(
            f"contrastive tuning needs at least {MIN_EXAMPLES_PER_CLASS} examples of every class to form "
            f"same-class pairs: class {named}{more}; add examples of it or drop that class")
    distinct = list(set(sets))
    if not any(a.isdisjoint(b) for a, b in itertools.combinations(distinct, 2)):
        raise UserInputError(
            f"contrastive tuning needs rows of different classes to form different-class pairs; "
            f"the {len(sets)} rows have {len(classes)} class(es) that all overlap")


def _class_rows(sets: Sequence[frozenset]) -> dict[Hashable, list[int]]:
    classes: dict[Hashable, list[int]] = {}
    for row, labels in enumerate(sets):
        for key in labels or (NO_LABEL,):
            classes.setdefault(key, []).append(row)
    return classes


def _share(total: int, parts: int) -> list[int]:
    """`total` split into `parts` whole numbers differing by at most one."""
    base, extra = divmod(total, parts)
    return [base + (k < extra) for k in range(parts)]


def _cycle(rng: np.random.Generator, rows: Sequence[int], count: int) -> list[int]:
    """`count` rows taken in shuffled passes over `rows`: every row is used once before any
    is used twice, which is how a small class is oversampled."""
    passes = [np.asarray(rows)[rng.permutation(len(rows))] for _ in range(math.ceil(count / len(rows)))]
    return [int(row) for row in np.concatenate(passes)[:count]] if passes else []


def _other_member(rng: np.random.Generator, members: Sequence[int], anchor: int) -> int:
    position = members.index(anchor)
    pick = int(rng.integers(len(members) - 1))
    return members[pick + (pick >= position)]


def _negative_partners(rng: np.random.Generator, sets: Sequence[frozenset],
                       anchors: Sequence[int]) -> list[tuple[int, int]]:
    """One partner sharing no label with each anchor (anchors whose label set overlaps
    every other row's are skipped; `check_enough_examples` ensures some anchor is not)."""
    disjoint: dict[frozenset, np.ndarray] = {}
    pairs = []
    for anchor in anchors:
        labels = sets[anchor]
        if labels not in disjoint:
            disjoint[labels] = np.flatnonzero([labels.isdisjoint(other) and labels != other for other in sets])
        candidates = disjoint[labels]
        if len(candidates):
            pairs.append((anchor, int(candidates[rng.integers(len(candidates))])))
    return pairs


def _jaccard(a: frozenset, b: frozenset) -> float:
    return 1.0 if a == b else len(a & b) / len(a | b)


# -- tuning ----------------------------------------------------------------------------------
def tune_encoder(encoder, tokenizer, texts: Sequence[str], label_sets: Sequence[Iterable[Hashable]], *,
                 iterations: int = 20, max_pairs: int | None = DEFAULT_MAX_PAIRS, epochs: int = 1,
                 lr: float = 2e-5, batch_size: int = 16,
                 max_length: int = 128, warmup_ratio: float = 0.1, seed: int = 13,
                 precision: str = "fp32", progress: bool = True,
                 windows: Sequence[Sequence[Sequence[int]]] | None = None) -> TuningSummary:
    """Tune `encoder` (a Hugging Face AutoModel, changed in place and left in eval mode) so that
    the cosine of two rows' mean-pooled embeddings approaches their label similarity.

    `tokenizer` is nlpft's `HFTokenizer` (what `load_tokenizer` returns). Mean pooling over
    the attention mask, as sentence-transformers checkpoints such as all-MiniLM-L6-v2 were
    trained. AdamW with linear warm-up and decay; dropout, pair order and pairs all follow
    `seed` (the global torch RNG is restored afterwards). `precision` "bf16" runs the forward
    pass under bf16 autocast (weights, optimizer and loss stay fp32), as `--precision`
    resolves it for the machine. Writes nothing to disk.

    `windows` (--long-text windows): per row, the token ids of its windows (special tokens
    included). Each time a row takes part in a pair, one of its windows is read, drawn with
    `seed`, instead of its first `max_length` tokens: every part of a long text can be
    pulled toward its class, as the head will read every part, at the cost of truncation
    (the same pairs and steps, each side at most one window long)."""
    if len(texts) != len(label_sets) or (windows is not None and len(windows) != len(texts)):
        raise ValueError(f"{len(texts)} texts but {len(label_sets)} label sets"
                         + (f" and {len(windows)} rows of windows" if windows is not None else ""))
    for name, value in (("epochs", epochs), ("batch size", batch_size), ("max length", max_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserInputError(f"contrastive {name} must be a whole number of at least 1, not {value!r}")
    if not lr > 0:
        raise UserInputError(f"contrastive learning rate must be above 0, not {lr!r}")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be resolved to fp32 or bf16 first, not {precision!r}")
    started = time.perf_counter()
    pairs = contrastive_pairs(label_sets, iterations, seed, max_pairs=max_pairs)
    import torch  # the libraries load only once the rows are known to be usable
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
    from transformers import get_linear_schedule_with_warmup

    from nlpft.training.divergence import check_loss

    if windows is None:  # one "window" per row: its text cut at max_length
        windows = [[ids] for ids in tokenizer.encode_batch([str(t) for t in texts], add_special_tokens=True,
                                                            max_length=min(max_length, tokenizer.max_length))]
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    device = next(encoder.parameters()).device
    steps_per_epoch = math.ceil(len(pairs) / batch_size)
    total_steps = steps_per_epoch * epochs
    loss_module = CosineSimilarityLoss(mean_pooled(encoder))
    order_rng = np.random.default_rng([seed, 1])  # apart from the pair draw, same seed
    window_rng = np.random.default_rng([seed, 2])  # which window of a long text each pair reads

    losses: list[float] = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        optimizer = torch.optim.AdamW(encoder.parameters(), lr=lr)
        schedule = get_linear_schedule_with_warmup(optimizer, round(warmup_ratio * total_steps), total_steps)
        bar = _progress_bar(total_steps) if progress else None
        encoder.train()
        try:
            for _ in range(epochs):
                order = order_rng.permutation(len(pairs))
                for start in range(0, len(order), batch_size):
                    batch = [pairs[k] for k in order[start:start + batch_size]]
                    features = [_padded([_one_window(window_rng, windows[pair[side]]) for pair in batch], pad_id,
                                        device) for side in (0, 1)]
                    targets = torch.tensor([pair[2] for pair in batch], dtype=torch.float32, device=device)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                        loss = loss_module(features, targets).float()
                    check_loss(loss.item(), f"contrastive step {len(losses) + 1}")
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    optimizer.zero_grad(set_to_none=True)
                    losses.append(loss.item())
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
        finally:
            encoder.eval()
            if bar is not None:
                bar.close()
    return TuningSummary(pairs=len(pairs), steps=len(losses), first_loss=losses[0], last_loss=losses[-1],
                         seconds=time.perf_counter() - started)


def _one_window(rng: np.random.Generator, windows: Sequence[Sequence[int]]) -> Sequence[int]:
    """One of a row's windows, drawn; a row read whole (one window) draws nothing."""
    return windows[0] if len(windows) == 1 else windows[int(rng.integers(len(windows)))]


def mean_pooled(encoder):
    """`encoder` as the sentence-transformers losses call a model: features in,
    {"sentence_embedding": mean of the token states over the attention mask} out. The
    module shares the encoder's parameters; it adds none."""
    from torch import nn

    class MeanPooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, features: dict) -> dict:
            states = self.encoder(**features).last_hidden_state
            mask = features["attention_mask"].unsqueeze(-1).to(states.dtype)
            return {"sentence_embedding": (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)}

    return MeanPooled()


def _padded(sequences: Sequence[Sequence[int]], pad_id: int, device) -> dict:
    import torch

    width = max(len(seq) for seq in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, :len(seq)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}


def _progress_bar(total: int):
    import sys

    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", desc="contrastive", dynamic_ncols=True, file=sys.stderr)


# -- sentence-transformers files -------------------------------------------------------------
def write_sentence_transformers_files(directory: str | Path, max_length: int, dim: int) -> None:
    """Add the small JSON files that let `sentence_transformers.SentenceTransformer(directory)`
    load a saved HF encoder directory as mean pooling over its token states (the weights and
    tokenizer files stay the ones `save_pretrained` wrote)."""
    directory = Path(directory)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    pooling = {"word_embedding_dimension": dim, "pooling_mode_cls_token": False,
               "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
               "pooling_mode_mean_sqrt_len_tokens": False}
    (directory / "1_Pooling").mkdir(exist_ok=True)
    for path, content in ((directory / "modules.json", modules),
                          (directory / "sentence_bert_config.json",
                           {"max_seq_length": max_length, "do_lower_case": False}),
                          (directory / "1_Pooling" / "config.json", pooling)):
        path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
