"""Tests for nlpft.embeddings.evaluation: structure, coverage counts and exact scores."""

import json

import numpy as np
import pytest
from gensim.models import KeyedVectors
from gensim.test.utils import datapath

from nlpft.embeddings.evaluation import (
    analogy,
    evaluate,
    format_table,
    nearest_neighbors,
    parse_analogy_query,
)
from nlpft.errors import UserInputError


def make_kv(words, vectors):
    kv = KeyedVectors(vector_size=vectors.shape[1])
    kv.add_vectors(list(words), np.asarray(vectors, dtype=np.float32))
    return kv


def questions():
    """(section, [a, b, c, d]) for every question in gensim's questions-words.txt."""
    section, out = None, []
    with open(datapath("questions-words.txt"), encoding="utf-8") as f:
        for line in f:
            if line.startswith(": "):
                section = line[2:].strip()
            elif line.split():
                out.append((section, line.split()))
    return out


@pytest.fixture(scope="module")
def random_kv():
    """Random vectors for every other word of the analogy file (lower-cased), plus wordsim words."""
    with open(datapath("wordsim353.tsv"), encoding="utf-8") as f:
        pair_words = {w for line in f if not line.startswith("#") for w in line.split("\t")[:2]}
    words = sorted({w for _, q in questions() for w in q})[::2] + sorted(pair_words)[::2]
    words = list(dict.fromkeys(w.lower() for w in words))
    rng = np.random.default_rng(1)
    return make_kv(words, rng.normal(size=(len(words), 16)))


def test_builtin_sets_structure_and_coverage(random_kv):
    result = evaluate(random_kv)
    json.dumps(result, allow_nan=False)  # strict JSON: plain floats, None for missing
    sets = {s["name"]: s for s in result["sets"]}
    assert list(sets) == ["analogy", "wordsim353", "simlex999"]

    vocab = {w.upper() for w in random_kv.index_to_key}
    qs = questions()
    covered = sum(all(w.upper() in vocab for w in q) for _, q in qs)
    an = sets["analogy"]
    assert (an["total"], an["covered"], an["oov"]) == (len(qs), covered, len(qs) - covered)
    assert an["oov_ratio"] == pytest.approx((len(qs) - covered) / len(qs))
    assert 0.0 <= an["score"] <= 1.0
    assert len(an["sections"]) == 14
    assert sum(s["questions"] for s in an["sections"]) == len(qs)
    assert an["semantic"]["questions"] + an["syntactic"]["questions"] == len(qs)
    semantic = sum(1 for s, _ in qs if not s.startswith("gram"))
    assert an["semantic"]["questions"] == semantic
    assert an["correct"] == an["semantic"]["correct"] + an["syntactic"]["correct"]

    with open(datapath("wordsim353.tsv"), encoding="utf-8") as f:
        pairs = [line.split("\t")[:2] for line in f if not line.startswith("#")]
    ws = sets["wordsim353"]
    assert ws["total"] == len(pairs) == 353
    assert ws["covered"] == sum(a.upper() in vocab and b.upper() in vocab for a, b in pairs)
    assert 3 <= ws["covered"] < 353
    assert ws["metric"] == "spearman"
    for s in (ws, sets["simlex999"]):
        if s["covered"] >= 3:
            assert -1.0 <= s["spearman"]["rho"] <= 1.0 and -1.0 <= s["pearson"]["r"] <= 1.0
            assert s["score"] == s["spearman"]["rho"]


def test_case_sensitive_and_restrict_vocab(random_kv):
    # The vocabulary is lower-case while the analogy file is capitalised ("Athens Greece ...").
    sensitive = evaluate(random_kv, similarity_files=[], case_insensitive=False)["sets"][0]
    insensitive = evaluate(random_kv, similarity_files=[])["sets"][0]
    assert sensitive["covered"] < insensitive["covered"]
    nothing = evaluate(random_kv, similarity_files=[], restrict_vocab=1)["sets"][0]
    assert nothing["covered"] == 0 and nothing["score"] is None


ANALOGIES = """\
: family
man woman king queen
king queen man woman
boy girl prince princess
: gram8-plural
cat cats dog dogs
dog dogs cat cats
: wrong-on-purpose
man woman boy prince
"""


def exact_analogy_kv():
    """Vectors where b - a + c == d holds exactly: concept one-hot + optional offsets."""
    concepts = ["person", "royal", "child", "heir", "cat", "dog"]
    gender, plural = len(concepts), len(concepts) + 1
    words = {
        "man": ("person", None), "woman": ("person", gender),
        "king": ("royal", None), "queen": ("royal", gender),
        "boy": ("child", None), "girl": ("child", gender),
        "prince": ("heir", None), "princess": ("heir", gender),
        "cat": ("cat", None), "cats": ("cat", plural),
        "dog": ("dog", None), "dogs": ("dog", plural),
    }
    vectors = np.zeros((len(words), len(concepts) + 2))
    for row, (concept, offset) in enumerate(words.values()):
        vectors[row, concepts.index(concept)] = 1.0
        if offset is not None:
            vectors[row, offset] = 1.0
    return make_kv(words, vectors)


