"""Labeled examples -> token ids -> padded batches, for every neural backbone.

Texts are tokenized once, up front, by the backbone's own tokenizer (through nlpft's
shared `TextTokenizer` interface, so the runner does not care which family it is), and
kept as Python lists of ids of their real length. Padding happens per batch, to the
longest example in it (dynamic padding); with length-grouped sampling the batches hold
texts of similar length, so little compute goes to padding:

    pad to --max-length:   [t t t t . . . . . . . .]   every batch: B x max_length
                           [t t . . . . . . . . . .]
    dynamic, grouped:      [t t t t]                   this batch: B x 4
                           [t t t .]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

#: texts are cut to this many characters per token of the length limit before they are
#: tokenized: far more than any real text needs to fill the limit (tokens average 3-6
#: characters), so only the part that would be cut anyway is skipped, and a 20 MB cell
#: costs no more than a page of text. A text cut here counts as truncated.
CHARS_PER_TOKEN = 16
#: --long-text windows reads a text whole, but no more than this many windows' worth of
#: characters (at CHARS_PER_TOKEN): with the defaults about 800,000 characters, some 300
#: pages, so one huge cell cannot turn a prediction into millions of windows. Cut counts as
#: truncated.
MAX_TEXT_WINDOWS = 256


@dataclass
class Encoded:
    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    truncated: int  # texts cut at max_length
    tokens: int = 0   # word-level only: tokens before truncation ...
    unknown: int = 0  # ... and how many of them the vocabulary lacks ([UNK])
    cut: list[bool] = field(default_factory=list)  # per text: was it cut
    documents: list[int] | None = None  # windows: the text each encoded window comes from
    windows_made: list[int] = field(default_factory=list)  # windows: per text, before any cap
    windows_kept: list[int] = field(default_factory=list)  # windows: per text, after the training cap

    @property
    def unknown_rate(self) -> float:
        return self.unknown / self.tokens if self.tokens else 0.0


def encode_examples(tokenizer, texts: Sequence[str], pairs: Sequence[str | None] | None, max_length: int,
                    batch: int = 1024, prefix_ids: Sequence[int] = (), suffix_ids: Sequence[int] = ()) -> Encoded:
    """Ids with the model's special tokens ([CLS] ... [SEP] for BERT), truncated to
    `max_length`. `tokenizer` is an nlpft `TextTokenizer`: a Hugging Face one (`HFTokenizer`,
    whose `.hf` adds its own special tokens and handles pairs) or a word-level one, whose
    ids get `prefix_ids`/`suffix_ids` around them (e.g. the RNN LM's [EOS] markers).
    Each text (and pair text) is first cut to `max_length * CHARS_PER_TOKEN` characters, so
    the tokenizer never sees more of it than can matter."""
    limit = max_length * CHARS_PER_TOKEN
    cut = [len(t) > limit or (pairs is not None and len(pairs[i] or "") > limit) for i, t in enumerate(texts)]
    texts = [t[:limit] for t in texts]
    if pairs is not None:
        pairs = [p if p is None else p[:limit] for p in pairs]
    if not hasattr(tokenizer, "hf"):
        encoded = _encode_words(tokenizer, texts, pairs, max_length, list(prefix_ids), list(suffix_ids))
    else:
        encoded = _encode_hf(tokenizer.hf, texts, pairs, max_length, batch)
    encoded.truncated = sum(c or long for c, long in zip(cut, encoded.cut, strict=True))
    return encoded


def _encode_hf(hf, texts: list[str], pairs: list[str | None] | None, max_length: int, batch: int) -> Encoded:
    use_pairs = pairs is not None and any(p is not None for p in pairs)
    ids: list[list[int]] = []
    types: list[list[int]] | None = [] if use_pairs else None
    cut: list[bool] = []
    for start in range(0, len(texts), batch):
        chunk = texts[start:start + batch]
        kwargs = {"add_special_tokens": True, "return_attention_mask": False, "verbose": False}
        if use_pairs:
            second = [p or "" for p in pairs[start:start + batch]]
            full = hf(chunk, second, truncation=False, return_token_type_ids=False, **kwargs)["input_ids"]
            out = hf(chunk, second, truncation="longest_first", max_length=max_length,
                     return_token_type_ids=True, **kwargs)
            types.extend(list(t) for t in out["token_type_ids"])
        else:
            full = hf(chunk, truncation=False, return_token_type_ids=False, **kwargs)["input_ids"]
            out = hf(chunk, truncation=True, max_length=max_length, return_token_type_ids=False, **kwargs)
        cut.extend(len(f) > max_length for f in full)
        ids.extend(list(x) for x in out["input_ids"])
    return Encoded(ids, types, sum(cut), cut=cut)


def encode_windows(hf, texts: Sequence[str], pairs: Sequence[str | None] | None, max_length: int, stride: int,
                   max_windows: int | None = None, batch: int = 256) -> Encoded:
    """Every token of every text, in windows of `max_length` tokens (special tokens included)
    of which consecutive ones share `stride` tokens: the tokenizer's own overflow windows, so
    each window is framed as the model expects. With pairs the windows run over the second
    text and each repeats the first, cut (and counted as truncated) where it would leave the
    second less than half of a window's room, or no more than `stride` tokens. A text longer
    than MAX_TEXT_WINDOWS windows' worth of characters is cut there first (and counted as
    truncated). `max_windows` (training) keeps that many windows of a text,
    evenly spaced over it, the first and last included (`spaced_windows`). `hf` is a Hugging
    Face fast tokenizer."""
    use_pairs = pairs is not None and any(p is not None for p in pairs)
    room = max_length - hf.num_special_tokens_to_add(pair=use_pairs)
    limit = MAX_TEXT_WINDOWS * max(1, room - stride) * CHARS_PER_TOKEN
    if use_pairs:  # the windows run over the second text (the first is cut further below)
        cut = [len(t) > limit or (p is not None and len(p) > limit) for t, p in zip(texts, pairs, strict=True)]
        texts = [t[:limit] for t in texts]
        pairs = [p[:limit] if p is not None else None for p in pairs]
    else:
        cut = [len(t) > limit for t in texts]
        texts = [t[:limit] for t in texts]
    if use_pairs:  # the second text keeps half the room and more than `stride` tokens
        texts, first_cut = _fit_first_texts(hf, texts, max(1, room - max(stride + 1, room - room // 2)))
        cut = [a or b for a, b in zip(cut, first_cut, strict=True)]
    ids: list[list[int]] = []
    types: list[list[int]] | None = [] if use_pairs else None
    documents: list[int] = []
    made: list[int] = []
    kept: list[int] = []
    kwargs = {"add_special_tokens": True, "return_attention_mask": False, "return_overflowing_tokens": True,
              "max_length": max_length, "stride": stride, "verbose": False}
    for start in range(0, len(texts), batch):
        chunk = texts[start:start + batch]
        if use_pairs:
            out = hf(chunk, [p or "" for p in pairs[start:start + batch]], truncation="only_second",
                     return_token_type_ids=True, **kwargs)
        else:
            out = hf(chunk, truncation=True, return_token_type_ids=False, **kwargs)
        per_text: list[list[int]] = [[] for _ in chunk]
        for window, text in enumerate(out["overflow_to_sample_mapping"]):
            per_text[text].append(window)
        for text, windows in enumerate(per_text):
            made.append(len(windows))
            windows = spaced_windows(windows, max_windows)
            kept.append(len(windows))
            for window in windows:
                ids.append(list(out["input_ids"][window]))
                if types is not None:
                    types.append(list(out["token_type_ids"][window]))
                documents.append(start + text)
    return Encoded(ids, types, sum(cut), cut=cut, documents=documents, windows_made=made, windows_kept=kept)


def spaced_windows(windows: list, limit: int | None) -> list:
    """At most `limit` of `windows`, evenly spaced, the first and last included: a capped
    text is still read from its beginning to its end, the same windows on every run."""
    if limit is None or len(windows) <= limit:
        return windows
    if limit == 1:
        return windows[:1]
    last = len(windows) - 1
    return [windows[round(k * last / (limit - 1))] for k in range(limit)]


def pool_windows(logits, documents: Sequence[int], num_texts: int, pooling: str):
    """One row of outputs per text: the mean (or the maximum) of its windows' rows."""
    import numpy as np

    logits = np.asarray(logits, dtype=np.float32)
    documents = np.asarray(documents, dtype=np.int64)
    if pooling == "max":
        pooled = np.full((num_texts, *logits.shape[1:]), -np.inf, dtype=np.float32)
        np.maximum.at(pooled, documents, logits)
        return pooled
    # one pass over the windows (not one per text): a large input stays linear in its windows
    pooled = np.zeros((num_texts, *logits.shape[1:]), dtype=np.float64)
    np.add.at(pooled, documents, logits)
    counts = np.bincount(documents, minlength=num_texts).reshape(-1, *([1] * (logits.ndim - 1)))
    return (pooled / counts).astype(np.float32)


