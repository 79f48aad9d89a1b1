"""Reading and checking tagged files (CoNLL, JSONL, CSV), tag schemes and the split."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nlpft.data.tagged import (
    Span,
    check_tags,
    convert_scheme,
    entity_spans,
    entity_types,
    first_invalid_tag,
    read_tagged,
    scheme_tags,
    spans_to_tags,
    split_sentences,
)
from nlpft.errors import UserInputError
from tests.conftest import shared_corpus

CONLL = """-DOCSTART-\tO

Obama\tB-PER
visited\tO
the\tO
Empire\tB-LOC
State\tI-LOC
Building\tI-LOC

He\tO
left\tO
.\tO
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path, **options) -> str:
    with pytest.raises(UserInputError) as caught:
        read_tagged(path, **options)
    assert caught.value.exit_code == 2
    return str(caught.value)


# -- reading --------------------------------------------------------------------------------
def test_conll_sentences_lines_and_docstart(tmp_path):
    data = read_tagged(write(tmp_path, "a.conll", CONLL))
    assert [s.tokens for s in data] == [("Obama", "visited", "the", "Empire", "State", "Building"), ("He", "left", ".")]
    assert data[0].tags == ("B-PER", "O", "O", "B-LOC", "I-LOC", "I-LOC")
    assert data[0].line == 3 and data[0].line_of(4) == 7 and data[1].line == 10
    assert data.entity_types == ("LOC", "PER")
    assert data.entity_counts() == {"PER": 1, "LOC": 1}
    assert "2 sentences, 9 tokens, 2 entities of 2 types (IOB2)" in data.summary()


def test_conll_space_separated_tag_col_and_gzip(tmp_path):
    text = "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n"
    path = tmp_path / "b.txt.gz"
    path.write_bytes(gzip.compress(text.encode()))
    assert [s.tags for s in read_tagged(path)] == [("B-ORG", "O"), ("B-PER",)]  # last column by default
    assert read_tagged(path, tag_col=3)[0].tags == ("B-NP", "B-VP")


def test_conll_tab_separated_token_may_hold_spaces(tmp_path):
    data = read_tagged(write(tmp_path, "c.conll", "New York\tB-LOC\nis\tO\n"))
    assert data[0].tokens == ("New York", "is")


