"""Intrinsic evaluation of static word vectors: analogies, word similarity, neighbours.

Scores come from gensim (`evaluate_word_analogies`, `evaluate_word_pairs`), but every
benchmark file is read and checked here first: gensim silently skips malformed lines
and crashes on some files (no section header, no questions, every pair unknown), while
nlpft must name the bad file and line. The results also report how many questions were
skipped as out-of-vocabulary, because a small vocabulary gets a flattering score on the
few questions it can answer.
"""

from __future__ import annotations

import difflib
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from gensim.models import KeyedVectors
from gensim.test.utils import datapath

from nlpft.errors import UserInputError

__all__ = [
    "BUILTIN_ANALOGY_SETS",
    "BUILTIN_SIMILARITY_SETS",
    "analogy",
    "evaluate",
    "format_table",
    "nearest_neighbors",
    "parse_analogy_query",
]

BUILTIN_ANALOGY_SETS = {"analogy": "questions-words.txt"}
"""Name -> file in gensim's installed test data (Mikolov et al. 2013 analogies)."""

BUILTIN_SIMILARITY_SETS = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}
"""Name -> file in gensim's installed test data (tab-separated word pairs with a score)."""

SYNTACTIC_PREFIX = "gram"
"""Analogy sections named gram* are syntactic, the rest semantic (questions-words.txt convention)."""


# ----------------------------------------------------------------------- reading sets


@dataclass
class _AnalogySet:
    name: str
    path: Path
    sections: list[tuple[str, int]] = field(default_factory=list)  # (section name, questions)


@dataclass
class _PairSet:
    name: str
    path: Path
    pairs: list[tuple[str, str]] = field(default_factory=list)


def _resolve_sets(items, builtins: dict[str, str]) -> list[tuple[str, Path]]:
    """None -> every built-in set; otherwise each item is a built-in name or a file path."""
    if items is None:
        items = list(builtins)
    if isinstance(items, (str, Path)):
        items = [items]
    resolved, seen = [], set()
    for item in items:
        if isinstance(item, str) and item in builtins:
            name, path = item, Path(datapath(builtins[item]))
        else:
            path = Path(item)
            if not path.is_file():
                raise UserInputError(
                    f"{path}: benchmark file does not exist; pass an existing file or one of the "
                    f"built-in sets {sorted(builtins)}."
                )
            name = path.stem
        while name in seen:
            name += "'"
        seen.add(name)
        resolved.append((name, path))
    return resolved


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise UserInputError(f"{path}: line {line}: not valid UTF-8; re-encode the file as UTF-8.") from exc


def _read_analogy_set(name: str, path: Path) -> _AnalogySet:
    """Parse 'A B C D' lines grouped under ': section' headers, as gensim will read them."""
    result = _AnalogySet(name, path)
    for line_no, line in enumerate(_read_lines(path), start=1):
        if line.startswith(": "):
            result.sections.append((line[2:].strip(), 0))
            continue
        words = line.split()
        if not words:
            continue
        if len(words) != 4:
            raise UserInputError(
                f"{path}: line {line_no}: expected 4 words 'a b c d' (a is to b as c is to d) or a "
                f"': section' header, found {len(words)} fields; fix or delete that line."
            )
        if not result.sections:
            raise UserInputError(
                f"{path}: line {line_no}: question before any ': section' header; add a header line "
                "such as ': family' above it."
            )
        section, count = result.sections[-1]
        result.sections[-1] = (section, count + 1)
    if not any(count for _, count in result.sections):
        raise UserInputError(f"{path}: holds no analogy questions; expected lines 'a b c d' under ': section' headers.")
    return result


def _read_pair_set(name: str, path: Path) -> _PairSet:
    """Parse 'word1<TAB>word2<TAB>score' lines; '#' lines are comments, as in gensim."""
    result = _PairSet(name, path)
    for line_no, line in enumerate(_read_lines(path), start=1):
        if line.startswith("#") or not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not _is_number(fields[2]):
            raise UserInputError(
                f"{path}: line {line_no}: expected 'word1<TAB>word2<TAB>score' with a numeric score, "
                f"got {line[:60]!r}; fix or delete that line ('#' starts a comment)."
            )
        result.pairs.append((fields[0], fields[1]))
    if not result.pairs:
        raise UserInputError(f"{path}: holds no word pairs; expected lines 'word1<TAB>word2<TAB>score'.")
    return result


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


