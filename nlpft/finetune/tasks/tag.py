"""`--task tag`: one tag per word (named entities, chunks), read from CoNLL, JSONL or CSV.

Files are read and checked by `nlpft.data.tagged` before any model loads; the label space
is every tag of the scheme for the training file's entity types (O, B-X, I-X, ...), and a
valid/test/evaluate file with a tag outside it stops the run.

Encoding depends on the backbone's tokenizer:

transformers   words -> subwords with the fast tokenizer (`nlpft.finetune.tag_alignment`),
               sentences longer than --max-length read in windows sharing --stride words.
               Training labels every subword: the word's tag on its first subword and the
               inside tag of its type (I-X; O stays O) on the rest, so the stock
               `pipeline("token-classification")`, which tags every subword, finds the
               entities nlpft finds. Validation, test and prediction read each word's
               first subword only. With --crf (`nlpft.finetune.token_crf`) training too
               labels first subwords only: the CRF's transitions link words.
word-level     one id per word (`word_tagger.encode_words`) and its shape (capitalisation,
               which a lowercased vocabulary loses), for the BiLSTM(-CRF) tagger; a
               sentence is read whole (--max-length and --stride apply to transformers).

The model computes its own loss (`labels_into_model`: cross-entropy, or the CRF's
likelihood); a model with a CRF returns Viterbi-consistent scores as its logits
(`crf.decoded_log_scores`), so decisions are the argmax of the scores for every backbone.
Entity metrics come from seqeval (`nlpft.finetune.tag_metrics`); keep-best and early
stopping follow the validation entity micro F1.

Raw text (predict --text, a .txt file of one text per line) is split into words by
`tag_alignment.split_words`: URLs, e-mails, @user and #hashtags whole, numbers with their
inner punctuation, English clitics split off ("don't" -> "do" "n't"), every other
punctuation mark a word alone, as in the WNUT/CoNLL data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nlpft.errors import UserInputError
from nlpft.finetune.tasks.base import SPLIT_CORPUS_FILE, Splits, Task, json_kind
from nlpft.options import option, positive_int

if TYPE_CHECKING:  # numpy loads when a method needs it: listing the plug-ins stays cheap
    import numpy as np

IGNORE_INDEX = -100
TAG_STRIDE = 16  # words shared by consecutive windows of a long sentence without --stride
RAW_TEXT_SUFFIXES = (".txt",)  # predict input read as raw text, one text per line
ENTITY_SUFFIXES = (".jsonl", ".json")  # predict --out: entities as JSON lines (else CoNLL)
WORD_SHAPE_DIM = 16  # the BiLSTM tagger's capitalisation embedding
# a new per-word head over a transformer, where nearly every word is O, barely moves at the
# sentence-classification rate: MiniLM on WNUT-16 (1,520 sentences, 3 epochs) tagged every
# word O at 2e-5 and reached 0.47 validation entity F1 at 1e-4
TRANSFORMER_TAGGING_LR = 1e-4


SCHEMES = ("iob2", "iob1", "bioes")


@dataclass(frozen=True)
class TagOptions:
    """The options of --task tag."""

    tag_col: int | None = option(None, "CoNLL files: the column of the tags, counting from 1 (default: the last "
                                       "column)", type=positive_int, metavar="N", fingerprinted=True)
    tag_scheme: str = option("iob2", "how the tags mark entities: iob2 (B-X begins, I-X continues), iob1 or bioes "
                                     "(default: %(default)s)", choices=list(SCHEMES), fingerprinted=True)
    repair_tags: bool = option(False, "rewrite invalid tag sequences (an I-X after O or after another type begins "
                                      "an entity) instead of stopping", fingerprinted=True)
    crf: bool = option(False, "a linear-chain CRF over the words' tag scores, Viterbi-decoded (static vectors and "
                              "the RNN LM: a BiLSTM-CRF; transformers: saved as crf.json/crf.safetensors beside the "
                              "stock directory, used by nlpft predict/evaluate and ignored by "
                              "pipeline('token-classification'))", fingerprinted=True)


@dataclass(frozen=True)
class TextSentence:
    """A sentence of raw text split into words: `tokens` as a tagged file's, plus each
    word's character offsets in `text`."""

    tokens: tuple[str, ...]
    words: tuple  # tag_alignment.Word
    text: str
    line: int
    tags: tuple[str, ...] | None = None


class Rows(list):
    """Rows of a predict/evaluate input, with the lines skipped (empty ones of a .txt file)."""

    def __init__(self, rows, skipped_rows=()):
        super().__init__(rows)
        self.skipped_rows = list(skipped_rows)