def first_windows(documents: Sequence[int], num_texts: int) -> list[int]:
    """The index of each text's first window."""
    first = [-1] * num_texts
    for window, text in reversed(list(enumerate(documents))):
        first[text] = window
    return first


def window_counts(encoded: Encoded) -> dict:
    """How one split was read in windows: texts, texts split, windows made and read."""
    made, kept = encoded.windows_made, encoded.windows_kept
    return {"texts": len(made), "texts_split": sum(1 for n in made if n > 1), "windows": sum(kept),
            "mean_windows": round(sum(kept) / len(kept), 2) if kept else 0.0, "max_windows": max(kept, default=0),
            "texts_capped": sum(1 for m, k in zip(made, kept, strict=True) if k < m),
            "windows_left_out": sum(made) - sum(kept)}


def describe_windows(name: str, counts: dict) -> str:
    line = (f"{name}: {counts['texts_split']:,} of {counts['texts']:,} texts split, {counts['windows']:,} windows "
            f"(mean {counts['mean_windows']:.2f}, max {counts['max_windows']} per text)")
    if counts["texts_capped"]:
        line += (f"; {counts['texts_capped']:,} texts capped by --max-windows, {counts['windows_left_out']:,} "
                 "windows left out")
    return line


def _fit_first_texts(hf, texts: list[str], most: int) -> tuple[list[str], list[bool]]:
    """The first texts of pairs cut after their `most`-th token (at that token's last
    character), and which were cut."""
    offsets = hf(texts, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False,
                 verbose=False)["offset_mapping"]
    fitted, cut = [], []
    for text, spans in zip(texts, offsets, strict=True):
        cut.append(len(spans) > most)
        fitted.append(text[:spans[most - 1][1]] if len(spans) > most else text)
    return fitted, cut


