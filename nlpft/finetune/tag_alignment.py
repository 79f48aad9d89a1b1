"""Words <-> subwords for token classification with a Hugging Face fast tokenizer.

Training: each sentence (a list of words) is tokenized with `is_split_into_words=True`;
a word's label goes on its *first* subword and every other position (later subwords,
[CLS]/[SEP], padding) gets -100, which the loss ignores. Prediction reads the scores of
each word's first subword.

Long sentences: a sentence whose subwords do not fit `max_length` is cut into windows of
whole words; consecutive windows share `stride` words. Each word's prediction is taken
from the window where it is farthest from a cut edge (the edge of a window that is not
the sentence's own start or end), i.e. where it has the most context on its poorer side;
ties go to the earlier window. No averaging: every word gets exactly one score vector,
that of one window, so a CRF or argmax sees scores the model actually produced together.

Words that tokenize to zero subwords (a lone zero-width space, a combining mark, a
variation selector) are replaced by the tokenizer's unknown token (or "?" for tokenizers
without one) before encoding, so they too get a position and a prediction.

Raw text (`predict --text`) is split into words by `split_words`, with character offsets:
URLs, e-mail addresses, @user and #hashtag stay whole; numbers keep their inner . , : /
("3.14", "10:30"); letters/digits/marks form words, with the English clitics split off as
in the Penn Treebank and the WNUT/CoNLL data ("It's" -> "It" "'s", "don't" -> "do" "n't");
every other character (with any marks or joiners that follow it: one emoji) is a word
alone, as BERT's basic tokenizer does with punctuation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import regex

from nlpft.data.tagged import entity_spans

IGNORE_INDEX = -100
_MAX_LENGTH_CAP = 512  # tokenizers without a real limit report 1e30

_WORD_PATTERN = regex.compile(
    r"""
      (?:https?://|www\.)\S*[^\s.,!?;:'")\]}>]     # URL, without trailing punctuation
    | [\w.+-]+@[\w-]+(?:\.[\w-]+)+                # e-mail address
    | [@#][\p{L}\p{N}\p{M}_]+                      # @user, #hashtag
    | \p{N}+(?:[.,:/]\p{N}+)+                      # 3.14, 1,000, 10:30, 1/2
    | [\p{L}\p{N}\p{M}]+(?=n['’]t\b)               # "do" of "don't"
    | n['’]t\b                                     # "n't"
    | ['’](?:s|m|d|re|ve|ll)\b                     # 's 'm 'd 're 've 'll
    | [\p{L}\p{N}\p{M}_]+                          # a word
    | (?!\s)\X                                     # one other character with its marks (an emoji)
    """,
    regex.VERBOSE | regex.IGNORECASE,
)


@dataclass(frozen=True)
class Word:
    """A word of raw text and its character offsets: text[start:end] == word."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Window:
    """Some whole words of one sentence, encoded for the model.

    `word_ids` holds, per subword, the index of its word *in the sentence* (None for special
    tokens); `labels` (training) the word's label on its first subword and -100 elsewhere.
    """

    sentence: int
    word_start: int
    word_end: int
    input_ids: list[int]
    attention_mask: list[int]
    word_ids: list[int | None]
    labels: list[int] | None = None

    def features(self) -> dict:
        """What a data collator takes (input_ids, attention_mask and labels if any)."""
        out = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.labels is not None:
            out["labels"] = self.labels
        return out

    def first_subwords(self) -> dict[int, int]:
        """{word index in the sentence: position of its first subword}."""
        first: dict[int, int] = {}
        for position, word in enumerate(self.word_ids):
            if word is not None:
                first.setdefault(word, position)
        return first


@dataclass(frozen=True)
class Entity:
    """An entity found by a tagger: its type, its text, its character offsets in the input
    text (None for pre-split input), its words [first_word, end_word) and its score (the
    mean, over its words, of the probability of the tag chosen for each)."""

    type: str
    text: str
    start: int | None
    end: int | None
    first_word: int
    end_word: int
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


# -- raw text --------------------------------------------------------------------------------
def split_words(text: str) -> list[Word]:
    """The words of raw text with their character offsets (rules in the module docstring)."""
    return [Word(m.group(), m.start(), m.end()) for m in _WORD_PATTERN.finditer(text)]


# -- labels on subwords ----------------------------------------------------------------------
def first_subword_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Per subword: the label of its word (`word_labels[word id]`) on the word's first
    subword, -100 elsewhere."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(IGNORE_INDEX if word is None or word == previous else int(word_labels[word]))
        previous = word
    return labels


def default_max_length(tokenizer) -> int:
    return min(int(tokenizer.model_max_length), _MAX_LENGTH_CAP)


def encode_tagged(
    tokenizer,
    sentences: Sequence[Sequence[str]],
    labels: Sequence[Sequence[int]] | None = None,
    *,
    max_length: int | None = None,
    stride: int = 16,
) -> list[Window]:
    """Windows of whole words for every sentence (one window when it fits), in sentence
    order. `labels` are label ids per word; `stride` words are shared by consecutive windows."""
    max_length = max_length or default_max_length(tokenizer)
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if budget < 1:
        raise ValueError(f"max_length {max_length} leaves no room for words beside the special tokens")
    if stride < 0:
        raise ValueError(f"stride must be at least 0, not {stride}")
    sentences, counts = fill_empty_words(tokenizer, sentences)
    spans = [(i, start, end) for i, per_word in enumerate(counts) for start, end in word_windows(per_word, budget, stride)]
    if not spans:
        return []
    encoded = tokenizer([list(sentences[i][start:end]) for i, start, end in spans], is_split_into_words=True,
                        truncation=True, max_length=max_length)
    windows = []
    for k, (i, start, end) in enumerate(spans):
        word_ids = [None if w is None else w + start for w in encoded.word_ids(k)]
        window_labels = first_subword_labels(word_ids, labels[i]) if labels is not None else None
        windows.append(Window(i, start, end, encoded["input_ids"][k], encoded["attention_mask"][k], word_ids,
                              window_labels))
    return windows


def subword_counts(tokenizer, sentences: Sequence[Sequence[str]]) -> list[list[int]]:
    """Subwords per word of each sentence (without special tokens)."""
    if not sentences:
        return []
    encoded = tokenizer([list(words) for words in sentences], is_split_into_words=True, add_special_tokens=False)
    counts = []
    for k, words in enumerate(sentences):
        per_word = [0] * len(words)
        for word in encoded.word_ids(k):
            if word is not None:
                per_word[word] += 1
        counts.append(per_word)
    return counts


def fill_empty_words(
    tokenizer, sentences: Sequence[Sequence[str]]
) -> tuple[list[list[str]], list[list[int]]]:
    """The sentences with each word that yields no subword replaced by the unknown token,
    and their subword counts per word (all at least 1)."""
    sentences = [list(words) for words in sentences]
    counts = subword_counts(tokenizer, sentences)
    replacement = tokenizer.unk_token or "?"
    refill = [i for i, per_word in enumerate(counts) if not all(per_word)]
    for i in refill:
        sentences[i] = [word if n else replacement for word, n in zip(sentences[i], counts[i])]
    for i, recounted in zip(refill, subword_counts(tokenizer, [sentences[i] for i in refill])):
        counts[i] = recounted
    return sentences, counts


def word_windows(counts: Sequence[int], budget: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) word ranges whose subwords fit `budget`, sharing `stride` words with the
    previous range. A word longer than the budget forms a window alone (it is truncated;
    its first subword, the one that carries its label, survives)."""
    n = len(counts)
    windows, start = [], 0
    while start < n:
        end, total = start, 0
        while end < n and total + counts[end] <= budget:
            total += counts[end]
            end += 1
        end = max(end, start + 1)
        windows.append((start, end))
        if end == n:
            break
        start = max(start + 1, end - stride)
    return windows


# -- predictions back onto words -------------------------------------------------------------
def merge_windows(
    windows: Sequence[Window], token_scores: Sequence[np.ndarray], sentence_lengths: Sequence[int]
) -> list[np.ndarray]:
    """Per sentence, a (words, labels) array: each word's scores read at its first subword
    in the window where it lies farthest from a cut edge (see the module docstring).
    `token_scores[k]` is the (subwords, labels) output for `windows[k]`. A word no window
    reached (only if the tokenizer truncated a window against its own counts) gets zeros."""
    num_labels = next((np.asarray(s).shape[-1] for s in token_scores), 0)
    merged = [np.zeros((n, num_labels), dtype=np.float32) for n in sentence_lengths]
    best_distance = [np.full(n, -1.0) for n in sentence_lengths]
    for window, scores in zip(windows, token_scores):
        n = sentence_lengths[window.sentence]
        for word, position in window.first_subwords().items():
            distance = _distance_from_cut(word, window.word_start, window.word_end, n)
            if distance > best_distance[window.sentence][word]:
                best_distance[window.sentence][word] = distance
                merged[window.sentence][word] = np.asarray(scores)[position]
    return merged


def _distance_from_cut(word: int, start: int, end: int, length: int) -> float:
    left = word - start if start > 0 else float("inf")
    right = end - 1 - word if end < length else float("inf")
    return min(left, right, 1e9)  # finite, so any window beats "not reached" (-1)


# -- entities --------------------------------------------------------------------------------
def entities(
    tags: Sequence[str],
    tag_scores: Sequence[float],
    scheme: str = "iob2",
    words: Sequence[Word] | Sequence[str] | None = None,
    text: str | None = None,
) -> list[Entity]:
    """The entities of one tagged sentence. With `Word`s and the `text` they came from, an
    entity's text is the original text between its offsets; with plain token strings, the
    tokens joined by spaces (and no offsets)."""
    found = []
    for span in entity_spans(tags, scheme):
        score = float(np.mean([tag_scores[i] for i in range(span.start, span.end)]))
        start = end = None
        if words is not None and isinstance(words[span.start], Word):
            start, end = words[span.start].start, words[span.end - 1].end
            entity_text = text[start:end] if text is not None else " ".join(w.text for w in words[span.start:span.end])
        elif words is not None:
            entity_text = " ".join(words[span.start:span.end])
        else:
            entity_text = ""
        found.append(Entity(span.type, entity_text, start, end, span.start, span.end, score))
    return found


def best_tags(probabilities: np.ndarray, labels: Sequence[str]) -> tuple[list[str], list[float]]:
    """Argmax tag per word of a (words, labels) probability array, with its probability."""
    probabilities = np.asarray(probabilities)
    best = probabilities.argmax(axis=-1) if len(probabilities) else np.zeros(0, dtype=int)
    return [labels[i] for i in best], [float(probabilities[k, i]) for k, i in enumerate(best)]
