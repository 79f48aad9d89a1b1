"""Label names: counting them, spellings that differ only in case (`--normalize-labels`),
the label map (names <-> ids) and the check that held-out files use only known labels."""

from __future__ import annotations

import json
import os
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from nlpft.data.labeled.examples import LabeledExample
from nlpft.data.labeled.formats import format_of
from nlpft.data.labeled.problems import plural
from nlpft.errors import UserInputError


def count_labels(examples: Iterable[LabeledExample]) -> Counter:
    counts: Counter = Counter()
    for ex in examples:
        if isinstance(ex.label, tuple):
            counts.update(ex.label)
        elif ex.label is not None:
            counts[ex.label] += 1
    return counts


def label_key(label: str) -> str:
    """What --normalize-labels compares: the label in Unicode NFKC form (full-width letters
    become plain ones), without surrounding whitespace, casefolded ("Pos", " POS" -> "pos")."""
    return unicodedata.normalize("NFKC", label).strip().casefold()


def label_variants(examples: Iterable[LabeledExample]) -> dict[str, Counter]:
    """{key: Counter(spelling -> rows)} for each `label_key` written more than one way."""
    groups: dict[str, Counter] = {}
    for label, n in count_labels(examples).items():
        groups.setdefault(label_key(label), Counter())[label] = n
    return {key: spellings for key, spellings in groups.items() if len(spellings) > 1}


def preferred_spellings(examples: Sequence[LabeledExample]) -> dict[str, str]:
    """{key: the spelling with the most rows}; on a tie, the one that comes first in the file."""
    counts = count_labels(examples)  # in first-seen order: a later spelling must have more rows to win
    best: dict[str, str] = {}
    for label in counts:
        key = label_key(label)
        if key not in best or counts[label] > counts[best[key]]:
            best[key] = label
    return best


def respell_labels(examples: Iterable[LabeledExample], spellings: dict[str, str]) -> list[LabeledExample]:
    """`examples` with every label whose key is in `spellings` written that way; other
    labels (and regression values) unchanged. A multi-label row keeps each label once."""
    def respell(label: str) -> str:
        return spellings.get(label_key(label), label)

    result = []
    for ex in examples:
        if isinstance(ex.label, str):
            ex = replace(ex, label=respell(ex.label))
        elif isinstance(ex.label, tuple):
            ex = replace(ex, label=tuple(dict.fromkeys(respell(label) for label in ex.label)))
        result.append(ex)
    return result


@dataclass(frozen=True)
class LabelMap:
    """Label names <-> ids. Ids follow the sorted (string) order of the training labels,
    so the same training file always gives the same ids."""

    labels: tuple[str, ...]

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label: object) -> bool:
        return label in self.labels

    def encode(self, label: str) -> int:
        return self.label2id[label]

    def encode_multi(self, labels: Iterable[str]) -> np.ndarray:
        """A multi-hot float32 vector, the target of a multi-label classifier."""
        vector = np.zeros(len(self.labels), dtype=np.float32)
        lookup = self.label2id
        for label in labels:
            vector[lookup[label]] = 1.0
        return vector

    def decode(self, label_id: int) -> str:
        return self.labels[label_id]

    def to_dict(self) -> dict:
        """JSON-ready; the shape of a Hugging Face config's label2id/id2label."""
        return {"label2id": self.label2id, "id2label": {str(i): label for i, label in enumerate(self.labels)}}

    @classmethod
    def from_dict(cls, data: dict, source: str = "label map") -> LabelMap:
        try:
            label2id = data["label2id"] if "label2id" in data else {v: int(k) for k, v in data["id2label"].items()}
            ordered = sorted(label2id.items(), key=lambda item: int(item[1]))
            if [int(i) for _, i in ordered] != list(range(len(ordered))):
                raise ValueError("ids are not 0..n-1")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserInputError(f"{source}: not a valid label map ({exc}); it needs label2id with ids 0..n-1") from None
        return cls(tuple(str(label) for label, _ in ordered))

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> LabelMap:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserInputError(f"{path}: no such label map; it is written next to the trained model") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserInputError(f"{path}: cannot read the label map ({exc})") from None
        if not isinstance(data, dict):
            raise UserInputError(f"{path}: not a valid label map (a JSON {type(data).__name__}, not an object)")
        return cls.from_dict(data, source=str(path))


def build_label_map(examples: Iterable[LabeledExample]) -> LabelMap:
    """The label map of a training split: every label name seen, sorted as strings."""
    counts = count_labels(examples)
    if any(isinstance(label, float) for label in counts):
        raise ValueError("regression labels are numbers; a label map is for classification")
    return LabelMap(tuple(sorted(counts)))


def check_labels(examples: Iterable[LabeledExample], label_map: LabelMap, file: str | os.PathLike) -> None:
    """Raise if `examples` (valid/test/predict input) hold labels the training split lacked,
    naming each such label with its row count and first row."""
    unseen: Counter = Counter()
    first_row: dict[str, int] = {}
    for ex in examples:
        labels = ex.label if isinstance(ex.label, tuple) else (ex.label,)
        for label in labels:
            if isinstance(label, str) and label not in label_map:
                unseen[label] += 1
                first_row.setdefault(label, ex.row)
    if not unseen:
        return
    unit = "line" if format_of(Path(file)) == "jsonl" else "row"
    ranked = sorted(unseen.items(), key=lambda item: (-item[1], item[0]))
    listed = ", ".join(f"{label!r} ({plural(n, unit)}, first at {unit} {first_row[label]})" for label, n in ranked[:20])
    if len(ranked) > 20:
        listed += f" and {len(ranked) - 20} more labels"
    known = ", ".join(repr(label) for label in label_map.labels[:10])
    if len(label_map) > 10:
        known += f" and {len(label_map) - 10} more"
    keys = {label_key(label): label for label in label_map.labels}
    case_only = [f"{label!r} is {keys[label_key(label)]!r}" for label, _ in ranked if label_key(label) in keys]
    case_hint = f" ({', '.join(case_only[:5])} but for case: pass --normalize-labels)" if case_only else ""
    raise UserInputError(
        f"{file}: labels not seen in training: {listed}; the training labels are {known}{case_hint}. "
        "A classifier cannot predict labels it never saw: fix these labels, or add examples "
        "of them to the training file"
    )
