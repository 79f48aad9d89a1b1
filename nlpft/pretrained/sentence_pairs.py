"""BERT's next-sentence prediction (NSP): sentence pairs built from consecutive lines.

Text to ids. `LineMarkedEncoder` encodes like `pretraining.SubwordLineEncoder` (ids without
special tokens, blank lines skipped) but keeps where lines and documents end: each line's
ids are followed by LINE_END, each document by DOC_END, two ids above any vocabulary that
are dropped before anything reaches a model. The corpus is still split by
`token_ids.encode_splits` (blocks of 200 lines dealt to train/valid/test).

Documents. A document is a run of consecutive lines of one file inside one of those
200-line blocks: it ends at the end of each file (`FileEndMarked`) and of each block,
because consecutive blocks of a split are not consecutive text. Blank lines do not end
documents: in running prose such as Austen's novels they separate paragraphs that
continue each other, and a one-sentence-per-line corpus such as the KJV has none.

Pairs (`SentencePairs`): BERT's `create_instances_from_document`, on lines. In each
document, consecutive lines are gathered into a chunk until it holds `max_tokens` (the
block size less [CLS], [SEP], [SEP]) or the document ends. A seeded coin then makes

- IsNext (label 0), probability 1/2: segment A = the chunk's first k lines (k drawn from
  1..n-1), segment B = the rest of the chunk, the text that really follows A. A chunk of
  one line (a line as long as the pair) takes the next line as B;
- NotNext (label 1): A likewise; B = lines from a random start in another document of the
  same split, as many as fill the pair. The chunk's lines A did not use begin the next
  chunk. In a split that is one document, B starts at a random line outside A and its
  true continuation, and stops before A.

A pair the coin asks for that the text cannot give (IsNext for the single last line of a
document; NotNext in a one-document split too short for a distant segment) is not made
and its lines are skipped, so the share of IsNext pairs is the coin's, 1/2 up to chance.
A pair longer than `max_tokens` loses tokens from the longer segment, A at its start and B
at its end, so the junction the label is about is kept. The pairs depend on the ids, the
block size and the seed only: rebuilt on `--resume`, they are the same pairs.

    [CLS] a1 a2 ... [SEP] b1 b2 ... [SEP]      token_type_ids 0 ... 0 1 ... 1
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from nlpft.data.corpus import TextCorpus
from nlpft.data.token_ids import DTYPE
from nlpft.pretrained.pretraining import SubwordLineEncoder

#: markers in the id stream, above any vocabulary
LINE_END = int(np.iinfo(DTYPE).max)
DOC_END = LINE_END - 1
FIRST_MARKER = DOC_END

IS_NEXT, NOT_NEXT = 0, 1
#: ids of a pair that are not text: [CLS] A [SEP] B [SEP]
SPECIAL_TOKENS = 3
#: scanning for markers reads the memory-mapped stream in pieces of this many ids
_SCAN_IDS = 1 << 24


class FileEndMarked:
    """A corpus whose lines are followed, after each document (a file, a dataset row), by None
    (a document end for `LineMarkedEncoder`); `encode_splits` reads it like the corpus itself."""

    def __init__(self, corpus: TextCorpus):
        self.corpus = corpus
        self.path = corpus.path

    def __iter__(self) -> Iterator[str | None]:
        yield from self.corpus.lines_and_document_ends()


class LineMarkedEncoder(SubwordLineEncoder):
    """Lines -> ids + LINE_END each; None (a file end) and the end of every block -> DOC_END."""

    def __init__(self, tokenizer):
        super().__init__(tokenizer, keep_newlines=False)

    def _encode(self, texts: list[str | None]) -> np.ndarray:
        lines = [t for t in texts if t is not None]
        encoded = iter(self._tokenize(lines))
        out: list[int] = []
        for text in texts:
            if text is None:
                out.append(DOC_END)
            else:
                out.extend(next(encoded))
                out.append(LINE_END)
        return np.asarray(out, dtype=DTYPE)

    def blocks(self, lines: Iterable[str | None], block_lines: int) -> Iterator[tuple[np.ndarray, int]]:
        encoded: list[np.ndarray] = []
        texts: list[str | None] = []
        chars = n = 0
        for line in lines:
            if line is None:
                if texts or encoded:
                    texts.append(None)
                continue
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            texts.append(line)
            chars += len(line)
            n += 1
            if chars >= self.ENCODE_CHARS:
                encoded.append(self._encode(texts))
                texts, chars = [], 0
            if n == block_lines:
                yield self._block_end(encoded, texts), n
                encoded, texts, chars, n = [], [], 0, 0
        if n:
            yield self._block_end(encoded, texts), n

    def _block_end(self, encoded: list[np.ndarray], texts: list[str | None]) -> np.ndarray:
        if not texts or texts[-1] is not None:
            texts = [*texts, None]  # a block ends its document
        return np.concatenate([*encoded, self._encode(texts)])


class LineIndex:
    """Where each line's ids lie in a marked stream, and which lines make up each document."""

    def __init__(self, ids: np.ndarray):
        line_start, line_stop, doc_first = [], [], [0]
        start = 0
        for offset in range(0, int(ids.shape[0]), _SCAN_IDS):
            piece = np.asarray(ids[offset:offset + _SCAN_IDS])
            marks = np.flatnonzero(piece >= FIRST_MARKER)
            for position, mark in zip((marks + offset).tolist(), piece[marks].tolist(), strict=True):
                if mark == LINE_END:
                    if position > start:  # a line that encoded to nothing is left out
                        line_start.append(start)
                        line_stop.append(position)
                elif doc_first[-1] < len(line_start):
                    doc_first.append(len(line_start))
                start = position + 1
        if doc_first[-1] == len(line_start):
            doc_first.pop()  # no lines after the last document end
        self.start = np.asarray(line_start, dtype=np.int64)
        self.stop = np.asarray(line_stop, dtype=np.int64)
        self.tokens = self.stop - self.start
        self.doc_first = np.asarray(doc_first, dtype=np.int64)
        self.doc_stop = np.append(self.doc_first[1:], len(self.start)).astype(np.int64)

    @property
    def lines(self) -> int:
        return len(self.start)

    @property
    def documents(self) -> int:
        return len(self.doc_first)