def test_jsonl_and_csv(tmp_path):
    rows = [{"tokens": ["Obama", "spoke"], "tags": ["B-PER", "O"]}, {"tokens": ["Paris"], "tags": ["B-LOC"]}]
    jsonl = write(tmp_path, "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    data = read_tagged(jsonl)
    assert [(s.tokens, s.tags, s.line) for s in data] == [(("Obama", "spoke"), ("B-PER", "O"), 1), (("Paris",), ("B-LOC",), 2)]
    csv = write(tmp_path, "d.csv", "tokens,tags\nObama spoke,B-PER O\nParis,B-LOC\n")
    assert [(s.tokens, s.tags, s.line) for s in read_tagged(csv)] == [(s.tokens, s.tags, s.line + 1) for s in data]


def test_predict_input_without_tags(tmp_path):
    data = read_tagged(write(tmp_path, "p.conll", "Obama\nspoke\n\nParis\n"), require_tags=False)
    assert not data.has_tags and [s.tokens for s in data] == [("Obama", "spoke"), ("Paris",)]
    assert "no tag column" in error_of(write(tmp_path, "q.conll", "Obama\nspoke\n"))


def test_reading_imports_neither_torch_nor_transformers():
    code = "import sys, nlpft.data.tagged; print('torch' in sys.modules or 'transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


# -- every error names its line -------------------------------------------------------------
def test_count_mismatch_names_the_line(tmp_path):
    path = write(tmp_path, "e.jsonl", '{"tokens": ["a", "b"], "tags": ["O", "O"]}\n{"tokens": ["a", "b"], "tags": ["O"]}\n')
    message = error_of(path)
    assert "token/tag count mismatch (1 line): line 2 (2 tokens, 1 tags)" in message


def test_malformed_conll_lines_are_all_listed(tmp_path):
    path = write(tmp_path, "f.conll", "a\tO\t\nb\tO\textra\n\nc\nd\tO\n\ne\t\tO\n")
    message = error_of(path)
    assert ("malformed line (3 lines): lines 2 (3 columns, most lines have 2), 4 (1 column, most lines have 2), "
            "7 (3 columns, most lines have 2)") in message  # a trailing tab is not a column
    empty_column = write(tmp_path, "f2.conll", "a\tNN\tO\nb\t\tO\n")
    assert "line 2 (an empty column (two tabs in a row?))" in error_of(empty_column)


def test_tag_col_beyond_the_columns_names_the_line(tmp_path):
    message = error_of(write(tmp_path, "g.conll", "a\tO\nb\tO\n"), tag_col=3)
    assert "lines 1 (2 columns, no column 3 for --tag-col)" in message
    assert "--tag-col must be a column number" in error_of(write(tmp_path, "h.conll", "a\tO\n"), tag_col=1)


def test_bad_json_missing_key_and_non_list(tmp_path):
    path = write(tmp_path, "i.jsonl", '{"tokens": ["a"], "tags": ["O"]}\nnot json\n{"tags": ["O"]}\n{"tokens": "a b", "tags": ["O", "O"]}\n')
    message = error_of(path)
    assert "malformed line (3 lines): lines 2 (not a JSON object" in message
    assert "3 (no 'tokens' key), 4 ('tokens' must be a list of strings)" in message


def test_missing_tags_field_is_one_file_level_error(tmp_path):
    assert "row 1: no column 'tags'; the header has 'tokens', 'labels'" in error_of(
        write(tmp_path, "t.csv", "tokens,labels\na b,O O\n"))
    assert "no object has the key 'tags'" in error_of(write(tmp_path, "t.jsonl", '{"tokens": ["a"]}\n'))
    mixed = write(tmp_path, "u.jsonl", '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["b"]}\n')
    assert "line 2 (no 'tags' key)" in error_of(mixed)
    assert "the first without: line 2" in error_of(mixed, require_tags=False)


def test_malformed_rows_of_jsonl_and_csv_name_their_line(tmp_path):
    empty_item = write(tmp_path, "v.jsonl", '{"tokens": ["a", " "], "tags": ["O", "O"]}\n')
    assert "line 1 ('tokens' item 2 is empty)" in error_of(empty_item)
    extra_field = write(tmp_path, "v.csv", "tokens,tags\na b,O O\na,O,x\n")
    assert "malformed line (1 row): row 3 (wrong number of fields: 3 fields, expected 2)" in error_of(extra_field)
    latin1 = tmp_path / "w.csv"
    latin1.write_bytes(b"tokens,tags\nb\xe9,O\n")
    assert "not UTF-8 (1 row): row 2 (in column 'tokens')" in error_of(latin1)


def test_empty_sentence_names_the_row(tmp_path):
    path = write(tmp_path, "j.csv", "tokens,tags\nParis,B-LOC\n,\n")
    assert "empty sentence (1 row): row 3" in error_of(path)


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "k.conll"
    path.write_bytes(b"a\tO\nb\xe9\tO\n")
    assert "not UTF-8 (1 line): line 2 (byte 0xe9 at column 2)" in error_of(path)


def test_tag_outside_the_scheme_names_the_line_and_suggests_bioes(tmp_path):
    path = write(tmp_path, "l.conll", "Obama\tS-PER\nx\tPER\n")
    message = error_of(path)
    assert "tag outside the scheme (2 lines): lines 1 ('S-PER'), 2 ('PER')" in message
    assert "--tag-scheme bioes" in message


def test_invalid_sequence_is_counted_and_repaired_only_when_asked(tmp_path):
    text = "the\tO\nState\tI-LOC\n\nBig\tB-LOC\nApple\tI-PER\n\nok\tB-PER\n"
    path = write(tmp_path, "m.conll", text)
    message = error_of(path)
    assert "invalid tag sequence (2 lines): lines 2 (I-LOC after O), 5 (I-PER after B-LOC)" in message
    assert "--repair-tags" in message
    data = read_tagged(path, repair_tags=True)
    assert [s.tags for s in data] == [("O", "B-LOC"), ("B-LOC", "B-PER"), ("B-PER",)]
    assert (data.repaired, data.repaired_sentences) == (2, 2)
    assert "repaired 2 tags in 2 sentences" in data.summary()


def test_file_level_problems(tmp_path):
    assert "no such file" in error_of(tmp_path / "missing.conll")
    assert "is empty" in error_of(write(tmp_path, "n.conll", "\n\n"))
    assert "every tag is O" in error_of(write(tmp_path, "o.conll", "a\tO\n"), training=True)
    assert "unknown tag scheme" in error_of(write(tmp_path, "p.conll", "a\tO\n"), scheme="bilou")
    assert "is a directory" in error_of(tmp_path)
    assert "no sentences" in error_of(write(tmp_path, "q.conll", "-DOCSTART- -X- O\n\n"))
    utf16 = tmp_path / "r.conll"
    utf16.write_bytes("a\tO\n".encode("utf-16"))
    assert "is UTF-16" in error_of(utf16)


def test_unseen_test_tags_name_count_and_first_line(tmp_path):
    train = read_tagged(write(tmp_path, "train.conll", "Obama\tB-PER\nHawaii\tB-LOC\n"))
    test = read_tagged(write(tmp_path, "test.conll", "a\tB-ORG\nb\tI-ORG\n\nc\tB-ORG\n\nd\tB-PER\ne\tI-PER\n"))
    known = scheme_tags(train.entity_types)
    assert known == ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
    check_tags(train, known, "train.conll")
    with pytest.raises(UserInputError) as caught:
        check_tags(test, known, "test.conll")
    assert "'B-ORG' (2 tokens, first at line 1), 'I-ORG' (1 token, first at line 2)" in str(caught.value)
    assert "I-PER" not in str(caught.value)  # in the label list, though training lacked it


# -- schemes --------------------------------------------------------------------------------
def test_scheme_conversion_round_trips():
    iob2 = ["B-X", "I-X", "O", "B-Y", "B-Y", "I-Y", "O", "B-X"]
    bioes = convert_scheme(iob2, "iob2", "bioes")
    assert bioes == ["B-X", "E-X", "O", "S-Y", "B-Y", "E-Y", "O", "S-X"]
    iob1 = convert_scheme(iob2, "iob2", "iob1")
    assert iob1 == ["I-X", "I-X", "O", "I-Y", "B-Y", "I-Y", "O", "I-X"]
    for tags, scheme in ((bioes, "bioes"), (iob1, "iob1")):
        assert convert_scheme(tags, scheme, "iob2") == iob2
        assert first_invalid_tag(tags, scheme) is None
    assert first_invalid_tag(iob2, "iob1") == 0  # B-X after O is not IOB1


def test_lenient_spans_and_canonical_encoding():
    assert entity_spans(["O", "I-X", "I-X", "I-Y", "B-Y"]) == [Span("X", 1, 3), Span("Y", 3, 4), Span("Y", 4, 5)]
    assert spans_to_tags([Span("X", 1, 3)], 4) == ["O", "B-X", "I-X", "O"]
    assert first_invalid_tag(["O", "I-X"]) == 1 and first_invalid_tag(["B-X", "I-X"]) is None
    assert entity_types(["O", "B-geo-loc", "I-geo-loc"]) == ("geo-loc",)


def test_split_is_seeded_and_disjoint(tmp_path):
    text = "".join(f"w{i}\tB-X\n\n" for i in range(50))
    data = read_tagged(write(tmp_path, "s.conll", text))
    train, valid, test = split_sentences(data.sentences, seed=3)
    assert (len(train), len(valid), len(test)) == (40, 5, 5)
    assert sorted(s.line for s in train + valid + test) == [s.line for s in data]
    assert split_sentences(data.sentences, seed=3) == (train, valid, test)
    assert split_sentences(data.sentences, seed=4)[2] != test


# -- the shared corpus ----------------------------------------------------------------------
def test_wnut16_reads_clean():
    data = read_tagged(shared_corpus("wnut16_ner.conll"), training=True)
    assert len(data) == 1900 and data.num_tokens == 37028
    assert len(data.entity_types) == 10 and "geo-loc" in data.entity_types
    assert data.repaired == 0
    assert all(first_invalid_tag(s.tags) is None for s in data)
