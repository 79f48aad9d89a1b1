import json
from collections import Counter

import pytest
from tokenizers import Tokenizer

from nlpft.errors import UserInputError
from nlpft.tokenization import WordTokenizer, select_vocabulary

SAMPLES = [
    "Hello, World! It's 2026 — naïve café; don't 'quoted' ’tis o’clock ''x''",
    "ＦＵＬＬＷＩＤＴＨ letters, ß and İstanbul; e-mail: a.b@c.d (x_y) 3.14 1,000",
    "  leading and trailing spaces  \t tabs\tand\u00a0nbsp ",
    "Ελληνικά κείμενα και русский текст, 中文字符 and emoji 🙂 mixed",
    "quotes “like” ‘these’ and rock'n'roll, 'tis the o'clock '",
    "",
]


@pytest.mark.parametrize("lowercase", [True, False])
def test_fast_path_matches_tokenizers_pipeline(lowercase, lee_path):
    """words() takes a compiled-regex shortcut; it must split exactly like the Rust pipeline."""
    tok = WordTokenizer.untrained(lowercase=lowercase)
    assert tok._fast_split is not None
    backend = tok.backend
    lines = SAMPLES + lee_path.read_text(encoding="utf-8").splitlines()[:300]
    for line in lines:
        slow = [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(line))]
        assert tok.words(line) == slow, line


def test_words_examples():
    tok = WordTokenizer.untrained()
    assert tok.words("The CAT's toy -- isn't 'it' great?") == ["the", "cat's", "toy", "isn't", "it", "great"]
    assert WordTokenizer.untrained(lowercase=False).words("Mr. Darcy") == ["Mr", "Darcy"]


def test_encode_decode_and_special_ids():
    tok = WordTokenizer.from_vocabulary(["the", "cat", "sat"])
    assert tok.special_tokens == ["[PAD]", "[UNK]"]
    assert tok.vocab_size == 5
    assert tok.encode("The cat sat on") == [2, 3, 4, tok.unk_id]
    assert tok.encode_batch(["the cat", "sat"]) == [[2, 3], [4]]
    assert tok.decode([2, 3, 0]) == "the cat"
    assert tok.words_in_vocab() == ["the", "cat", "sat"]


def test_save_load_roundtrip_and_stock_tokenizers(tmp_path):
    tok = WordTokenizer.from_vocabulary(["alpha", "beta"], lowercase=False)
    tok.save(tmp_path)
    path = tmp_path / "tokenizer.json"
    assert json.loads(path.read_text())["model"]["type"] == "WordLevel"
    again = WordTokenizer.load(tmp_path)
    assert again.words_in_vocab() == ["alpha", "beta"]
    assert again.lowercase is False and again._fast_split is not None
    # stock tokenizers reads the same file, no nlpft needed
    stock = Tokenizer.from_file(str(path))
    assert stock.encode("alpha beta gamma").ids == again.encode("alpha beta gamma")


def test_non_canonical_pipeline_uses_tokenizers(tmp_path):
    from tokenizers import models, pre_tokenizers

    raw = Tokenizer(models.WordLevel({"[UNK]": 0, "a-b": 1}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.save(str(tmp_path / "tokenizer.json"))
    tok = WordTokenizer.load(tmp_path / "tokenizer.json")
    assert tok._fast_split is None
    assert tok.words("a-b c") == ["a-b", "c"]


def test_load_errors(tmp_path):
    with pytest.raises(UserInputError, match="no tokenizer file"):
        WordTokenizer.load(tmp_path / "missing.json")
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(UserInputError, match="not a valid tokenizer.json"):
        WordTokenizer.load(bad)


def test_duplicate_vocabulary_rejected():
    with pytest.raises(ValueError):
        WordTokenizer.from_vocabulary(["a", "a"])


def test_select_vocabulary_order_and_limits():
    counts = Counter({"b": 5, "a": 5, "c": 9, "d": 1})
    assert select_vocabulary(counts, min_count=2) == ["c", "a", "b"]
    assert select_vocabulary(counts, min_count=1, max_vocab=2) == ["c", "a"]
    assert select_vocabulary(counts, min_count=10) == []
