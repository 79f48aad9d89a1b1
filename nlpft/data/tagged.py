"""Tagged files (one tag per token: NER, chunking) read and checked before any model loads.

Three layouts, chosen by the file extension (optionally .gz, .bz2 or .xz compressed):

* CoNLL (any other extension: .conll, .txt, .iob, .bio, .tsv, ...): one token a line, its
  tag in another column, a blank line between sentences. A line with a tab is split on tabs
  (so a token may hold spaces), any other on runs of spaces. The token is column 1, the tag
  the last column unless `tag_col` names one (1-based, as a user counts). `-DOCSTART-` lines
  are skipped. A file of tokens alone (one column) is predict input (`require_tags=False`).
* JSON Lines (.jsonl, .ndjson, .json-lines): one object a line with a `tokens` list and a
  `tags` list of strings (other key names: `tokens_key`, `tags_key`).
* CSV (.csv): a header, then one sentence a row: space-joined tokens and space-joined tags.

Tags follow a scheme: IOB2 (the default: B-X begins an entity, I-X continues it), IOB1
(I-X everywhere, B-X only between two adjacent entities of one type) or BIOES (B/I/E for
begin, inside, end; S for a single-token entity). The checks run over the whole file and
every problem is reported at once, in one `UserInputError` (exit code 2) whose lines name
the file's line numbers (for CSV: rows, row 1 being the header):

* malformed lines (too few columns, a column count that differs from the first line's,
  invalid JSON, a missing or non-list field, an empty token), not UTF-8;
* a token/tag count mismatch, an empty sentence;
* a tag outside the scheme ("PER" without a prefix, "S-X" in IOB2);
* an invalid sequence (IOB2: an I-X after O or after another type), counted and listed;
  `repair_tags=True` rewrites such sentences in the scheme's canonical form instead (an
  I-X that starts an entity becomes B-X) and `TaggedData.repaired` counts the tags changed.

`check_tags` stops a valid/test/predict file whose tags the training file never had.
Entity spans are read leniently, as conlleval does (an I-X that cannot continue an entity
starts one), so `entity_spans` and `convert_scheme` accept any tag sequence; a sequence is
*valid* in a scheme when it equals the canonical encoding of its own spans.

Reading imports neither torch nor transformers.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from nlpft.data.labeled.formats import open_bytes, read_table, sniff
from nlpft.data.labeled.problems import NOT_UTF8, SURROGATE, plural
from nlpft.data.labeled.splitting import check_fractions, holdout_size
from nlpft.errors import UserInputError

SCHEMES = ("iob2", "iob1", "bioes")
OUTSIDE = "O"
DOCSTART = "-DOCSTART-"
_PREFIXES = {"iob2": ("B", "I"), "iob1": ("B", "I"), "bioes": ("B", "I", "E", "S")}
_SCHEME_NAMES = {"iob2": "IOB2", "iob1": "IOB1", "bioes": "BIOES"}

# -- kinds of problem, in the order they are reported --------------------------------------
MALFORMED = "malformed line"
COUNT_MISMATCH = "token/tag count mismatch"
EMPTY_SENTENCE = "empty sentence"
BAD_TAG = "tag outside the scheme"
INVALID_SEQUENCE = "invalid tag sequence"
PROBLEM_ORDER = (NOT_UTF8, MALFORMED, COUNT_MISMATCH, EMPTY_SENTENCE, BAD_TAG, INVALID_SEQUENCE)
_ROWS_SHOWN = 5

_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json-lines")
_COMPRESSED = (".gz", ".bz2", ".xz")


# -- data classes ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TaggedSentence:
    """One sentence: its tokens, their tags (None in predict input without tags), the line
    (CSV: row) it starts on and, in CoNLL files, the line of each token."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...] | None
    line: int
    token_lines: tuple[int, ...] | None = None

    def line_of(self, index: int) -> int:
        """The line of the index-th token (its sentence's line when a sentence is one line)."""
        return self.token_lines[index] if self.token_lines else self.line


@dataclass(frozen=True)
class Span:
    """An entity over words [start, end) (end exclusive) of one sentence."""

    type: str
    start: int
    end: int