def trimmed_lengths(a: int, b: int, max_tokens: int) -> tuple[int, int]:
    """Lengths of segments A and B once the pair fits `max_tokens`: tokens come off the
    longer segment, one at a time (B when they are equal), as BERT's `truncate_seq_pair`."""
    excess = a + b - max_tokens
    if excess <= 0:
        return a, b
    from_longer = min(excess, abs(a - b))
    if a > b:
        a -= from_longer
    else:
        b -= from_longer
    rest = excess - from_longer
    return a - rest // 2, b - (rest - rest // 2)


class SentencePairs(torch.utils.data.Dataset):
    """IsNext/NotNext pairs over one split's marked id stream (the rule is in the module
    docstring). Items: input_ids, token_type_ids, next_sentence_label."""

    def __init__(self, ids: np.ndarray, block_size: int, cls_id: int, sep_id: int, seed: int | tuple[int, ...]):
        self.ids = ids
        self.block_size = block_size
        self.max_tokens = block_size - SPECIAL_TOKENS
        self.cls_id, self.sep_id = cls_id, sep_id
        self.index = LineIndex(ids)
        #: one row per pair: first and stop line of A, of B, the label
        self.pairs = _build_pairs(self.index, self.max_tokens, np.random.default_rng(seed))

    def __len__(self) -> int:
        return len(self.pairs)

    def _segment(self, first_line: int, stop_line: int) -> np.ndarray:
        span = self.ids[self.index.start[first_line]:self.index.stop[stop_line - 1]]
        return np.asarray(span[span < FIRST_MARKER], dtype=np.int64)

    def __getitem__(self, index: int) -> dict:
        a_first, a_stop, b_first, b_stop, label = (int(v) for v in self.pairs[index])
        a, b = self._segment(a_first, a_stop), self._segment(b_first, b_stop)
        a_len, b_len = trimmed_lengths(len(a), len(b), self.max_tokens)
        a, b = a[len(a) - a_len:], b[:b_len]
        input_ids = np.concatenate([[self.cls_id], a, [self.sep_id], b, [self.sep_id]])
        token_types = np.zeros(len(input_ids), dtype=np.int64)
        token_types[a_len + 2:] = 1
        return {"input_ids": torch.from_numpy(input_ids.astype(np.int64)),
                "token_type_ids": torch.from_numpy(token_types),
                "next_sentence_label": torch.tensor(label)}

    def lengths(self) -> np.ndarray:
        """Ids per pair, special tokens included."""
        tokens = np.concatenate([[0], np.cumsum(self.index.tokens)])
        a = tokens[self.pairs[:, 1]] - tokens[self.pairs[:, 0]]
        b = tokens[self.pairs[:, 3]] - tokens[self.pairs[:, 2]]
        total = np.minimum(a + b, self.max_tokens)
        return total + SPECIAL_TOKENS

    def is_next_share(self) -> float:
        return float(np.mean(self.pairs[:, 4] == IS_NEXT)) if len(self) else float("nan")

    @property
    def text_tokens(self) -> int:
        """Ids of text in the split (markers not counted)."""
        return int(self.index.tokens.sum())