@dataclass(frozen=True)
class SkippedLine:
    row: int


@dataclass
class EncodingStats:
    truncated: int = 0
    tokens: int = 0
    unknown: int = 0

    @property
    def unknown_rate(self) -> float:
        return self.unknown / self.tokens if self.tokens else 0.0


class TagDataset:
    """Encoded windows (transformers) or sentences (word-level) as dicts of lists; `windows`
    maps the model's outputs back onto each sentence's words."""

    def __init__(self, items: list[dict], sentence_lengths: list[int], windows: list | None = None):
        self.items = items
        self.sentence_lengths = sentence_lengths
        self.windows = windows

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]

    def lengths(self) -> list[int]:
        return [len(item["input_ids"]) for item in self.items]


class TagCollator:
    """Right-pads ids (with `pad_id`), labels (with -100), word shapes and word starts (with 0)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[dict]) -> dict:
        import torch

        longest = max(len(item["input_ids"]) for item in items)
        batch = {"input_ids": torch.full((len(items), longest), self.pad_id, dtype=torch.long),
                 "attention_mask": torch.zeros((len(items), longest), dtype=torch.long)}
        padding = {"labels": IGNORE_INDEX, "case_ids": 0, "word_starts": 0}
        for key, value in padding.items():
            if key in items[0]:
                batch[key] = torch.full((len(items), longest), value, dtype=torch.long)
        for row, item in enumerate(items):
            n = len(item["input_ids"])
            batch["attention_mask"][row, :n] = 1
            for key in ("input_ids", *padding):
                if key in batch:
                    batch[key][row, :n] = torch.tensor(item[key], dtype=torch.long)
        return batch


class TagTask(Task):
    name = "tag"
    summary = "one tag per word (NER): CoNLL, JSONL or CSV of tokens and IOB2/IOB1/BIOES tags"
    head = "token-classification"
    hf_problem_type = None
    selection_metric = "micro_f1"
    target_kind = "tags"
    labels_into_model = True
    predictions_file = "predictions.conll"
    options = TagOptions

    def __init__(self, task_options: TagOptions, labels: list[str] | None = None, stride: int = TAG_STRIDE):
        self.task_options = task_options
        self.labels = labels
        self.stride = stride

    @property
    def crf(self) -> bool:
        return self.task_options.crf

    # -- construction and state -------------------------------------------------------------
    @classmethod
    def from_options(cls, opts) -> TagTask:
        if opts.class_weights is not None:
            raise UserInputError("--class-weights applies to --task single; --task tag weighs every word alike")
        if opts.skip_bad_rows:
            raise UserInputError("--skip-bad-rows applies to labeled CSV files; fix the tagged file (or pass "
                                 "--repair-tags for invalid tag sequences)")
        return cls(opts.task_options, stride=TAG_STRIDE if opts.stride is None else opts.stride)

    def to_meta(self) -> dict:
        """The labels and the stride; the tag options are saved with the other options."""
        return {"task": {"task": self.name, "num_labels": self.num_outputs, "stride": self.stride},
                "labels": self.labels}

    @classmethod
    def from_meta(cls, meta: dict, source: Path) -> TagTask:
        stride = meta["task"].get("stride")
        return cls(cls.saved_options(meta), list(meta["labels"]), stride=TAG_STRIDE if stride is None else int(stride))

    @classmethod
    def check_meta(cls, meta: dict, bad) -> None:
        labels = meta.get("labels")
        if not isinstance(labels, list) or not labels or not all(isinstance(t, str) for t in labels):
            raise bad(f"field 'labels' is {json_kind(labels)}, expected an array of tag names")
        cls.saved_options(meta, bad)
        stride = meta["task"].get("stride")
        if stride is not None and (isinstance(stride, bool) or not isinstance(stride, int) or stride < 0):
            raise bad(f"field 'task.stride' is {json_kind(stride)}, expected a whole number")

    @property
    def scheme(self) -> str:
        return self.task_options.tag_scheme

    # -- data -------------------------------------------------------------------------------
    def _read(self, path: str, *, training: bool = False, require_tags: bool = True):
        from nlpft.data.tagged import read_tagged

        return read_tagged(path, tag_col=self.task_options.tag_col, scheme=self.scheme,
                           repair_tags=self.task_options.repair_tags, require_tags=require_tags,
                           training=training)

    def read_splits(self, opts, bad_rows_dir: Path | None, warn) -> Splits:
        from nlpft.data.labeled import held_out_fractions
        from nlpft.data.tagged import check_tags, scheme_tags, split_sentences

        files = {"train": self._read(opts.train, training=True),
                 "valid": self._read(opts.valid) if opts.valid else None,
                 "test": self._read(opts.test) if opts.test else None}
        for data in files.values():
            if data is not None and data.repaired:
                warn(data.summary())
        self.labels = list(scheme_tags(files["train"].entity_types, self.scheme))
        for name in ("valid", "test"):
            if files[name] is not None:
                check_tags(files[name], self.labels, getattr(opts, name))
        rows = {name: list(data) if data is not None else None for name, data in files.items()}
        fractions = held_out_fractions(len(rows["train"]), opts.valid_fraction, opts.test_fraction,
                                       rows["valid"] is not None, rows["test"] is not None)
        if fractions is not None:
            rows["train"], split_valid, split_test = split_sentences(
                rows["train"], valid_fraction=fractions["valid"], test_fraction=fractions["test"],
                seed=opts.data_split_seed)
            rows["valid"] = rows["valid"] if rows["valid"] is not None else split_valid
            rows["test"] = rows["test"] if rows["test"] is not None else split_test
        if not rows["valid"] or not rows["test"]:
            raise UserInputError(f"{opts.train}: too few sentences to hold out validation and test ones; "
                                 "pass --valid and --test files or use a larger file")
        return Splits(rows["train"], rows["valid"], rows["test"], {}, fractions)

    def write_split(self, directory: Path, splits: Splits) -> dict:
        """CoNLL files: token TAB tag, a blank line between sentences, tags as read;
        train.txt: one sentence a line, its tokens joined by spaces."""
        files = {}
        for part in ("train", "valid", "test"):
            files[part] = f"{part}.conll"
            with open(directory / files[part], "w", encoding="utf-8", newline="\n") as fh:
                for sentence in getattr(splits, part):
                    fh.writelines(f"{token}\t{tag}\n" for token, tag in zip(sentence.tokens, sentence.tags))
                    fh.write("\n")
        with open(directory / SPLIT_CORPUS_FILE, "w", encoding="utf-8", newline="\n") as fh:
            fh.writelines(" ".join(sentence.tokens) + "\n" for sentence in splits.train)
        return files

    def read_file(self, path: str, overrides: dict, require_label: bool):
        """predict: a .txt file is raw text, one text per line, split into words; any other
        a tagged file whose tags may be absent. evaluate: a tagged file with tags."""
        if not require_label and Path(path).suffix.lower() in RAW_TEXT_SUFFIXES:
            return self._read_raw_lines(path)
        data = self._read(path, require_tags=require_label)
        return Rows(data)

    def _read_raw_lines(self, path: str) -> Rows:
        from nlpft.data.input_files import check_not_stream

        check_not_stream(path)
        if not Path(path).is_file():
            raise UserInputError(f"{path}: no such file; pass a text file (one text per line) or a tagged file")
        rows, skipped = [], []
        try:
            with open(path, encoding="utf-8") as fh:
                for number, line in enumerate(fh, start=1):
                    text = line.rstrip("\n").rstrip("\r")
                    row = self._sentence_of(text, number)
                    (rows.append(row) if row.tokens else skipped.append(SkippedLine(number)))
        except UnicodeDecodeError as exc:
            raise UserInputError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start}); re-encode it as UTF-8") from None
        if not rows:
            raise UserInputError(f"{path}: no line has text to tag")
        return Rows(rows, skipped)

    @staticmethod
    def _sentence_of(text: str, line: int) -> TextSentence:
        from nlpft.finetune.tag_alignment import split_words

        words = tuple(split_words(text))
        return TextSentence(tuple(w.text for w in words), words, text, line)

    def rows_from_text(self, text: str, text_pair: str | None, model_dir: str) -> list:
        if text_pair is not None:
            raise UserInputError(f"{model_dir} tags words of one text; drop --text-pair")
        row = self._sentence_of(text, 1)
        if not row.tokens:
            raise UserInputError("--text has no words to tag")
        return [row]

    def check_rows(self, rows: list, source: str) -> list:
        from nlpft.data.tagged import check_tags

        check_tags(rows, self.labels, source)
        return rows

    def describe_labels(self) -> str:
        from nlpft.data.tagged import entity_types

        return f", {len(entity_types(self.labels))} entity types ({len(self.labels)} tags, {self.scheme.upper()})"

    @property
    def label_names(self) -> list[str]:
        return list(self.labels or [])

    @property
    def num_outputs(self) -> int:
        return len(self.labels)

    # -- model side -------------------------------------------------------------------------
    def default_lr(self, backbone_lr: float, backbone) -> float:
        return backbone_lr if backbone.word_level else max(backbone_lr, TRANSFORMER_TAGGING_LR)

    def default_lr_note(self, lr: float) -> str | None:
        return f"learning rate {lr:g}: the default for tagging with a transformer (--lr sets it)"

    def word_model(self, features, opts):
        from nlpft.finetune.word_tagger import WordTagger, WordTaggerConfig

        config = features.model_config(self.num_outputs)
        config.update(crf=self.crf, labels=self.label_names, scheme=self.scheme, case_dim=WORD_SHAPE_DIM)
        return WordTagger(WordTaggerConfig(**config))

    def load_word_model(self, model_dir: Path):
        from nlpft.finetune.word_tagger import WordTagger

        return WordTagger.from_pretrained(model_dir)

    def finish_model(self, model):
        """A transformer's token head, with a CRF over its words under --crf."""
        if not self.crf:
            return model
        from nlpft.finetune.token_crf import TokenClassifierCRF

        return TokenClassifierCRF(model, self.label_names, self.scheme)

    def reload_model(self, model, model_dir: Path):
        if not self.crf:
            return model
        from nlpft.finetune.token_crf import TokenClassifierCRF

        return TokenClassifierCRF.around(model, model_dir)

    def export_obstacle(self) -> str | None:
        if self.crf:
            return "its --crf decodes each sentence by Viterbi search, a loop over its words that a graph does not hold"
        return None

    def encode(self, encoder, rows: list, with_targets: bool = True, training: bool = False):
        label_ids = None
        if with_targets:
            index = {tag: i for i, tag in enumerate(self.labels)}
            label_ids = [[index[tag] for tag in row.tags] for row in rows]
        if hasattr(encoder.tokenizer, "hf"):
            return self._encode_subwords(encoder, rows, label_ids, training)
        return self._encode_words(encoder, rows, label_ids)

    def _encode_subwords(self, encoder, rows: list, label_ids, training: bool):
        from nlpft.finetune.tag_alignment import encode_tagged

        windows = encode_tagged(encoder.tokenizer.hf, [row.tokens for row in rows], label_ids,
                                max_length=encoder.max_length, stride=self.stride)
        # a CRF links words, so it trains on first subwords only (the stock pipeline ignores it)
        every_subword = training and not self.crf
        continuation = self._continuation_ids() if every_subword else None
        items = []
        for window in windows:
            item = {"input_ids": window.input_ids}
            if self.crf:
                starts = set(window.first_subwords().values())
                item["word_starts"] = [int(position in starts) for position in range(len(window.input_ids))]
            if label_ids is not None:
                item["labels"] = (self._all_subword_labels(window, label_ids[window.sentence], continuation)
                                  if every_subword else window.labels)
            items.append(item)
        # windows keep every word: nothing is cut
        return TagDataset(items, [len(row.tokens) for row in rows], windows), EncodingStats()

    def _continuation_ids(self) -> list[int]:
        """Per label id, the label of a word's later subwords: I-X for a tag of type X, O for O."""
        from nlpft.data.tagged import OUTSIDE, split_tag

        index = {tag: i for i, tag in enumerate(self.labels)}
        continued = []
        for tag in self.labels:
            _, kind = split_tag(tag)
            continued.append(index.get(f"I-{kind}", index[tag]) if kind else index.get(OUTSIDE, index[tag]))
        return continued

    @staticmethod
    def _all_subword_labels(window, word_labels: list[int], continuation: list[int]) -> list[int]:
        labels, previous = [], None
        for word in window.word_ids:
            if word is None:
                labels.append(IGNORE_INDEX)
            else:
                label = word_labels[word]
                labels.append(label if word != previous else continuation[label])
            previous = word
        return labels

    def _encode_words(self, encoder, rows: list, label_ids):
        from nlpft.finetune.word_tagger import encode_words, word_shapes

        tokenizer = encoder.tokenizer
        stats = EncodingStats()
        items = []
        for k, row in enumerate(rows):
            ids = encode_words(tokenizer, row.tokens)
            stats.tokens += len(ids)
            stats.unknown += sum(1 for i in ids if i == tokenizer.unk_id)
            item = {"input_ids": ids, "case_ids": word_shapes(row.tokens)}
            if label_ids is not None:
                item["labels"] = label_ids[k]
            items.append(item)
        return TagDataset(items, [len(row.tokens) for row in rows]), stats

    def collator(self, pad_id: int):
        return TagCollator(pad_id)

    def collect_logits(self, per_row: list, dataset) -> list:
        """Per sentence, a (words, tags) array: each item's outputs trimmed of padding, then
        (transformers) read at each word's first subword in its best window."""
        import numpy as np

        trimmed = [np.asarray(out, dtype=np.float32)[:length] for out, length in zip(per_row, dataset.lengths())]
        if dataset.windows is None:
            return trimmed
        from nlpft.finetune.tag_alignment import merge_windows

        return merge_windows(dataset.windows, trimmed, dataset.sentence_lengths)

    # -- decisions --------------------------------------------------------------------------
    def scores(self, logits) -> list:
        """Per sentence, (words, tags) probabilities (a CRF's marginals)."""
        import numpy as np

        result = []
        for sentence in logits:
            sentence = np.asarray(sentence, dtype=np.float64)
            e = np.exp(sentence - sentence.max(axis=-1, keepdims=True)) if len(sentence) else sentence
            result.append(e / e.sum(axis=-1, keepdims=True) if len(sentence) else sentence)
        return result

    def decide(self, scores) -> list[list[str]]:
        from nlpft.finetune.tag_alignment import best_tags

        return [best_tags(s, self.labels)[0] for s in scores]

    # -- metrics and predictions --------------------------------------------------------------
    def eval_metrics(self, logits: np.ndarray, label_ids: np.ndarray) -> dict:
        """Validation during training: every window a sentence, its words at the labeled
        positions (first subwords)."""
        from nlpft.finetune.tag_metrics import tagging_metrics

        gold, predicted = [], []
        for window_logits, window_labels in zip(logits, label_ids):
            kept = window_labels != IGNORE_INDEX
            gold.append([self.labels[i] for i in window_labels[kept]])
            predicted.append([self.labels[i] for i in window_logits[kept].argmax(-1)])
        metrics = tagging_metrics(gold, predicted)
        return {"micro_f1": metrics["micro_f1"], "macro_f1": metrics["macro_f1"],
                "token_accuracy": metrics["token_accuracy"]}

    def metrics(self, rows: list, scores) -> dict:
        from nlpft.finetune.tag_metrics import tagging_metrics

        return tagging_metrics([row.tags for row in rows], self.decide(scores))

    def headline(self, metrics: dict) -> str:
        from nlpft.finetune.tag_metrics import headline

        return headline(metrics)

    def plots(self, metrics: dict, folder: Path) -> dict[str, str]:
        from nlpft.finetune.tag_metrics import plot_type_f1

        path = plot_type_f1(metrics, folder / "type_f1.png")
        return {"F1 per entity type": path.name} if path is not None else {}

    def report_section(self, metrics: dict, plots: dict[str, str]) -> str:
        from nlpft.finetune.tag_metrics import report_section

        return report_section(metrics, plots)

    def entities(self, row, sentence_scores) -> list[dict]:
        from nlpft.finetune.tag_alignment import best_tags, entities

        tags, tag_scores = best_tags(sentence_scores, self.labels)
        words = getattr(row, "words", None) or row.tokens
        found = entities(tags, tag_scores, self.scheme, words=words, text=getattr(row, "text", None))
        return [{"type": e.type, "text": e.text, "start": e.start, "end": e.end, "score": round(e.score, 4)}
                for e in found]

    def write_predictions(self, path: Path, rows: list, scores, gold: bool) -> None:
        """CoNLL (token, [gold], predicted), or for a .jsonl/.json name one JSON line of
        entities per row: {"line", "text" (raw text input), "entities": [...]}."""
        if path.suffix.lower() not in ENTITY_SUFFIXES:
            from nlpft.finetune.tag_metrics import write_predictions_conll

            write_predictions_conll(path, [row.tokens for row in rows], self.decide(scores),
                                    [row.tags for row in rows] if gold else None)
            return
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
                for row, sentence_scores in zip(rows, scores):
                    record = {"line": row.line, **({"text": row.text} if hasattr(row, "text") else
                                                   {"tokens": list(row.tokens)}),
                              "entities": self.entities(row, sentence_scores)}
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def describe_prediction(self, scores) -> list[str]:
        return [" ".join(self.decide([scores])[0])]

    def describe_row(self, row, scores) -> list[str]:
        """predict --text: the entities as one JSON array (type, text, start, end, score)."""
        return [json.dumps(self.entities(row, scores), ensure_ascii=False)]

    def prediction(self, row, scores) -> dict:
        """{"label": one tag per word, "scores": each tag's probability, "words": the words
        tagged, "entities": [{type, text, start, end, score}]}."""
        from nlpft.finetune.tag_alignment import best_tags

        tags, tag_scores = best_tags(scores, self.labels)
        return {"label": list(tags), "scores": [float(s) for s in tag_scores], "words": list(row.tokens),
                "entities": self.entities(row, scores)}
