"""Labeled CSV/TSV/JSONL reading and validation (nlpft.data.labeled)."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from nlpft.data.labeled import (
    EMPTY_LABEL,
    EMPTY_TEXT,
    NOT_UTF8,
    WRONG_FIELD_COUNT,
    LabeledExample,
    LabelMap,
    build_label_map,
    check_labels,
    label_key,
    read_labeled,
    stratified_split,
)
from nlpft.errors import UserInputError
from tests.conftest import shared_corpus


def _csv(path: Path, rows: list[str], header: str = "text,label") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _error(path: Path, **kwargs) -> str:
    with pytest.raises(UserInputError) as info:
        read_labeled(path, **kwargs)
    return str(info.value)


def _two_classes(n: int = 4) -> list[str]:
    return [f"text {i},{'pos' if i % 2 else 'neg'}" for i in range(n)]


# -- reading ------------------------------------------------------------------------------
def test_csv_rows_numbered_like_a_spreadsheet(tmp_path):
    data = read_labeled(_csv(tmp_path / "t.csv", ["good film,pos", "bad film,neg", "", "ok film,pos"]))
    assert data.texts() == ["good film", "bad film", "ok film"]
    assert data.labels() == ["pos", "neg", "pos"]
    # header is row 1; the blank line is row 4, counted but ignored
    assert [ex.row for ex in data] == [2, 3, 5]
    assert data.label_counts() == Counter(pos=2, neg=1)
    assert data.skipped == {} and data.bad_rows_file is None
    assert data.columns == ["text", "label"] and len(data) == 3 and data[0].text == "good film"


def test_labels_stay_strings(tmp_path):
    # "1" and "1.0" are different class names: labels are never parsed as numbers
    rows = ["a,1", "b,2", "c, 1 ", "d,1.0"]
    data = read_labeled(_csv(tmp_path / "num.csv", rows))
    assert data.labels() == ["1", "2", "1", "1.0"]
    assert all(isinstance(label, str) for label in data.labels())
    assert build_label_map(data).labels == ("1", "1.0", "2")


def test_bom_and_spaces_in_header(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufefftext , label\nhello,x\nbye,y\n".encode())
    data = read_labeled(path)
    assert data.columns == ["text", "label"] and data.texts() == ["hello", "bye"]


def test_quoted_field_with_newlines_is_one_row(tmp_path):
    path = _csv(tmp_path / "nl.csv", ['"line one\nline two, still text",pos', "next,neg", ",neg"])
    error = _error(path)
    # record numbers, not line numbers: the empty text is row 4 although it is on line 5
    assert "empty text (1 row): row 4;" in error
    data = read_labeled(path, skip_bad_rows=True)
    assert data.texts() == ["line one\nline two, still text", "next"]
    assert [ex.row for ex in data] == [2, 3]


def test_unclosed_quote_is_reported(tmp_path):
    error = _error(_csv(tmp_path / "q.csv", ["fine,pos", '"never closed,neg', "more,pos"]))
    assert WRONG_FIELD_COUNT in error and "unclosed quote" in error and "row 3" in error


def test_tsv_without_quoting(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text('sentence\ttag\n"quoted" at start\tA\nplain, with comma\tB\n', encoding="utf-8")
    data = read_labeled(path, text_col="sentence", label_col="tag")
    assert data.texts() == ['"quoted" at start', "plain, with comma"]
    assert data.labels() == ["A", "B"]


def test_jsonl_line_numbers_and_label_spelling(tmp_path):
    path = tmp_path / "t.jsonl"
    lines = [{"text": "a", "label": 1}, {"text": "b", "label": "x"}, None, {"text": "c", "label": 1.0}]
    text = "\n".join("" if o is None else json.dumps(o) for o in lines) + "\n"
    path.write_text(text, encoding="utf-8-sig")  # a BOM before the first object is dropped
    data = read_labeled(path)
    # JSON numbers keep their spelling, as in a CSV cell
    assert data.labels() == ["1", "x", "1.0"]
    assert [ex.row for ex in data] == [1, 2, 4]


def test_jsonl_bad_lines(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{not json}\n[1, 2]\n{"text": "b"}\n{"text": "c", "label": "y"}\n')
    error = _error(path)
    assert "not a JSON object (2 lines): lines 2 (" in error and ", 3 (a JSON list, not an object)" in error
    assert "missing field (1 line): line 4 (no 'label' key)" in error
    assert "line numbers" in error


def test_jsonl_missing_key_everywhere_is_a_missing_column(tmp_path):
    path = tmp_path / "k.jsonl"
    path.write_text('{"sentence": "a", "label": "x"}\n{"sentence": "b", "label": "y"}\n')
    error = _error(path)
    assert "missing column 'text'; the file has columns 'sentence', 'label'; pass --text-col NAME" in error
    assert "missing field" not in error


def test_gzipped_csv(tmp_path):
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(b"text,label\na,x\nb,y\n"))
    data = read_labeled(path)
    assert data.texts() == ["a", "b"]


def test_text_pairs(tmp_path):
    path = _csv(tmp_path / "p.csv", ["a,b,yes", "c,d,no", "e,,no"], header="premise,hypothesis,label")
    error = _error(path, text_col="premise", text_pair_col="hypothesis")
    assert "empty text pair (1 row): row 4;" in error
    data = read_labeled(path, text_col="premise", text_pair_col="hypothesis", skip_bad_rows=True)
    assert data.text_pairs() == ["b", "d"]
    assert data[0] == LabeledExample(text="a", label="yes", row=2, text_pair="b")


# -- file-level errors --------------------------------------------------------------------
def test_missing_file_directory_empty_and_header_only(tmp_path):
    assert "no such file" in _error(tmp_path / "nope.csv")
    assert "is a directory" in _error(tmp_path)
    (tmp_path / "empty.csv").write_text("")
    assert "empty.csv: the file is empty" in _error(tmp_path / "empty.csv")
    header_only = _csv(tmp_path / "h.csv", [])
    assert "no data rows: the file has only a header" in _error(header_only)


def test_unknown_extension_lists_supported(tmp_path):
    for name in ("data.txt", "data.json", "data.xlsx"):
        (tmp_path / name).write_text("x")
    assert "supported: .csv, .tsv" in _error(tmp_path / "data.txt")
    assert "jq -c" in _error(tmp_path / "data.json")
    assert "export the spreadsheet as CSV" in _error(tmp_path / "data.xlsx")


def test_missing_columns_name_existing_ones(tmp_path):
    path = _csv(tmp_path / "cols.csv", ["a,x", "b,y"], header="Text,category")
    error = _error(path)
    assert error.startswith(str(path))
    assert "missing column 'text'; the file has columns 'Text', 'category'; pass --text-col NAME" in error
    assert "did you mean 'Text'?" in error
    assert "missing column 'label'" in error and "--label-col" in error
    assert read_labeled(path, text_col="Text", label_col="category").labels() == ["x", "y"]


def test_tsv_named_csv_gets_a_hint(tmp_path):
    path = tmp_path / "tabs.csv"
    path.write_text("text\tlabel\na\tx\n")
    assert "if this is a TSV file, name it .tsv" in _error(path)


def test_semicolon_delimited_csv_gets_a_hint(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text("text;label\na good film;pos\na bad film;neg\n")
    error = _error(path)
    assert "missing column 'text'" in error and "';'-delimited" in error


def test_single_class_training_file(tmp_path):
    path = _csv(tmp_path / "one.csv", ["a,pos", "b,pos", "c,pos"])
    error = _error(path)
    assert "single class only" in error and "'pos'" in error and "(3)" in error
    # a test or predict file may hold one class
    assert read_labeled(path, training=False).labels() == ["pos"] * 3


def test_utf16_and_binary_files(tmp_path):
    (tmp_path / "u16.csv").write_bytes("text,label\na,b\n".encode("utf-16"))
    assert "UTF-16" in _error(tmp_path / "u16.csv")
    (tmp_path / "bin.csv").write_bytes(b"text,label\n\x00\x01\x02,x\n")
    assert "binary" in _error(tmp_path / "bin.csv")


# -- row-level errors ---------------------------------------------------------------------
def test_row_problems_collected_in_one_message(tmp_path):
    path = tmp_path / "train.csv"
    rows = [b"fine,pos", b"caf\xe9,neg", b"too,many,fields", b",pos", b"no label,", b"fine too,neg"]
    path.write_bytes(b"text,label\n" + b"\n".join(rows) + b"\n")
    error = _error(path)
    assert error.startswith(f"{path}: 4 problems found (row 1 is the header")
    assert f"{NOT_UTF8} (1 row): row 3 (byte 0xe9 in column 'text')" in error
    assert f"{WRONG_FIELD_COUNT} (1 row): row 4 (3 fields, expected 2)" in error
    assert f"{EMPTY_TEXT} (1 row): row 5;" in error
    assert f"{EMPTY_LABEL} (1 row): row 6;" in error
    assert "--skip-bad-rows" in error
    listing = tmp_path / "train.csv.bad-rows.txt"
    assert f"Full list of bad rows: {listing}" in error
    assert [line.split("\t")[0] for line in listing.read_text().splitlines()[1:]] == ["3", "4", "5", "6"]


def test_many_bad_rows_show_five_and_a_count(tmp_path):
    rows = _two_classes(4) + [f",{'pos' if i % 2 else 'neg'}" for i in range(46)]
    path = _csv(tmp_path / "many.csv", rows)
    error = _error(path)
    assert "empty text (46 rows): rows 6, 7, 8, 9, 10 and 41 more;" in error
    listing = tmp_path / "many.csv.bad-rows.txt"
    assert len(listing.read_text().splitlines()) == 1 + 46


def test_bad_rows_file_in_chosen_dir_or_temp_fallback(tmp_path):
    path = _csv(tmp_path / "in.csv", [*_two_classes(), ",x"])
    out = tmp_path / "reports"
    out.mkdir()
    assert str(out / "in.csv.bad-rows.txt") in _error(path, bad_rows_dir=out)
    not_a_dir = tmp_path / "plain-file"
    not_a_dir.write_text("")
    error = _error(path, bad_rows_dir=not_a_dir)
    written = Path(re.search(r"Full list of bad rows: (\S+)", error).group(1))
    assert written.name == "in.csv.bad-rows.txt" and written.parent != not_a_dir and written.is_file()


def test_skip_bad_rows_counts_each_row_once(tmp_path):
    path = tmp_path / "s.csv"
    rows = [b"a,pos", b"b,neg", b",", b",pos", b"x,y,z", b"caf\xe9,neg", b"c,", b"d,pos"]
    path.write_bytes(b"text,label\n" + b"\n".join(rows) + b"\n")
    data = read_labeled(path, skip_bad_rows=True)
    assert data.texts() == ["a", "b", "d"]
    # row 4 has empty text and an empty label: counted once, under empty text
    assert data.skipped == {NOT_UTF8: 1, WRONG_FIELD_COUNT: 1, EMPTY_TEXT: 2, EMPTY_LABEL: 1}
    assert data.num_skipped == 5 == sum(data.skipped.values())
    assert [(s.row, s.reason) for s in data.skipped_rows][:2] == [(4, EMPTY_TEXT), (5, EMPTY_TEXT)]
    assert "skipped 5 rows" in data.skipped_summary() and data.bad_rows_file.is_file()


def test_skip_bad_rows_still_raises_for_file_problems(tmp_path):
    one_class = _csv(tmp_path / "one.csv", ["a,pos", ",neg", "b,pos"])
    assert "single class only" in _error(one_class, skip_bad_rows=True)
    all_bad = _csv(tmp_path / "bad.csv", [",pos", ",neg"])
    error = _error(all_bad, skip_bad_rows=True)
    assert "no usable rows: all 2 rows have problems" in error and "--skip-bad-rows" not in error
    missing = _csv(tmp_path / "m.csv", ["a,pos"], header="body,label")
    assert "missing column 'text'" in _error(missing, skip_bad_rows=True)


def test_predict_input_without_labels(tmp_path):
    # a blank line is no row (row 4); a quoted empty cell or spaces are an empty text
    path = _csv(tmp_path / "predict.csv", ["first", '""', "", "   ", "fifth"], header="text")
    data = read_labeled(path, require_label=False)
    assert data.texts() == ["first", "fifth"] and data.labels() == [None, None]
    assert not data.has_labels
    assert [(s.row, s.reason) for s in data.skipped_rows] == [(3, EMPTY_TEXT), (5, EMPTY_TEXT)]
    # labels, where present, are read; blank ones are allowed
    labeled = _csv(tmp_path / "p2.csv", ["a,x", "b,"])
    assert read_labeled(labeled, require_label=False).labels() == ["x", None]


# -- tasks --------------------------------------------------------------------------------
def test_multi_label_cells(tmp_path):
    path = _csv(tmp_path / "m.csv", ['a,"sport; news"', "b,news", "c,tech;;news;tech", "d, "])
    error = _error(path, task="multi")
    assert "empty label (1 row): row 5;" in error
    data = read_labeled(path, task="multi", skip_bad_rows=True)
    assert data.labels() == [("sport", "news"), ("news",), ("tech", "news")]
    assert data.label_counts() == Counter(news=3, sport=1, tech=1)
    pipes = _csv(tmp_path / "pipes.csv", ["a,x|y", "b,y"])
    assert read_labeled(pipes, task="multi", label_delimiter="|").labels() == [("x", "y"), ("y",)]
    label_map = build_label_map(data)
    assert label_map.encode_multi(("tech", "news")).tolist() == [1.0, 0.0, 1.0]


def test_multi_label_jsonl_lists(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"text": "a", "label": ["x", "y"]}\n{"text": "b", "label": ["y"]}\n')
    assert read_labeled(path, task="multi").labels() == [("x", "y"), ("y",)]
    assert "lists need --task multi" in _error(path)


def test_regression_labels(tmp_path):
    rows = ["a,1", "b,2.5", "c,-3e2", "d,abc", "e,nan", "f,1,5", 'g,"1,5"']
    path = _csv(tmp_path / "r.csv", rows)
    error = _error(path, task="regression")
    assert "not a number (3 rows): rows 5 ('abc'), 6 ('nan'), 8 ('1,5': use a dot as the decimal point)" in error
    assert "wrong number of fields (1 row): row 7" in error
    data = read_labeled(path, task="regression", skip_bad_rows=True)
    assert data.labels() == [1.0, 2.5, -300.0]
    constant = _csv(tmp_path / "c.csv", ["a,1", "b,1.0"])
    assert "a regression target needs different values" in _error(constant, task="regression")


def test_unknown_task(tmp_path):
    assert "unknown task 'ner'" in _error(_csv(tmp_path / "t.csv", _two_classes()), task="ner")


# -- label map ----------------------------------------------------------------------------
def test_label_map_round_trip(tmp_path):
    data = read_labeled(_csv(tmp_path / "t.csv", ["a,tech", "b,sport", "c,business", "d,sport"]))
    label_map = build_label_map(data)
    assert label_map.label2id == {"business": 0, "sport": 1, "tech": 2}
    assert label_map.id2label == {0: "business", 1: "sport", 2: "tech"}
    assert [label_map.encode(label) for label in data.labels()] == [2, 1, 0, 1]
    assert label_map.decode(2) == "tech"
    json.dumps(label_map.to_dict())
    saved = label_map.save(tmp_path / "labels.json")
    assert LabelMap.load(saved) == label_map
    hf_config = {"id2label": {"0": "business", "1": "sport", "2": "tech"}}
    assert LabelMap.from_dict(hf_config) == label_map


def test_label_map_load_errors(tmp_path):
    with pytest.raises(UserInputError, match="no such label map"):
        LabelMap.load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"label2id": {"a": 0, "b": 5}}')
    with pytest.raises(UserInputError, match="bad.json: not a valid label map"):
        LabelMap.load(bad)


def test_unseen_labels_named_with_counts(tmp_path):
    train = read_labeled(_csv(tmp_path / "train.csv", ["a,business", "b,politics"]))
    label_map = build_label_map(train)
    test_rows = ["x,business"] + ["s,sport"] * 12 + ["t,tech"] * 3
    test = read_labeled(_csv(tmp_path / "test.csv", test_rows), training=False)
    with pytest.raises(UserInputError) as info:
        check_labels(test, label_map, test.file)
    message = str(info.value)
    assert message.startswith(f"{test.file}: labels not seen in training: ")
    assert "'sport' (12 rows, first at row 3), 'tech' (3 rows, first at row 15)" in message
    assert "'business', 'politics'" in message
    check_labels(train, label_map, train.file)  # no error for known labels
    check_labels(read_labeled(_csv(tmp_path / "p.csv", ["q"], header="text"), require_label=False), label_map, "p.csv")


# -- labels that differ only in case ------------------------------------------------------
def _case_variants(tmp_path: Path) -> Path:
    rows = ["a,pos"] * 5 + ["b,Pos"] * 2 + ["c,neg"] * 4 + ["d,NEG"] * 4 + ["e,ＰＯＳ"]
    return _csv(tmp_path / "cased.csv", rows)


def test_labels_differing_in_case_are_listed_with_counts(tmp_path):
    data = read_labeled(_case_variants(tmp_path))
    assert sorted(data.label_counts()) == ["NEG", "Pos", "neg", "pos", "ＰＯＳ"]  # unchanged by default
    assert data.label_variants == {"pos": Counter({"pos": 5, "Pos": 2, "ＰＯＳ": 1}),
                                   "neg": Counter({"neg": 4, "NEG": 4})}
    warning = data.label_variants_warning()
    assert warning.startswith(f"{data.file}: labels that differ only in case are separate classes: ")
    assert "'pos' (5 rows), 'Pos' (2 rows), 'ＰＯＳ' (1 row)" in warning
    assert "'neg' (4 rows), 'NEG' (4 rows)" in warning and "--normalize-labels" in warning
    assert read_labeled(_csv(tmp_path / "clean.csv", _two_classes())).label_variants_warning() is None


def test_normalize_labels_keeps_the_most_frequent_spelling(tmp_path):
    data = read_labeled(_case_variants(tmp_path), normalize_labels=True)
    # 'pos' has the most rows; 'neg' and 'NEG' tie and the first in the file wins
    assert data.label_counts() == Counter({"pos": 8, "neg": 8})
    assert data.label_variants == {} and data.label_variants_warning() is None
    assert label_key(" Ｐos ") == "pos"


def test_normalize_labels_in_multi_label_cells_and_single_class_check(tmp_path):
    multi = _csv(tmp_path / "multi.csv", ['a,"x;X"', "b,x;y", "c,Y"])
    assert read_labeled(multi, task="multi", normalize_labels=True).labels() == [("x",), ("x", "y"), ("y",)]
    one_class = _csv(tmp_path / "one.csv", ["a,pos", "b,Pos", "c,pos"])
    assert "single class only" in _error(one_class, normalize_labels=True)


def test_unseen_label_differing_only_in_case_gets_a_hint(tmp_path):
    train = read_labeled(_csv(tmp_path / "train.csv", _two_classes()))
    test = read_labeled(_csv(tmp_path / "test.csv", ["x,Pos", "y,neg"]), training=False)
    with pytest.raises(UserInputError, match=r"'Pos' is 'pos' but for case: pass --normalize-labels"):
        check_labels(test, build_label_map(train), test.file)


def _sentiment_rows(n: int, cased: bool) -> list[str]:
    good, bad = ["good", "great", "lovely"], ["bad", "awful", "dreadful"]
    rows = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        if cased and i % 8 < 2:  # a quarter of each class capitalised
            label = label.capitalize()
        rows.append(f"the film was {(good if label.lower() == 'pos' else bad)[i % 3]} {i},{label}")
    return rows


def test_finetune_warns_about_case_variants_and_normalize_labels_merges_them(tmp_path, capsys):
    from nlpft.cli.main import main

    train = _csv(tmp_path / "train.csv", _sentiment_rows(40, cased=True))
    assert main(["finetune", "--train", str(train), "--model", "tfidf", "--out", str(tmp_path / "as-is"),
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "'neg' (15 rows), 'Neg' (5 rows)" in err and "--normalize-labels" in err
    assert len(json.loads((tmp_path / "as-is" / "finetune.json").read_text())["label_map"]["label2id"]) == 4

    merged = tmp_path / "merged"
    assert main(["finetune", "--train", str(train), "--model", "tfidf", "--out", str(merged), "--quiet",
                 "--normalize-labels"]) == 0
    assert "warning" not in capsys.readouterr().err
    meta = json.loads((merged / "finetune.json").read_text())
    assert sorted(meta["label_map"]["label2id"]) == ["neg", "pos"] and meta["options"]["normalize_labels"]
    # evaluate merges the same way, from the saved options, onto the model's spelling
    test = _csv(tmp_path / "test.csv", [row.replace(",neg", ",NEG") for row in _sentiment_rows(12, cased=True)])
    assert main(["evaluate", "--model", str(merged), "--input", str(test), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert sorted(result["per_class"]) == ["neg", "pos"] and result["accuracy"] > 0.9


def test_csv_and_jsonl_of_one_stem_keep_separate_bad_row_lists(tmp_path):
    csv_file = _csv(tmp_path / "train.csv", [*_two_classes(), ",pos"])
    jsonl_file = tmp_path / "train.jsonl"
    jsonl_file.write_text('{"text": "a", "label": "pos"}\n{"text": "b", "label": "neg"}\nnot json\n')
    assert str(tmp_path / "train.csv.bad-rows.txt") in _error(csv_file)
    assert str(tmp_path / "train.jsonl.bad-rows.txt") in _error(jsonl_file)
    assert "empty text" in (tmp_path / "train.csv.bad-rows.txt").read_text()
    assert "not a JSON object" in (tmp_path / "train.jsonl.bad-rows.txt").read_text()


# -- splitting ----------------------------------------------------------------------------
def _examples(counts: dict[str, int]) -> list[LabeledExample]:
    labels = [label for label, n in counts.items() for _ in range(n)]
    return [LabeledExample(text=f"t{i}", label=label, row=i + 2) for i, label in enumerate(labels)]


def test_stratified_split_proportions_and_determinism():
    examples = _examples({"a": 500, "b": 300, "c": 200})
    train, valid, test = stratified_split(examples, valid_fraction=0.1, test_fraction=0.2, seed=1)
    assert (len(train), len(valid), len(test)) == (700, 100, 200)
    assert Counter(ex.label for ex in test) == Counter(a=100, b=60, c=40)
    assert Counter(ex.label for ex in valid) == Counter(a=50, b=30, c=20)
    assert sorted(ex.row for part in (train, valid, test) for ex in part) == [ex.row for ex in examples]
    assert [ex.row for ex in train] == sorted(ex.row for ex in train), "parts keep file order"
    assert stratified_split(examples, 0.1, 0.2, seed=1) == (train, valid, test)
    assert stratified_split(examples, 0.1, 0.2, seed=2)[2] != test


def test_split_with_tiny_classes_keeps_them_in_train():
    examples = _examples({"big": 40, "pair": 2, "single": 1})
    train, valid, test = stratified_split(examples, 0.1, 0.1, seed=13)
    assert len(train) + len(valid) + len(test) == 43
    assert "single" in {ex.label for ex in train}
    assert "pair" in {ex.label for ex in train}
    assert len(valid) == 4 and len(test) == 4


def test_split_multi_label_and_regression():
    multi = [LabeledExample(f"t{i}", ("x", "y") if i % 2 else ("y",), i) for i in range(20)]
    train, valid, test = stratified_split(multi, 0.2, 0.2)
    assert Counter(ex.label[0] for ex in test) == Counter(x=2, y=2)
    regression = [LabeledExample(f"t{i}", float(i), i) for i in range(50)]
    train, valid, test = stratified_split(regression, 0.1, 0.1, seed=5)
    assert (len(train), len(valid), len(test)) == (40, 5, 5)
    assert stratified_split(regression, 0.1, 0.1, seed=5) == (train, valid, test)


def test_split_rejects_bad_fractions():
    with pytest.raises(UserInputError, match="sum must be below 1"):
        stratified_split(_examples({"a": 10}), 0.5, 0.5)
    with pytest.raises(UserInputError, match="test fraction"):
        stratified_split(_examples({"a": 10}), 0.1, -0.1)


# -- real data ----------------------------------------------------------------------------
def test_bbc_news():
    data = read_labeled(shared_corpus("bbc_news.csv"))
    assert len(data) == 2225 and data.skipped == {}
    counts = data.label_counts()
    assert counts == Counter(business=510, entertainment=386, politics=417, sports=511, tech=401)
    train, valid, test = stratified_split(data)
    assert (len(valid), len(test)) == (222, 222)
    for part in (valid, test):
        shares = Counter(ex.label for ex in part)
        for label, n in counts.items():
            assert abs(shares[label] - n / 10) <= 1
    check_labels(test, build_label_map(train), "bbc_news.csv")


def test_default_holdout_keeps_forty_test_rows_of_a_small_file():
    """No fraction given: 10% each, but at least 40 test / 20 validation rows while that is
    at most 20% of the file; given fractions are used as they are."""
    from nlpft.data.labeled import default_fractions

    assert default_fractions(2225, None, None) == (0.1, 0.1)
    assert default_fractions(200, None, None) == (0.1, 0.2)
    assert default_fractions(100, None, None) == (0.2, 0.2)
    assert default_fractions(60, None, None) == (0.2, 0.2)  # capped: a tiny file keeps 60% to train on
    assert default_fractions(200, 0.05, 0.3) == (0.05, 0.3)