def _build_pairs(index: LineIndex, max_tokens: int, rng: np.random.Generator) -> np.ndarray:
    pairs: list[tuple[int, int, int, int, int]] = []
    for doc in range(index.documents):
        first, stop = int(index.doc_first[doc]), int(index.doc_stop[doc])
        line = first
        while line < stop:
            chunk_stop, tokens = line, 0
            while chunk_stop < stop and tokens < max_tokens:
                tokens += int(index.tokens[chunk_stop])
                chunk_stop += 1
            is_next = rng.random() < 0.5
            a_stop = line + 1 if chunk_stop - line == 1 else int(rng.integers(line + 1, chunk_stop))
            a_tokens = int(index.tokens[line:a_stop].sum())
            if is_next:
                b_first, b_stop = a_stop, max(chunk_stop, a_stop + 1)
                if b_first >= stop:
                    line = stop  # the document's last line alone: no continuation to pair it with
                    continue
            else:
                segment = _random_segment(index, doc, line, a_stop, max_tokens - a_tokens, rng)
                if segment is None:
                    line = chunk_stop
                    continue
                b_first, b_stop = segment
            pairs.append((line, a_stop, b_first, b_stop, IS_NEXT if is_next else NOT_NEXT))
            line = b_stop if is_next else a_stop
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 5)


def _random_segment(index: LineIndex, doc: int, a_first: int, a_stop: int, target: int,
                    rng: np.random.Generator) -> tuple[int, int] | None:
    """Lines for a NotNext segment B of about `target` tokens: from a random start in another
    document; in a one-document split, from a line outside A and its true continuation (the
    segment then stops before A). None when there is no such line."""
    if index.documents > 1:
        other = int(rng.integers(index.documents - 1))
        other += other >= doc
        first, limit = int(index.doc_first[other]), int(index.doc_stop[other])
        start = int(rng.integers(first, limit))
    else:
        first, limit = int(index.doc_first[doc]), int(index.doc_stop[doc])
        before, after = a_first - first, limit - (a_stop + 1)  # lines before A; after A's continuation
        if before + after <= 0:
            return None
        pick = int(rng.integers(before + after))
        start = first + pick if pick < before else a_stop + 1 + (pick - before)
        if start < a_first:
            limit = a_first
    stop, tokens = start, 0
    while stop < limit and (stop == start or tokens < target):
        tokens += int(index.tokens[stop])
        stop += 1
    return start, stop


class PairCollator:
    """Pairs of different lengths -> a batch padded to its longest pair, with an attention
    mask; MLM labels (evaluation) are padded with -100."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, examples: list[dict]) -> dict:
        longest = max(len(e["input_ids"]) for e in examples)
        pad_values = {"input_ids": self.pad_id, "token_type_ids": 0, "labels": -100}
        batch = {key: torch.stack([_pad(e[key], longest, value) for e in examples])
                 for key, value in pad_values.items() if key in examples[0]}
        batch["attention_mask"] = torch.stack(
            [_pad(torch.ones(len(e["input_ids"]), dtype=torch.long), longest, 0) for e in examples])
        batch["next_sentence_label"] = torch.stack([e["next_sentence_label"] for e in examples])
        return batch


def _pad(values: torch.Tensor, length: int, value: int) -> torch.Tensor:
    return torch.cat([values, torch.full((length - len(values),), value, dtype=values.dtype)])


# -- evaluation ------------------------------------------------------------------------------
def per_pair_scores(logits, labels) -> torch.Tensor:
    """`Trainer(preprocess_logits_for_metrics=...)`: the model's outputs reduced, per pair,
    to (MLM loss summed over its masked tokens, masked tokens, NSP loss, NSP correct), so
    evaluation keeps four numbers a pair instead of a vocabulary of logits a token."""
    prediction_logits, relationship_logits = logits[0].float(), logits[1].float()
    mlm_labels, nsp_labels = labels
    token_losses = torch.nn.functional.cross_entropy(prediction_logits.transpose(1, 2), mlm_labels,
                                                     ignore_index=-100, reduction="none")
    nsp_losses = torch.nn.functional.cross_entropy(relationship_logits, nsp_labels, reduction="none")
    correct = (relationship_logits.argmax(-1) == nsp_labels).float()
    return torch.stack([token_losses.sum(1), (mlm_labels != -100).sum(1).float(), nsp_losses, correct], dim=1)


def pair_metrics(prediction) -> dict:
    """`Trainer(compute_metrics=...)` over `per_pair_scores`: MLM loss (mean over all masked
    tokens) and its perplexity, NSP loss and accuracy (means over pairs)."""
    scores = np.asarray(prediction.predictions, dtype=np.float64)
    mlm_loss = scores[:, 0].sum() / max(scores[:, 1].sum(), 1.0)
    return {"mlm_loss": float(mlm_loss), "mlm_perplexity": float(np.exp(min(mlm_loss, 50.0))),
            "nsp_loss": float(scores[:, 2].mean()), "nsp_accuracy": float(scores[:, 3].mean())}