@dataclass
class TaggedData(Sequence):
    """The sentences of one file, with what the reader found in it."""

    sentences: list[TaggedSentence]
    file: Path
    scheme: str = "iob2"
    has_tags: bool = True
    repaired: int = 0  # tags rewritten by repair_tags=True
    repaired_sentences: int = 0
    columns: int | None = None  # CoNLL: columns per line

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, index):
        return self.sentences[index]

    def __iter__(self) -> Iterator[TaggedSentence]:
        return iter(self.sentences)

    @property
    def num_tokens(self) -> int:
        return sum(len(s.tokens) for s in self.sentences)

    @property
    def tag_counts(self) -> Counter:
        return Counter(tag for s in self.sentences for tag in s.tags or ())

    @property
    def tag_set(self) -> tuple[str, ...]:
        """Every tag in the file, sorted."""
        return tuple(sorted(self.tag_counts))

    @property
    def entity_types(self) -> tuple[str, ...]:
        return entity_types(self.tag_set)

    def entity_counts(self) -> Counter:
        """Entities per type."""
        return Counter(span.type for s in self.sentences if s.tags for span in entity_spans(s.tags, self.scheme))

    def summary(self) -> str:
        """One line for the console, e.g. "train.conll: 1,900 sentences, 37,028 tokens, ..."."""
        text = f"{self.file}: {len(self):,} sentences, {self.num_tokens:,} tokens"
        if self.has_tags:
            entities = self.entity_counts()
            text += (f", {sum(entities.values()):,} entities of {plural(len(self.entity_types), 'type')} "
                     f"({_SCHEME_NAMES[self.scheme]})")
        if self.repaired:
            text += (f"; repaired {plural(self.repaired, 'tag')} in {plural(self.repaired_sentences, 'sentence')} "
                     "(an I- tag that began an entity)")
        return text


@dataclass
class _Problem:
    line: int
    kind: str
    detail: str = ""


# -- tag schemes -----------------------------------------------------------------------------
def check_scheme(scheme: str) -> str:
    key = scheme.lower() if isinstance(scheme, str) else scheme
    if key not in SCHEMES:
        raise UserInputError(f"unknown tag scheme {scheme!r}; use one of: {', '.join(SCHEMES)}")
    return key


def split_tag(tag: str) -> tuple[str, str | None]:
    """("B", "PER") for "B-PER", ("O", None) for "O"; the type may itself hold dashes."""
    if tag == OUTSIDE:
        return OUTSIDE, None
    prefix, _, entity_type = tag.partition("-")
    return prefix, entity_type


def tag_in_scheme(tag: str, scheme: str) -> bool:
    if tag == OUTSIDE:
        return True
    prefix, entity_type = split_tag(tag)
    return prefix in _PREFIXES[scheme] and bool(entity_type) and entity_type == entity_type.strip()


def entity_types(tags: Iterable[str]) -> tuple[str, ...]:
    """The sorted entity types named by `tags` ("B-PER", "I-LOC" -> ("LOC", "PER"))."""
    return tuple(sorted({split_tag(tag)[1] for tag in tags if tag != OUTSIDE} - {None, ""}))


def scheme_tags(types: Iterable[str], scheme: str = "iob2") -> tuple[str, ...]:
    """Every tag of `scheme` for `types`: "O" first, then each type's tags in prefix order.
    A model's label list: it can then predict I-X even if training only had one-word X."""
    scheme = check_scheme(scheme)
    return (OUTSIDE,) + tuple(f"{prefix}-{t}" for t in sorted(set(types)) for prefix in _PREFIXES[scheme])


def entity_spans(tags: Sequence[str], scheme: str = "iob2") -> list[Span]:
    """The entities of one tagged sentence, read leniently (as conlleval does): an I-X or
    E-X that cannot continue the open entity starts a new one; B-X and S-X always start one;
    E-X and S-X close it. Tags outside the scheme's syntax are read by their prefix."""
    check_scheme(scheme)
    spans: list[Span] = []
    open_type: str | None = None
    start = 0
    for i, tag in enumerate(tags):
        prefix, entity_type = split_tag(tag)
        continues = open_type is not None and entity_type == open_type and prefix in ("I", "E")
        if open_type is not None and not continues:
            spans.append(Span(open_type, start, i))
            open_type = None
        if prefix != OUTSIDE and entity_type and not continues:
            open_type, start = entity_type, i
        if open_type is not None and prefix in ("E", "S"):
            spans.append(Span(open_type, start, i + 1))
            open_type = None
    if open_type is not None:
        spans.append(Span(open_type, start, len(tags)))
    return spans