def test_exact_analogies_score_exactly(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(ANALOGIES, encoding="utf-8")
    result = evaluate(exact_analogy_kv(), analogy_files=[path], similarity_files=[])
    (s,) = result["sets"]
    assert s["name"] == "tiny" and s["path"] == str(path)
    by_name = {sec["section"]: sec for sec in s["sections"]}
    assert by_name["family"]["accuracy"] == 1.0 and by_name["family"]["correct"] == 3
    assert by_name["gram8-plural"]["accuracy"] == 1.0 and by_name["gram8-plural"]["kind"] == "syntactic"
    assert by_name["wrong-on-purpose"]["accuracy"] == 0.0  # answer is "girl", file says "prince"
    assert s["score"] == pytest.approx(5 / 6)
    assert s["syntactic"] == {"questions": 2, "covered": 2, "correct": 2, "accuracy": 1.0}
    assert s["semantic"]["accuracy"] == pytest.approx(3 / 4)


def test_exact_similarity_gives_rank_correlation_one(tmp_path):
    angles = np.radians([0, 10, 25, 45, 70, 90])
    words = [f"w{i}" for i in range(len(angles))]
    kv = make_kv(words, np.stack([np.cos(angles), np.sin(angles)], axis=1))
    path = tmp_path / "pairs.tsv"
    lines = ["# word1\tword2\tscore"] + [f"w0\tw{i}\t{10 - i}" for i in range(1, 6)] + ["w0\tunknown\t3"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (s,) = evaluate(kv, analogy_files=[], similarity_files=[path])["sets"]
    assert s["spearman"]["rho"] == pytest.approx(1.0)
    assert s["pearson"]["r"] > 0.9
    assert (s["total"], s["covered"], s["oov"]) == (6, 5, 1)


@pytest.mark.parametrize(
    "kind, content, pattern",
    [
        ("analogy", "a b c d\n", r"line 1: question before any ': section'"),
        ("analogy", ": s\na b c d\na b c\n", r"line 3: expected 4 words"),
        ("analogy", ": s\n\n", r"no analogy questions"),
        ("similarity", "# c\na\tb\t1\na b 2\n", r"line 3: expected 'word1<TAB>word2<TAB>score'"),
        ("similarity", "a\tb\thigh\n", r"line 1: .*numeric score"),
        ("similarity", "# only a comment\n", r"no word pairs"),
    ],
)
def test_malformed_user_files(kind, content, pattern, tmp_path, random_kv):
    path = tmp_path / "bench.txt"
    path.write_text(content, encoding="utf-8")
    files = {"analogy_files": [], "similarity_files": []}
    files[f"{kind}_files"] = [path]
    with pytest.raises(UserInputError, match=pattern) as info:
        evaluate(random_kv, **files)
    assert str(path) in str(info.value)


def test_missing_user_file(tmp_path, random_kv):
    with pytest.raises(UserInputError, match=r"nope.txt: benchmark file does not exist"):
        evaluate(random_kv, analogy_files=[tmp_path / "nope.txt"])


def test_format_table(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(ANALOGIES, encoding="utf-8")
    table = format_table(evaluate(exact_analogy_kv(), analogy_files=[path]))
    lines = table.splitlines()
    assert lines[0].split() == ["set", "metric", "score", "coverage"]
    assert any(line.split()[:4] == ["tiny", "accuracy", "0.8333", "6/6"] for line in lines)
    assert any(line.startswith("wordsim353") and "n/a" in line for line in lines)  # vocabulary too small
    column = lines[0].index("metric")
    assert all(line[column - 2:column] == "  " and line[column] != " " for line in lines[2:])


def test_nearest_neighbors_and_analogy():
    kv = exact_analogy_kv()
    result = nearest_neighbors(kv, ["king"], topn=3)
    assert result["king"][0][0] == "queen" and isinstance(result["king"][0][1], float)
    assert analogy(kv, "man", "king", "woman", topn=1)[0][0] == "queen"
    assert parse_analogy_query("man:king::woman") == ("man", "king", "woman")
    with pytest.raises(UserInputError, match="a:b::c"):
        parse_analogy_query("man king woman")


def test_unknown_words_get_suggestions():
    with pytest.raises(UserInputError, match=r"'kng' \(did you mean 'king'.*'zzzzzz'") as info:
        nearest_neighbors(exact_analogy_kv(), ["king", "kng", "zzzzzz"])
    assert "'king' (" not in str(info.value)