# ------------------------------------------------------------------------- evaluation


def evaluate(
    kv: KeyedVectors,
    analogy_files=None,
    similarity_files=None,
    restrict_vocab: int = 300000,
    case_insensitive: bool = True,
) -> dict:
    """Score `kv` on analogy and word-similarity benchmarks; returns a JSON-ready dict.

    `analogy_files` / `similarity_files`: None means all built-in sets of that kind, []
    means none; items are built-in names ("analogy", "wordsim353", "simlex999") or paths to
    files in the same formats. Only the first `restrict_vocab` words of `kv` are used
    (frequent words first in nlpft output); `case_insensitive` upper-cases both sides,
    as gensim does. Scores are None where nothing could be scored.
    """
    analogy_sets = [_read_analogy_set(n, p) for n, p in _resolve_sets(analogy_files, BUILTIN_ANALOGY_SETS)]
    pair_sets = [_read_pair_set(n, p) for n, p in _resolve_sets(similarity_files, BUILTIN_SIMILARITY_SETS)]
    vocab = _usable_vocab(kv, restrict_vocab, case_insensitive)
    sets = [_evaluate_analogies(kv, s, restrict_vocab, case_insensitive) for s in analogy_sets]
    sets += [_evaluate_pairs(kv, s, vocab, restrict_vocab, case_insensitive) for s in pair_sets]
    return {
        "vocab_size": len(kv.index_to_key),
        "restrict_vocab": restrict_vocab,
        "case_insensitive": case_insensitive,
        "sets": sets,
    }


def _usable_vocab(kv: KeyedVectors, restrict_vocab: int, case_insensitive: bool) -> set[str]:
    """The words gensim will consider, normalised as gensim normalises them."""
    keys = kv.index_to_key[:restrict_vocab]
    return {key.upper() for key in keys} if case_insensitive else set(keys)


def _evaluate_analogies(kv: KeyedVectors, aset: _AnalogySet, restrict_vocab: int, case_insensitive: bool) -> dict:
    _, gensim_sections = kv.evaluate_word_analogies(
        str(aset.path), restrict_vocab=restrict_vocab, case_insensitive=case_insensitive
    )
    sections = []
    for (name, questions), scored in zip(aset.sections, gensim_sections[:-1]):
        correct, incorrect = len(scored["correct"]), len(scored["incorrect"])
        kind = "syntactic" if name.startswith(SYNTACTIC_PREFIX) else "semantic"
        sections.append({"section": name, "kind": kind, **_accuracy(questions, correct, correct + incorrect)})
    totals = {kind: _sum_sections(s for s in sections if s["kind"] == kind) for kind in ("semantic", "syntactic")}
    overall = _sum_sections(sections)
    return {
        "name": aset.name,
        "path": str(aset.path),
        "task": "analogy",
        "metric": "accuracy",
        "score": overall["accuracy"],
        **_coverage(overall["questions"], overall["covered"]),
        "correct": overall["correct"],
        "semantic": totals["semantic"],
        "syntactic": totals["syntactic"],
        "sections": sections,
    }


def _accuracy(questions: int, correct: int, covered: int) -> dict:
    return {
        "questions": questions,
        "covered": covered,
        "correct": correct,
        "accuracy": correct / covered if covered else None,
    }


def _sum_sections(sections) -> dict:
    sections = list(sections)
    return _accuracy(
        sum(s["questions"] for s in sections),
        sum(s["correct"] for s in sections),
        sum(s["covered"] for s in sections),
    )


def _coverage(total: int, covered: int) -> dict:
    """Counts of scored vs skipped (out-of-vocabulary) items; the ratio is 0..1."""
    return {"total": total, "covered": covered, "oov": total - covered, "oov_ratio": (total - covered) / total}


