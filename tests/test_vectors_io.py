"""Round trips and refusal of malformed files for nlpft.embeddings.vectors_io."""

import struct

import numpy as np
import pytest
from gensim.models import KeyedVectors

from nlpft.embeddings.vectors_io import load_vectors, save_vectors
from nlpft.errors import UserInputError

WORDS = ["the", "café", "naïve", "東京", "x1", "Zebra"]


@pytest.fixture
def kv():
    rng = np.random.default_rng(0)
    vectors = rng.normal(scale=3.0, size=(len(WORDS), 7)).astype(np.float32)
    vectors[0, 0] = 1e-30  # tiny values must survive the text formats too
    out = KeyedVectors(vector_size=7)
    out.add_vectors(WORDS, vectors)
    return out


def assert_same(a: KeyedVectors, b: KeyedVectors):
    assert list(a.index_to_key) == list(b.index_to_key)
    np.testing.assert_array_equal(a.vectors, b.vectors)  # text is written exactly for float32


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def binary_file(rows, header=None, dim=2, newline=b"\n"):
    header = header if header is not None else f"{len(rows)} {dim}"
    body = b"".join(w + b" " + struct.pack(f"<{dim}f", *v) + newline for w, v in rows)
    return header.encode() + b"\n" + body


# --------------------------------------------------------------------------- round trip


def test_round_trip_all_formats(kv, tmp_path):
    written = save_vectors(kv, tmp_path / "out")
    assert {p.name for p in written.values()} == {"vectors.bin", "vectors.txt", "vectors.glove.txt"}
    for path in written.values():
        assert_same(kv, load_vectors(path))
    assert not written["glove"].read_text(encoding="utf-8").startswith("6 7")


def test_gensim_reads_word2vec_files(kv, tmp_path):
    written = save_vectors(kv, tmp_path, formats=["bin", "txt"])
    assert_same(kv, KeyedVectors.load_word2vec_format(written["bin"], binary=True))
    assert_same(kv, KeyedVectors.load_word2vec_format(written["txt"], binary=False))


def test_reads_gensim_written_files(kv, tmp_path):
    kv.save_word2vec_format(tmp_path / "g.bin", binary=True)  # no newline between rows
    kv.save_word2vec_format(tmp_path / "g.txt", binary=False)
    assert_same(kv, load_vectors(tmp_path / "g.bin"))
    assert_same(kv, load_vectors(tmp_path / "g.txt"))


def test_directory_prefers_binary(kv, tmp_path):
    save_vectors(kv, tmp_path, formats=["bin"])
    write(tmp_path, "vectors.txt", "1 2\nother 1 2\n")
    assert_same(kv, load_vectors(tmp_path))
    (tmp_path / "vectors.bin").unlink()
    assert load_vectors(tmp_path).index_to_key == ["other"]


def test_directory_with_only_glove(kv, tmp_path):
    save_vectors(kv, tmp_path, formats=["glove"])
    assert_same(kv, load_vectors(tmp_path))


def test_text_variants_tolerated(tmp_path):
    # C word2vec writes a trailing space; Windows files have CRLF; a BOM may lead.
    path = write(tmp_path, "v.txt", "\ufeff2 3\r\na 1 2 3 \r\nb 4 5 6\r\n\r\n")
    kv = load_vectors(path)
    assert kv.index_to_key == ["a", "b"]
    np.testing.assert_array_equal(kv["b"], [4, 5, 6])


def test_glove_with_one_dimension_and_tiny_binary(tmp_path):
    assert load_vectors(write(tmp_path, "g.txt", "a 0.5\nb -1\n")).vectors.shape == (2, 1)
    data = binary_file([(b"a", [1.0, 2.0]), (b"b", [3.0, 4.0])], newline=b"")
    kv = load_vectors(write(tmp_path, "tiny.bin", data))
    np.testing.assert_array_equal(kv["b"], [3, 4])


def test_save_refuses_words_with_spaces(tmp_path):
    kv = KeyedVectors(vector_size=2)
    kv.add_vectors(["new york"], np.ones((1, 2), np.float32))
    with pytest.raises(UserInputError, match="whitespace"):
        save_vectors(kv, tmp_path)