def spans_to_tags(spans: Iterable[Span], length: int, scheme: str = "iob2") -> list[str]:
    """The canonical encoding of non-overlapping `spans` in a sentence of `length` words."""
    scheme = check_scheme(scheme)
    tags = [OUTSIDE] * length
    previous: Span | None = None
    for span in sorted(spans, key=lambda s: s.start):
        size = span.end - span.start
        if scheme == "bioes" and size == 1:
            tags[span.start] = f"S-{span.type}"
        elif scheme == "iob1":
            adjacent = previous is not None and previous.end == span.start and previous.type == span.type
            tags[span.start] = f"{'B' if adjacent else 'I'}-{span.type}"
        else:
            tags[span.start] = f"B-{span.type}"
        for i in range(span.start + 1, span.end):
            tags[i] = f"I-{span.type}"
        if scheme == "bioes" and size > 1:
            tags[span.end - 1] = f"E-{span.type}"
        previous = span
    return tags


def convert_scheme(tags: Sequence[str], source: str, target: str) -> list[str]:
    """`tags` re-encoded from one scheme into another (invalid sequences are repaired on the way)."""
    return spans_to_tags(entity_spans(tags, check_scheme(source)), len(tags), check_scheme(target))


def first_invalid_tag(tags: Sequence[str], scheme: str = "iob2") -> int | None:
    """The index of the first tag where `tags` leaves the canonical form of `scheme`
    (IOB2: an I-X after O or after another type), or None for a valid sequence."""
    canonical = convert_scheme(tags, scheme, scheme)
    return next((i for i, (a, b) in enumerate(zip(tags, canonical)) if a != b), None)