def _encode_words(tokenizer, texts, pairs, max_length: int, prefix: list[int], suffix: list[int]) -> Encoded:
    from nlpft.errors import UserInputError

    if pairs is not None and any(p is not None for p in pairs):
        raise UserInputError("sentence pairs (--text-pair-col) need a transformer backbone; word-level "
                             "backbones (static vectors, the RNN LM) read one text")
    room = max_length - len(prefix) - len(suffix)
    unk = tokenizer.unk_id if tokenizer.unk_id is not None else 0
    ids, cut, tokens, unknown = [], [], 0, 0
    for words in tokenizer.encode_batch(list(texts)):
        tokens += len(words)
        unknown += sum(1 for w in words if w == tokenizer.unk_id) if tokenizer.unk_id is not None else 0
        cut.append(len(words) > room)
        ids.append(prefix + (list(words[:room]) or [unk]) + suffix)  # never empty: pooling needs a token
    return Encoded(ids, None, sum(cut), tokens, unknown, cut=cut)


class EncodedDataset(torch.utils.data.Dataset):
    """Encoded texts or windows (and labels, if known: one per text) as dicts of lists; the
    collator pads them."""

    def __init__(self, encoded: Encoded, labels: list | None = None):
        self.encoded = encoded
        if labels is not None and encoded.documents is not None:  # each window carries its text's label
            labels = [labels[document] for document in encoded.documents]
        self.labels = labels

    def __len__(self) -> int:
        return len(self.encoded.input_ids)

    def __getitem__(self, index: int) -> dict:
        item = {"input_ids": self.encoded.input_ids[index]}
        if self.encoded.token_type_ids is not None:
            item["token_type_ids"] = self.encoded.token_type_ids[index]
        if self.labels is not None:
            item["labels"] = self.labels[index]
        return item

    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.encoded.input_ids]


class PadCollator:
    """Pads a batch to its longest member; `attention_mask` marks the real tokens.
    Right padding: decoder classifiers find the last real token from the mask."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[dict]) -> dict:
        longest = max(len(item["input_ids"]) for item in items)
        n = len(items)
        input_ids = torch.full((n, longest), self.pad_id, dtype=torch.long)  # (batch, longest)
        attention = torch.zeros((n, longest), dtype=torch.long)
        types = torch.zeros((n, longest), dtype=torch.long) if "token_type_ids" in items[0] else None
        for row, item in enumerate(items):
            ids = item["input_ids"]
            input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention[row, :len(ids)] = 1
            if types is not None:
                types[row, :len(ids)] = torch.tensor(item["token_type_ids"], dtype=torch.long)
        batch = {"input_ids": input_ids, "attention_mask": attention}
        if types is not None:
            batch["token_type_ids"] = types
        if "labels" in items[0]:
            first = items[0]["labels"]
            dtype = torch.long if isinstance(first, int) else torch.float32
            batch["labels"] = torch.tensor([item["labels"] for item in items], dtype=dtype)
        return batch