# -------------------------------------------------------------------------- bad input

TEXT_CASES = {
    "header_zero": ("0 3\na 1 2 3\n", r"line 1: .*two positive integers"),
    "header_negative": ("2 -3\na 1 2 3\n", r"line 1: .*two positive integers"),
    "header_float": ("2 3.5\na 1 2 3\n", r"line 1: .*two positive integers"),
    "header_one_token": ("42\na 1 2 3\n", r"line 1: "),
    "truncated": ("3 2\na 1 2\nb 3 4\n", r"line 4: .*after 2 vectors .*promises 3.*truncated"),
    "short_row": ("3 3\na 1 2 3\nb 1 2\nc 1 2 3\n", r"line 3: expected .*3 values, found 2"),
    "long_row_glove": ("a 1 2\nb 1 2\nc 1 2 3\n", r"line 3: expected .*2 values, found 3"),
    "word_only": ("2 2\na 1 2\nb\n", r"line 3: .*found 0"),
    "bad_value": ("2 2\na 1 2\nb 1 x2\n", r"line 3: value 'x2' in column 3"),
    "nan": ("3 2\na 1 2\nb 1 2\nc nan 2\n", r"line 4: .*NaN or Inf"),
    "inf_glove": ("a 1 2\nb -inf 2\n", r"line 2: .*NaN or Inf"),
    "duplicate": ("3 2\na 1 2\nb 1 2\na 3 4\n", r"line 4: word 'a' appears again \(first at .*line 2\)"),
    "empty": ("", r"line 1: file is empty"),
    "blank": ("\n\n  \n", r"empty"),
    "header_only": ("2 3\n", r"line 2: .*after 0 vectors"),
}


@pytest.mark.parametrize("case", sorted(TEXT_CASES))
def test_malformed_text_refused(case, tmp_path):
    content, pattern = TEXT_CASES[case]
    path = write(tmp_path, "v.txt", content)
    with pytest.raises(UserInputError, match=pattern) as info:
        load_vectors(path)
    assert str(path) in str(info.value)


def test_non_utf8_word_in_text(tmp_path):
    path = write(tmp_path, "v.txt", b"2 2\na 1 2\n\xff\xfe 3 4\n")
    with pytest.raises(UserInputError, match=r"line 3: .*not valid UTF-8"):
        load_vectors(path)


def test_error_in_later_chunk_reports_right_line(tmp_path, monkeypatch):
    import nlpft.embeddings.vectors_io as vio

    monkeypatch.setattr(vio, "_CHUNK_BYTES", 64)  # many chunks, so line counting crosses them
    rows = [f"w{i} {i} {i}\n" for i in range(200)]
    rows[150] = "w150 1 2 3\n"
    path = write(tmp_path, "v.txt", "200 2\n" + "".join(rows))
    with pytest.raises(UserInputError, match=r"line 152: "):
        load_vectors(path)


def test_binary_truncated_mid_vector(tmp_path):
    data = binary_file([(b"a", [1, 2]), (b"b", [3, 4])])[:-5]
    with pytest.raises(UserInputError, match=r"byte offset \d+: .*middle of the vector of row 2"):
        load_vectors(write(tmp_path, "v.bin", data))


def test_binary_fewer_rows_than_header(tmp_path):
    data = binary_file([(b"a", [1, 2]), (b"b", [3, 4])], header="3 2")
    with pytest.raises(UserInputError, match=r"byte offset \d+: .*after 2 vectors .*promises 3"):
        load_vectors(write(tmp_path, "v.bin", data))


def test_binary_non_utf8_word(tmp_path):
    data = binary_file([(b"a", [1, 2]), (b"\xff\xfeb", [3, 4])])
    with pytest.raises(UserInputError, match=r"byte offset 15: word of row 2 .*not valid UTF-8"):
        load_vectors(write(tmp_path, "v.bin", data))


def test_binary_nan_and_duplicate(tmp_path):
    nan = binary_file([(b"a", [1, 2]), (b"b", [float("nan"), 4])])
    with pytest.raises(UserInputError, match=r"row 2\): vector contains NaN"):
        load_vectors(write(tmp_path, "nan.bin", nan))
    dup = binary_file([(b"a", [1, 2]), (b"a", [3, 4])])
    with pytest.raises(UserInputError, match=r"row 2\): word 'a' appears again"):
        load_vectors(write(tmp_path, "dup.bin", dup))