# -- reading ---------------------------------------------------------------------------------
def tagged_format(path: str | os.PathLike) -> str:
    """"jsonl", "csv" or "conll", from the extension (compression suffixes ignored)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in _JSONL_SUFFIXES:
        return "jsonl"
    return "csv" if last == ".csv" else "conll"


def read_tagged(
    path: str | os.PathLike,
    *,
    tag_col: int | None = None,
    scheme: str = "iob2",
    repair_tags: bool = False,
    tokens_key: str = "tokens",
    tags_key: str = "tags",
    require_tags: bool = True,
    training: bool = False,
) -> TaggedData:
    """Read and check a tagged CoNLL / JSONL / CSV file (see the module docstring).

    `tag_col` (CoNLL) is the 1-based column of the tags; default: the last column.
    `require_tags=False` is predict input: tags may be absent (a one-column CoNLL file,
    JSONL objects without `tags`, a CSV file without the tags column).
    `training=True` also requires at least one entity: a tagger cannot learn from "O" alone.
    Raises `UserInputError` listing every problem, with line numbers.
    """
    path = Path(path)
    scheme = check_scheme(scheme)
    if tag_col is not None and (isinstance(tag_col, bool) or not isinstance(tag_col, int) or tag_col < 2):
        raise UserInputError(f"--tag-col must be a column number from 2 (column 1 holds the tokens), not {tag_col!r}")
    _check_file(path)
    fmt = tagged_format(path)
    if fmt == "conll":
        sentences, problems, columns = _read_conll(path, tag_col)
    else:
        sentences, problems = _read_table_sentences(path, fmt, tokens_key, tags_key, require_tags)
        columns = None
    problems += _tag_problems(sentences, scheme, repair_tags)
    repaired_sentences, repaired = 0, 0
    if repair_tags:
        sentences, repaired_sentences, repaired = _repair(sentences, scheme)
    file_problems = _file_problems(sentences, problems, fmt, tags_key, require_tags, training)
    if file_problems or problems:
        raise UserInputError(_problem_message(path, fmt, file_problems, problems, scheme))
    has_tags = any(s.tags is not None for s in sentences)
    return TaggedData(sentences, path, scheme, has_tags, repaired, repaired_sentences, columns)


def _file_problems(
    sentences: list[TaggedSentence], problems: list[_Problem], fmt: str, tags_key: str, require_tags: bool,
    training: bool,
) -> list[str]:
    """Problems of the whole file: no sentences, no tags, tags on only some sentences, no entity."""
    if not sentences:
        return [] if problems else ["no sentences: the file holds no tokens"]
    untagged = [s for s in sentences if s.tags is None]
    unit = "row" if fmt == "csv" else "line"
    if untagged and len(untagged) < len(sentences):
        first = f"{unit} {untagged[0].line}"
        return [f"some sentences have tags and others do not (the first without: {first}); tag every sentence or none"]
    if untagged and require_tags:
        return [_no_tags_message(fmt, tags_key)]
    if training and not untagged and not problems and all(tag == OUTSIDE for s in sentences for tag in s.tags):
        return ["every tag is O: a tagger needs examples of entities to learn from"]
    return []


def _check_file(path: Path) -> None:
    from nlpft.data.sources import dataset_source

    if dataset_source(path) is not None:
        raise UserInputError(f"{path}: --task tag reads CoNLL, JSONL or CSV files; dataset sources (hf:, Parquet, "
                             "save_to_disk) are for the text tasks (single, multi, regression)")
    if not path.exists():
        raise UserInputError(f"{path}: no such file; pass a tagged CoNLL, JSONL or CSV file")
    if path.is_dir():
        raise UserInputError(f"{path}: is a directory; pass one tagged file")
    with open_bytes(path) as fh:
        if not fh.read(1 << 16).strip():
            raise UserInputError(f"{path}: the file is empty; it needs tokens and tags")
    sniff(path)  # UTF-16 and binary files


def _no_tags_message(fmt: str, tags_key: str) -> str:
    if fmt == "conll":
        return "no tag column: every line holds a token alone; put the tag after it (token<TAB>tag)"
    return f"no {tags_key!r} field anywhere; pass the tags as {tags_key!r} (or name the field)"


def _read_conll(path: Path, tag_col: int | None) -> tuple[list[TaggedSentence], list[_Problem], int | None]:
    lines, problems = _conll_lines(path)
    counts = Counter(len(fields) for _, fields in lines if fields)
    columns = counts.most_common(1)[0][0] if counts else None  # ties: the count seen first
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str | None] = []
    token_lines: list[int] = []
    for line_no, fields in lines + [(0, None)]:
        if fields is None:  # a sentence break
            if tokens:
                sentence_tags = None if any(t is None for t in tags) else tuple(tags)
                sentences.append(TaggedSentence(tuple(tokens), sentence_tags, token_lines[0], tuple(token_lines)))
            tokens, tags, token_lines = [], [], []
            continue
        problem = _conll_line_problem(line_no, fields, columns, tag_col)
        if problem:
            problems.append(problem)
            continue
        token_lines.append(line_no)
        tokens.append(fields[0])
        tags.append(fields[(tag_col or len(fields)) - 1] if len(fields) > 1 else None)
    return sentences, problems, columns


def _conll_lines(path: Path) -> tuple[list[tuple[int, list[str] | None]], list[_Problem]]:
    """(line number, columns) of every token line, (line number, None) for each sentence
    break (a blank or -DOCSTART- line), and the lines that are not UTF-8."""
    lines: list[tuple[int, list[str] | None]] = []
    problems: list[_Problem] = []
    with open_bytes(path) as fh:
        for line_no, raw in enumerate(fh, 1):
            if line_no == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            try:
                line = raw.decode("utf-8").rstrip()
            except UnicodeDecodeError as exc:
                problems.append(_Problem(line_no, NOT_UTF8, f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1}"))
                continue
            fields = [f.strip() for f in line.split("\t")] if "\t" in line else line.split()
            is_break = not fields or not fields[0] and len(fields) == 1 or fields[0] == DOCSTART
            lines.append((line_no, None if is_break else fields))
    return lines, problems


def _conll_line_problem(line_no: int, fields: list[str], columns: int, tag_col: int | None) -> _Problem | None:
    if len(fields) != columns:
        return _Problem(line_no, MALFORMED, f"{plural(len(fields), 'column')}, most lines have {columns}")
    if tag_col is not None and len(fields) < tag_col:
        return _Problem(line_no, MALFORMED, f"{plural(len(fields), 'column')}, no column {tag_col} for --tag-col")
    if any(not f for f in fields):
        return _Problem(line_no, MALFORMED, "an empty column (two tabs in a row?)")
    return None


def _read_table_sentences(
    path: Path, fmt: str, tokens_key: str, tags_key: str, require_tags: bool
) -> tuple[list[TaggedSentence], list[_Problem]]:
    """Sentences of a JSONL file (lists) or a CSV file (space-joined strings)."""
    columns, rows = read_table(path, fmt)
    _check_fields(path, fmt, columns, [tokens_key] + ([tags_key] if require_tags else []))
    sentences: list[TaggedSentence] = []
    problems: list[_Problem] = []
    for raw in rows:
        if raw.problem:
            kind, detail = raw.problem
            problems.append(_Problem(raw.row, NOT_UTF8 if kind == NOT_UTF8 else MALFORMED, f"{kind}: {detail}"))
            continue
        if raw.values is None:
            continue
        tokens = _field_words(raw.row, raw.values, tokens_key, fmt, problems)
        tags = _field_words(raw.row, raw.values, tags_key, fmt, problems, optional=not require_tags)
        if tokens is None or (tags_key in raw.values and tags is None):
            continue
        if not tokens:
            problems.append(_Problem(raw.row, EMPTY_SENTENCE))
            continue
        sentences.append(TaggedSentence(tokens, tags, raw.row))
    return sentences, problems


def _check_fields(path: Path, fmt: str, columns: list[str], wanted: list[str]) -> None:
    """Raise once for a column (CSV) or key (JSONL) that no row has, rather than once per row."""
    missing = [name for name in wanted if name not in columns]
    if not missing or not columns:  # no columns at all: every line is broken, and listed as such
        return
    shown = ", ".join(repr(c) for c in columns[:20])
    names = " or ".join(repr(name) for name in missing)
    if fmt == "csv":
        raise UserInputError(f"{path}, row 1: no column {names}; the header has {shown}; the file needs a "
                             "tokens column and a tags column (space-joined), or name yours")
    raise UserInputError(f"{path}: no object has the key {names}; the keys are {shown}; each line needs "
                         "a tokens list and a tags list, or name your keys")


def _field_words(
    row: int, values: dict, key: str, fmt: str, problems: list[_Problem], optional: bool = False
) -> tuple[str, ...] | None:
    """A JSONL list of strings or a CSV space-joined cell as a tuple; None (and a problem
    appended) when it is malformed, or None without a problem when optional and absent."""
    if key not in values:
        if not optional:
            problems.append(_Problem(row, MALFORMED, f"no {key!r} key"))
        return None
    value = values[key]
    if fmt == "csv":
        if SURROGATE.search(value):
            problems.append(_Problem(row, NOT_UTF8, f"in column {key!r}"))
            return None
        return tuple(value.split())
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(_Problem(row, MALFORMED, f"{key!r} must be a list of strings"))
        return None
    if any(not v.strip() for v in value):
        position = next(i for i, v in enumerate(value) if not v.strip()) + 1
        problems.append(_Problem(row, MALFORMED, f"{key!r} item {position} is empty"))
        return None
    return tuple(v.strip() for v in value)


# -- checks ----------------------------------------------------------------------------------
def _tag_problems(sentences: list[TaggedSentence], scheme: str, repair_tags: bool) -> list[_Problem]:
    problems: list[_Problem] = []
    for s in sentences:
        if s.tags is None:
            continue
        if len(s.tags) != len(s.tokens):
            problems.append(_Problem(s.line, COUNT_MISMATCH, f"{len(s.tokens)} tokens, {len(s.tags)} tags"))
            continue
        bad = [(i, tag) for i, tag in enumerate(s.tags) if not tag_in_scheme(tag, scheme)]
        if bad:
            problems += [_Problem(s.line_of(i), BAD_TAG, repr(tag)) for i, tag in bad]
            continue
        invalid = first_invalid_tag(s.tags, scheme)
        if invalid is not None and not repair_tags:
            before = s.tags[invalid - 1] if invalid else "the sentence start"
            problems.append(_Problem(s.line_of(invalid), INVALID_SEQUENCE, f"{s.tags[invalid]} after {before}"))
    return problems


def _repair(sentences: list[TaggedSentence], scheme: str) -> tuple[list[TaggedSentence], int, int]:
    repaired_sentences, repaired_tags, result = 0, 0, []
    for s in sentences:
        if s.tags is not None and len(s.tags) == len(s.tokens):
            canonical = tuple(convert_scheme(s.tags, scheme, scheme))
            changed = sum(a != b for a, b in zip(s.tags, canonical))
            if changed:
                repaired_sentences += 1
                repaired_tags += changed
                s = replace(s, tags=canonical)
        result.append(s)
    return result, repaired_sentences, repaired_tags


def check_tags(
    sentences: Iterable[TaggedSentence], known_tags: Iterable[str], file: str | os.PathLike
) -> None:
    """Raise if `sentences` (valid/test input) hold tags outside `known_tags` (the model's
    labels, e.g. `scheme_tags(train.entity_types, scheme)`), naming each with its count
    and first line."""
    known = set(known_tags)
    unseen: Counter = Counter()
    first_line: dict[str, int] = {}
    for s in sentences:
        for i, tag in enumerate(s.tags or ()):
            if tag not in known:
                unseen[tag] += 1
                first_line.setdefault(tag, s.line_of(i))
    if not unseen:
        return
    ranked = sorted(unseen.items(), key=lambda item: (-item[1], item[0]))
    listed = ", ".join(f"{tag!r} ({plural(n, 'token')}, first at line {first_line[tag]})" for tag, n in ranked[:20])
    if len(ranked) > 20:
        listed += f" and {len(ranked) - 20} more tags"
    types = entity_types(known)
    raise UserInputError(
        f"{file}: tags not seen in training: {listed}; the training entity types are "
        f"{', '.join(types) or '(none)'}. A tagger cannot predict a type it never saw: fix these tags "
        "or add examples of them to the training file"
    )


# -- reporting -------------------------------------------------------------------------------
_HINTS = {
    NOT_UTF8: "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 IN > OUT`)",
    MALFORMED: "each token line needs the token and its tag (token<TAB>tag)",
    COUNT_MISMATCH: "give every token exactly one tag",
    EMPTY_SENTENCE: "remove the sentence or give it tokens",
    INVALID_SEQUENCE: "fix the tags, or pass --repair-tags to rewrite each sequence in its canonical form",
}


def _hint(kind: str, fmt: str, scheme: str, problems: list[_Problem]) -> str:
    if kind == MALFORMED and fmt != "conll":
        return ("each line must be a JSON object with lists 'tokens' and 'tags'" if fmt == "jsonl"
                else "each row needs the tokens and the tags, space-joined")
    if kind == BAD_TAG:
        prefixes = "/".join(_PREFIXES[scheme])
        hint = f"{_SCHEME_NAMES[scheme]} tags are O or {prefixes} + '-' + a type (B-PER)"
        seen_prefixes = {split_tag(p.detail.strip("'\""))[0] for p in problems}
        if scheme != "bioes" and seen_prefixes & {"E", "S"}:
            hint += "; the file looks like BIOES: pass --tag-scheme bioes"
        return hint
    if kind == INVALID_SEQUENCE and scheme == "iob1":
        return _HINTS[kind] + "; if B- begins every entity, the file is IOB2: pass --tag-scheme iob2"
    return _HINTS[kind]


def _problem_message(path: Path, fmt: str, file_problems: list[str], problems: list[_Problem], scheme: str) -> str:
    unit = "row" if fmt == "csv" else "line"
    numbering = "row 1 is the header" if fmt == "csv" else "line numbers"
    by_kind: dict[str, list[_Problem]] = {}
    for p in sorted(problems, key=lambda p: p.line):
        by_kind.setdefault(p.kind, []).append(p)
    total = len(file_problems) + len(by_kind)
    lines = [f"{path}: {plural(total, 'problem')} found ({numbering}):"]
    lines += [f"  - {text}" for text in file_problems]
    for kind in PROBLEM_ORDER:
        if kind in by_kind:
            found = by_kind[kind]
            shown = ", ".join(f"{p.line} ({p.detail})" if p.detail else str(p.line) for p in found[:_ROWS_SHOWN])
            more = f" and {len(found) - _ROWS_SHOWN} more" if len(found) > _ROWS_SHOWN else ""
            where = f"{unit if len(found) == 1 else unit + 's'} {shown}{more}"
            lines.append(f"  - {kind} ({plural(len(found), unit)}): {where}; {_hint(kind, fmt, scheme, found)}")
    return "\n".join(lines)


# -- splitting -------------------------------------------------------------------------------
def split_sentences(
    sentences: Sequence[TaggedSentence],
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 13,
) -> tuple[list[TaggedSentence], list[TaggedSentence], list[TaggedSentence]]:
    """Seeded random train/valid/test split (no stratification). Holdout sizes are
    round(n * fraction), at least 1 when the fraction is above 0; each part keeps file
    order; the same seed gives the same split. Train keeps at least one sentence."""
    check_fractions(valid_fraction, test_fraction)
    sentences = list(sentences)
    n = len(sentences)
    n_test = min(holdout_size(n, test_fraction), max(n - 1, 0))
    n_valid = min(holdout_size(n, valid_fraction), max(n - 1 - n_test, 0))
    order = np.random.default_rng(seed).permutation(n)
    test, valid, train = order[:n_test], order[n_test : n_test + n_valid], order[n_test + n_valid :]
    return tuple([sentences[i] for i in sorted(part)] for part in (train, valid, test))  # type: ignore[return-value]
