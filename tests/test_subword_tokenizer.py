"""train_subword_tokenizer: GPT-2 style byte-level BPE and BERT style WordPiece."""

from __future__ import annotations

import pytest

from nlpft.data.corpus import TextCorpus
from nlpft.errors import UserInputError
from nlpft.tokenization.subword import ENDOFTEXT, train_subword_tokenizer

# punctuation, spacing transformers' clean-up would change, tabs, blank lines, non-ASCII
ROUND_TRIP = (
    "The cat sleeps in the barn. A dog , doesn't it ?\n"
    "\n"
    "  Indented\tline with  double  spaces -- naïve café, 日本語 🙂!\n"
    "trailing space \n"
)


@pytest.fixture
def corpus(small_corpus):
    return TextCorpus(small_corpus)


@pytest.fixture
def bpe(corpus):
    return train_subword_tokenizer(corpus, "byte-bpe", 400)


@pytest.fixture
def wordpiece(corpus):
    return train_subword_tokenizer(corpus, "wordpiece", 150)


def test_byte_bpe_is_gpt2_like(bpe):
    assert len(bpe) <= 400
    assert bpe.convert_tokens_to_ids(ENDOFTEXT) == 0
    assert bpe.bos_token == bpe.eos_token == bpe.unk_token == ENDOFTEXT
    assert bpe.pad_token is None and bpe.pad_token_id is None
    assert bpe.model_max_length == 512
    vocab = bpe.get_vocab()
    assert "Ċ" in vocab, "lines are trained with their newline"
    assert "Ġthe" in vocab, "merges were learnt"
    # GPT-2 adds no special tokens and passes no token_type_ids to the model
    assert bpe.encode("the cat") == bpe.encode("the cat", add_special_tokens=False)
    assert set(bpe("the cat")) == {"input_ids", "attention_mask"}


def test_byte_bpe_round_trip_is_exact(bpe):
    ids = bpe.encode(ROUND_TRIP)
    assert bpe.unk_token_id not in ids
    assert bpe.decode(ids) == ROUND_TRIP
    assert "Ċ" in bpe.convert_ids_to_tokens(ids)


def test_byte_bpe_lowercase_option(corpus):
    tok = train_subword_tokenizer(corpus, "byte-bpe", 400, lowercase=True)
    assert tok.encode("The CAT") == tok.encode("the cat")
    assert tok.decode(tok.encode("The CAT")) == "the cat"


def test_wordpiece_is_bert_like(wordpiece):
    assert len(wordpiece) <= 150
    assert wordpiece.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert (wordpiece.pad_token_id, wordpiece.unk_token_id, wordpiece.cls_token_id,
            wordpiece.sep_token_id, wordpiece.mask_token_id) == (0, 1, 2, 3, 4)
    ids = wordpiece.encode("The CAT Sleeps.", add_special_tokens=True)
    assert ids[0] == 2 and ids[-1] == 3
    assert ids == wordpiece.encode("the cat sleeps.")
    assert wordpiece.decode(ids, skip_special_tokens=True) == "the cat sleeps."
    assert wordpiece.encode("the cat", add_special_tokens=False)[0] not in (2, 3)
    # sentence pairs: [CLS] A [SEP] B [SEP], token types 0 then 1
    pair = wordpiece("the cat", "the dog")
    assert pair["input_ids"][0] == 2 and pair["input_ids"].count(3) == 2
    assert pair["token_type_ids"][-1] == 1 and pair["token_type_ids"][0] == 0
    # accents are stripped along with the case; unseen characters map to [UNK]
    assert wordpiece.tokenize("Cät") == wordpiece.tokenize("cat")
    assert wordpiece.encode("ж", add_special_tokens=False) == [1]
    assert any(t.startswith("##") for t in wordpiece.get_vocab())


def test_wordpiece_without_lowercasing(corpus):
    tok = train_subword_tokenizer(corpus, "wordpiece", 150, lowercase=False)
    assert "T" in tok.get_vocab()
    assert tok.encode("The") != tok.encode("the")