def test_binary_data_past_the_header_is_ignored_as_gensim_ignores_it(tmp_path, capsys):
    path = write(tmp_path, "v.bin", binary_file([(b"a", [1, 2]), (b"b", [3, 4])], header="1 2"))
    kv = load_vectors(path)
    assert list(kv.index_to_key) == list(KeyedVectors.load_word2vec_format(path, binary=True).index_to_key) == ["a"]
    assert f"{path}: ignored 11 bytes from byte offset 15, after the 1 vectors" in capsys.readouterr().err


# the three layouts GloVe's C tools and the Stanford downloads come in, each read as gensim reads it
GLOVE_C_WITH_HEADER = "2 3\nthe 0.1 0.2 0.3\ncat -0.4 0.5 0.6\n<unk> -0.15 0.35 0.45\n"  # -write-header 1
GLOVE_C_WITHOUT_HEADER = "the 0.1 0.2 0.3\ncat -0.4 0.5 0.6\n<unk> -0.15 0.35 0.45\n"
STANFORD_GLOVE = "the 0.418 0.24968 -0.41242\n, 0.013441 0.23682 -0.16899\n. 0.15164 0.30177 -0.16763\n"


def test_glove_c_header_that_leaves_out_its_unk_row(tmp_path, capsys):
    path = write(tmp_path, "vectors.txt", GLOVE_C_WITH_HEADER)
    kv = load_vectors(path)
    reference = KeyedVectors.load_word2vec_format(path)
    assert list(kv.index_to_key) == list(reference.index_to_key) == ["the", "cat"]
    np.testing.assert_array_equal(kv.vectors, reference.vectors)
    assert f"{path}: ignored 1 row after the 2 vectors the header on line 1 promises" in capsys.readouterr().err


@pytest.mark.parametrize("name, content", [("vectors.txt", GLOVE_C_WITHOUT_HEADER),
                                           ("glove.6B.3d.txt", STANFORD_GLOVE)])
def test_headerless_glove_layouts(tmp_path, capsys, name, content):
    path = write(tmp_path, name, content)
    kv = load_vectors(path)
    reference = KeyedVectors.load_word2vec_format(path, no_header=True)
    assert list(kv.index_to_key) == list(reference.index_to_key) and len(kv) == 3
    np.testing.assert_array_equal(kv.vectors, reference.vectors)
    assert capsys.readouterr().err == ""


def test_rows_past_the_header_are_not_parsed(tmp_path):
    """gensim stops at the header's count: a malformed row after it does not fail the file."""
    kv = load_vectors(write(tmp_path, "v.txt", "1 2\na 1 2\nthis row is not a vector\n"))
    assert list(kv.index_to_key) == ["a"]


def test_missing_path(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        load_vectors(tmp_path / "nope.txt")


def test_directory_without_vectors(tmp_path):
    with pytest.raises(UserInputError, match="vectors.bin"):
        load_vectors(tmp_path)


def test_gzip_refused(tmp_path):
    with pytest.raises(UserInputError, match="gunzip"):
        load_vectors(write(tmp_path, "v.txt.gz", b"\x1f\x8b\x08\x00rest"))


# ----------------------------------------------------------------------------- pickle


def test_pickled_model_refused_unless_allowed(kv, tmp_path):
    path = tmp_path / "vectors.model"
    kv.save(str(path))
    with pytest.raises(UserInputError, match=r"never unpickles.*save_word2vec_format"):
        load_vectors(path)
    assert_same(kv, load_vectors(path, allow_pickle=True))


def test_pickle_magic_refused_whatever_the_name(kv, tmp_path):
    path = tmp_path / "vectors.txt"
    kv.save(str(path))  # a pickle under a text name
    assert path.read_bytes()[:1] == b"\x80"
    for allow in (False, True):
        with pytest.raises(UserInputError, match="pickle"):
            load_vectors(path, allow_pickle=allow)