def _evaluate_pairs(kv, pset: _PairSet, vocab: set[str], restrict_vocab: int, case_insensitive: bool) -> dict:
    norm = str.upper if case_insensitive else str
    covered = sum(norm(a) in vocab and norm(b) in vocab for a, b in pset.pairs)
    pearson = spearman = (None, None)
    if covered >= 3:  # fewer points make a correlation meaningless (and scipy warn or fail)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant inputs: scipy warns and returns NaN -> None
            pearson, spearman, _ = kv.evaluate_word_pairs(
                str(pset.path), restrict_vocab=restrict_vocab, case_insensitive=case_insensitive
            )
    rho, rho_p = (_plain(v) for v in spearman)
    r, r_p = (_plain(v) for v in pearson)
    return {
        "name": pset.name,
        "path": str(pset.path),
        "task": "similarity",
        "metric": "spearman",
        "score": rho,
        **_coverage(len(pset.pairs), covered),
        "spearman": {"rho": rho, "p_value": rho_p},
        "pearson": {"r": r, "p_value": r_p},
    }


def _plain(value) -> float | None:
    """numpy scalar -> float; NaN/Inf -> None so the result stays strict JSON."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# ------------------------------------------------------------------------------ table


def format_table(results: dict) -> str:
    """Render `evaluate()` output as an aligned plain-text table for the terminal."""
    rows = [("set", "metric", "score", "coverage")]
    for s in results["sets"]:
        rows.append((s["name"], s["metric"], _fmt(s["score"]), _fmt_coverage(s["covered"], s["total"])))
        if s["task"] == "analogy":
            for kind in ("semantic", "syntactic"):
                part = s[kind]
                if part["questions"]:
                    rows.append((f"  {kind}", "accuracy", _fmt(part["accuracy"]),
                                 _fmt_coverage(part["covered"], part["questions"])))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(score: float | None) -> str:
    return "n/a" if score is None else f"{score:.4f}"


def _fmt_coverage(covered: int, total: int) -> str:
    return f"{covered}/{total} ({100.0 * covered / total:.1f}%)" if total else "0/0"


# ---------------------------------------------------------------------- interactive


def nearest_neighbors(kv: KeyedVectors, words, topn: int = 10) -> dict[str, list[tuple[str, float]]]:
    """Cosine nearest neighbours of each word; unknown words -> UserInputError with suggestions."""
    words = [words] if isinstance(words, str) else list(words)
    _require_in_vocab(kv, words)
    return {word: [(n, float(c)) for n, c in kv.most_similar(word, topn=topn)] for word in words}


def analogy(kv: KeyedVectors, a: str, b: str, c: str, topn: int = 10) -> list[tuple[str, float]]:
    """Answer 'a is to b as c is to ?' with the words nearest to b - a + c (3CosAdd)."""
    _require_in_vocab(kv, [a, b, c])
    return [(w, float(s)) for w, s in kv.most_similar(positive=[b, c], negative=[a], topn=topn)]


def parse_analogy_query(query: str) -> tuple[str, str, str]:
    """Split 'a:b::c' into (a, b, c), for command-line analogy queries."""
    left, sep, c = query.partition("::")
    a, sep2, b = left.partition(":")
    if not (sep and sep2 and a.strip() and b.strip() and c.strip()) or ":" in b + c:
        raise UserInputError(f"analogy query {query!r}: expected the form 'a:b::c', e.g. 'man:king::woman'.")
    return a.strip(), b.strip(), c.strip()


def _require_in_vocab(kv: KeyedVectors, words: list[str]):
    missing = [w for w in dict.fromkeys(words) if w not in kv.key_to_index]
    if not missing:
        return
    hints = []
    for word in missing:
        close = _close_words(word, kv.index_to_key)
        hints.append(f"{word!r} (did you mean {', '.join(map(repr, close))}?)" if close else repr(word))
    raise UserInputError(
        f"not in the vocabulary of these vectors: {'; '.join(hints)}. Words are matched exactly, "
        "case included; rare words may have been cut by the minimum count."
    )


def _close_words(word: str, vocab: list[str]) -> list[str]:
    """Spelling suggestions; only similar-length words are compared, to stay fast on big vocabularies."""
    slack = max(2, len(word) // 3)
    candidates = [w for w in vocab if abs(len(w) - len(word)) <= slack]
    return difflib.get_close_matches(word, candidates, n=3, cutoff=0.6)
