import bz2
import gzip

import pytest

from nlpft.data.corpus import TextCorpus
from nlpft.data.registry import load_registry, resolve_corpus
from nlpft.errors import UserInputError

LINES = ["first line", "second line with ünïcode", "", "fourth"]


def _write(path, lines=LINES):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_file_gzip_bzip2_and_directory_read_the_same(tmp_path):
    plain = _write(tmp_path / "a.txt")
    gz = tmp_path / "a.txt.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    bz = tmp_path / "a.txt.bz2"
    bz.write_bytes(bz2.compress(plain.read_bytes()))
    for path in (plain, gz, bz):
        assert list(TextCorpus(path)) == LINES
    folder = tmp_path / "dir"
    (folder / "sub").mkdir(parents=True)
    _write(folder / "b.txt", ["from b"])
    _write(folder / "sub" / "c.txt", ["from c"])
    _write(folder / ".hidden", ["never read"])
    corpus = TextCorpus(folder)
    assert list(corpus) == ["from b", "from c"]
    assert list(corpus) == ["from b", "from c"], "a corpus is re-iterable"


def test_several_paths_chain(tmp_path):
    a = _write(tmp_path / "a.txt", ["a"])
    b = _write(tmp_path / "b.txt", ["b"])
    assert list(TextCorpus([a, b])) == ["a", "b"]


def test_batches(tmp_path):
    path = _write(tmp_path / "n.txt", [str(i) for i in range(10)])
    batches = list(TextCorpus(path).batches(4))
    assert [len(b) for b in batches] == [4, 4, 2]


def test_missing_path(tmp_path):
    with pytest.raises(UserInputError, match="no such file"):
        TextCorpus(tmp_path / "nope.txt").validate()


def test_binary_file_rejected(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"\x7fELF\x00\x01\x02" * 100)
    with pytest.raises(UserInputError, match="binary"):
        TextCorpus(path).validate()


def test_non_utf8_names_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("ok line\nanother\ncaf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(UserInputError, match=r"line 3: not UTF-8"):
        TextCorpus(path).validate()


def test_non_utf8_late_in_file_found_while_streaming(tmp_path):
    path = tmp_path / "late.txt"
    path.write_bytes(b"good line\n" * 20000 + b"bad \xff byte\n")
    corpus = TextCorpus(path)
    corpus.validate()  # the sniffed head is fine
    with pytest.raises(UserInputError, match=r"line 20001: not UTF-8"):
        list(corpus)


def test_empty_corpus(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n\n   \n")
    with pytest.raises(UserInputError, match="empty"):
        TextCorpus(path).validate()
    with pytest.raises(UserInputError, match="holds no files"):
        (tmp_path / "emptydir").mkdir()
        TextCorpus(tmp_path / "emptydir").validate()


def test_registry_entries_and_names():
    registry = load_registry()
    assert {"lee", "austen", "kjv", "text17m"} <= set(registry)
    for entry in registry.values():
        assert len(entry.sha256) == 64 and entry.licence and entry.obtain
    lee = registry["lee"]
    assert lee.path() is not None, "gensim's test corpora are always installed"
    assert lee.verify()
    corpus = resolve_corpus("lee")
    assert sum(1 for _ in corpus) > 200


def test_unknown_corpus_name():
    with pytest.raises(UserInputError, match="not a path and not a known corpus"):
        resolve_corpus("no-such-corpus")