@pytest.mark.parametrize("kind", ["byte-bpe", "wordpiece"])
def test_save_pretrained_loads_back_with_auto_tokenizer(kind, corpus, tmp_path):
    from transformers import AutoTokenizer, BertConfig, GPT2Config

    # lowercase=True for byte-bpe: a non-default pipeline must survive the reload too
    tok = train_subword_tokenizer(corpus, kind, 300 if kind == "byte-bpe" else 120,
                                  lowercase=True if kind == "byte-bpe" else None, model_max_length=128)
    texts = [ROUND_TRIP, "The COW eats near the yard, doesn't it?", "unseen words: zebra Ωmega", ""]
    for folder, config in (("tok", None),
                           ("model", GPT2Config if kind == "byte-bpe" else BertConfig)):
        out = tmp_path / folder
        tok.save_pretrained(str(out))
        if config is not None:  # the pretrain command saves the model next to it
            config(vocab_size=len(tok), bos_token_id=0, eos_token_id=0, pad_token_id=0).save_pretrained(str(out))
        loaded = AutoTokenizer.from_pretrained(str(out))
        assert loaded.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()
        for text in texts:
            assert loaded.encode(text) == tok.encode(text)
            assert loaded(text) == tok(text)
            assert loaded.decode(loaded.encode(text)) == tok.decode(tok.encode(text))
        assert loaded.special_tokens_map == tok.special_tokens_map
        assert loaded.all_special_ids == tok.all_special_ids
        for name in ("bos", "eos", "unk", "pad", "cls", "sep", "mask"):
            assert getattr(loaded, f"{name}_token_id") == getattr(tok, f"{name}_token_id"), name
        assert loaded.model_max_length == 128
        assert loaded.model_input_names == tok.model_input_names
        assert len(loaded) == len(tok)
        if kind == "wordpiece":
            assert loaded("a b", "c") == tok("a b", "c")
        else:
            assert loaded.decode(loaded.encode("The CAT\n")) == "the cat\n"


@pytest.mark.parametrize("kind,vocab_size", [("byte-bpe", 1000), ("wordpiece", 2000)])
def test_training_is_deterministic(kind, vocab_size, lee_path):
    # the WordPiece trainer alone numbers '##' symbols in hash-map order: ids would differ
    corpus = TextCorpus(lee_path)
    first = train_subword_tokenizer(corpus, kind, vocab_size)
    for _ in range(2):
        again = train_subword_tokenizer(corpus, kind, vocab_size)
        assert again.get_vocab() == first.get_vocab()
        assert again.backend_tokenizer.to_str() == first.backend_tokenizer.to_str()
    assert len(first) == vocab_size


def test_list_of_lines_works_like_a_corpus(small_corpus, corpus):
    lines = small_corpus.read_text(encoding="utf-8").splitlines(keepends=True)
    for kind, size in (("byte-bpe", 400), ("wordpiece", 150)):
        from_list = train_subword_tokenizer(lines, kind, size)
        assert from_list.get_vocab() == train_subword_tokenizer(corpus, kind, size).get_vocab()


def test_errors(corpus, tmp_path):
    with pytest.raises(UserInputError, match="byte-bpe, wordpiece"):
        train_subword_tokenizer(corpus, "sentencepiece", 1000)
    with pytest.raises(UserInputError, match="at least 300"):
        train_subword_tokenizer(corpus, "byte-bpe", 299)
    with pytest.raises(UserInputError, match="at least 100"):
        train_subword_tokenizer(corpus, "wordpiece", 50)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\t\n", encoding="utf-8")
    for kind in ("byte-bpe", "wordpiece"):
        with pytest.raises(UserInputError, match=f"{blank}: the corpus has no text"):
            train_subword_tokenizer(TextCorpus(blank), kind, 1000)
        with pytest.raises(UserInputError, match="^the corpus has no text"):
            train_subword_tokenizer([], kind, 1000)
        with pytest.raises(TypeError, match="re-iterable"):
            train_subword_tokenizer(iter(["some text"]), kind, 1000)
    # more distinct characters than the vocabulary holds: say how many it needs
    many = [" ".join(chr(0x4E00 + i) + chr(0x4E00 + i) for i in range(j, j + 50)) for j in range(0, 300, 50)]
    with pytest.raises(UserInputError, match="use at least 305"):
        train_subword_tokenizer(many, "wordpiece", 200)


@pytest.mark.parametrize("kind", ["byte-bpe", "wordpiece"])
def test_wrapped_in_hf_tokenizer(kind, corpus):
    from nlpft.pretrained.tokenizer import HFTokenizer

    hf = train_subword_tokenizer(corpus, kind, 400 if kind == "byte-bpe" else 150)
    tok = HFTokenizer(hf)
    ids = tok.encode("The dog sleeps in the garden.")
    assert ids and all(isinstance(i, int) for i in ids)
    assert tok.vocab_size == len(hf)
    assert tok.max_length == 512
    assert tok.token_to_id(tok.id_to_token(ids[0])) == ids[0]
    if kind == "byte-bpe":
        assert tok.decode(ids) == "The dog sleeps in the garden."
        assert tok.special_tokens == [ENDOFTEXT]
        assert tok.pad_id is None and tok.unk_id == 0
    else:
        assert tok.decode(ids) == "the dog sleeps in the garden."
        assert set(tok.special_tokens) == {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
        assert tok.pad_id == 0 and tok.unk_id == 1
        assert tok.encode("the dog", add_special_tokens=True)[::len(tok.encode("the dog")) + 1] == [2, 3]
    assert tok.encode_batch(["the cat", "a dog sleeps"]) == [tok.encode("the cat"), tok.encode("a dog sleeps")]
