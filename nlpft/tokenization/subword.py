"""Sub-word tokenizers trained on the user's corpus, for pretraining transformers.

`train_subword_tokenizer(corpus, kind, vocab_size)` streams a corpus through a
`tokenizers` trainer and returns a `transformers.PreTrainedTokenizerFast` that
`save_pretrained` writes and stock `AutoTokenizer.from_pretrained` loads back unchanged.
Two kinds, one per model family:

``byte-bpe`` (GPT-2 style, for causal LMs)
    Byte-level BPE: text is split GPT-2's way (ByteLevel pre-tokenizer, no prefix space)
    and mapped to bytes, so every string encodes without an unknown token and decodes
    back exactly (lossless, case and whitespace kept; no normalisation unless
    `lowercase=True`). One special token, ``<|endoftext|>`` (id 0), serves as bos, eos
    and unk, as in GPT-2; put it between documents.

    Newlines: a corpus is read line by line and the line breaks are dropped, but text a
    GPT-2 style model reads and writes keeps its newlines. The trainer therefore sees
    every line with its "\\n" put back (blank lines included, so paragraph breaks count),
    which puts "\\n" (``Ċ``) and runs of it in the vocabulary. Callers encoding a
    line-based corpus for pretraining should likewise encode ``line + "\\n"``.

    No pad token, as in GPT-2: a causal LM never attends to padding, so which id pads is
    irrelevant as long as the attention mask and the labels (-100) hide it. A caller that
    batches sets ``tokenizer.pad_token = tokenizer.eos_token`` first. Its
    `model_input_names` carry no ``token_type_ids``: GPT-2 would add them to its input
    embeddings.

``wordpiece`` (BERT style, for masked LMs and classifiers)
    BertNormalizer (lowercase and strip accents by default, CJK characters split into
    single-character words, control characters dropped), BertPreTokenizer (whitespace and
    punctuation), WordPiece with the ``##`` continuation prefix, and BERT's post-processor:
    ``[CLS] A [SEP]`` and ``[CLS] A [SEP] B [SEP]`` with token type ids 0/1. Special tokens
    ``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2, ``[SEP]`` 3, ``[MASK]`` 4.

Why `PreTrainedTokenizerFast` and not `GPT2TokenizerFast`/`BertTokenizerFast`: in
transformers 5 the model-specific classes rebuild their normaliser and pre-tokenizer from
their own constructor arguments when loaded and keep only the vocabulary from
`tokenizer.json`, so any deviation (e.g. `lowercase=True` for byte-bpe) would be lost on
reload. The generic class (an alias of `TokenizersBackend` there) saves and loads the
whole `tokenizer.json` pipeline verbatim, and AutoTokenizer picks it even when the
directory also holds a GPT-2 or BERT `config.json`.

Determinism: the same corpus and arguments give the same vocabulary and ids. Byte-level
BPE is deterministic as trained. The WordPiece trainer numbers the ``##`` forms of the
characters in hash-map order, which changes ids and, through tie-breaking between equally
frequent merges, even which tokens are learnt. So WordPiece training takes two passes
over the corpus: the first (no merges, cheap) finds the character alphabet and its
``##`` forms, the second trains with them placed at fixed, sorted ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from nlpft.errors import UserInputError

KINDS = ("byte-bpe", "wordpiece")

#: GPT-2's one special token: bos, eos and unk at once
ENDOFTEXT = "<|endoftext|>"

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
WORDPIECE_SPECIALS = (PAD, UNK, CLS, SEP, MASK)
WORDPIECE_PREFIX = "##"

#: smallest vocabulary accepted: byte-bpe needs its 256 byte symbols and <|endoftext|>
#: plus room for merges; wordpiece needs 5 specials and a Latin alphabet with ## forms
MIN_VOCAB_SIZE = {"byte-bpe": 300, "wordpiece": 100}

#: lines handed to the Rust trainer per call, and the most characters in such a batch (a
#: corpus line is at most `nlpft.data.corpus.MAX_LINE_CHARS` characters; longer ones come
#: in pieces)
_LINES_PER_BATCH = 1000
_CHARS_PER_BATCH = 1 << 22


def train_subword_tokenizer(corpus, kind: str, vocab_size: int, *, min_frequency: int = 2,
                            lowercase: bool | None = None, model_max_length: int = 512,
                            show_progress: bool = False):
    """Train a `kind` tokenizer ("byte-bpe" or "wordpiece") with at most `vocab_size`
    ids on `corpus` and return it as a `transformers.PreTrainedTokenizerFast`.

    `corpus` is any re-iterable of lines (a `TextCorpus`, a list of str); it is streamed
    in batches, never loaded whole. `min_frequency`: a merge must occur this often to be
    learnt. `lowercase`: None takes the kind's default (byte-bpe False, wordpiece True;
    wordpiece strips accents exactly when it lowercases). `model_max_length` is recorded
    on the tokenizer for truncation.

    byte-bpe has no pad token: set ``pad_token = eos_token`` before padding batches.
    Raises `UserInputError` for an unknown kind, a too small vocabulary or a corpus
    without text.
    """
    if kind not in KINDS:
        raise UserInputError(f"unknown tokenizer kind {kind!r}; choose one of: {', '.join(KINDS)}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB_SIZE[kind]:
        raise UserInputError(
            f"vocab_size {vocab_size!r} is too small for {kind}; use at least {MIN_VOCAB_SIZE[kind]} "
            "(typical sizes: 8000 to 50000)"
        )
    if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 1:
        raise UserInputError(f"min_frequency must be a positive integer, not {min_frequency!r}")
    if iter(corpus) is corpus:
        raise TypeError("corpus must be re-iterable (a TextCorpus or a list of lines), not an iterator")

    if kind == "byte-bpe":
        backend = _train_byte_bpe(corpus, vocab_size, min_frequency, bool(lowercase), show_progress)
    else:
        backend = _train_wordpiece(corpus, vocab_size, min_frequency,
                                   True if lowercase is None else bool(lowercase), show_progress)
    return _to_transformers(backend, kind, model_max_length)


# -- training ---------------------------------------------------------------------------
class _LineFeed:
    """Iterates `corpus` in batches for `train_from_iterator`, counting non-blank lines."""

    def __init__(self, corpus: Iterable[str], keep_newlines: bool):
        self.corpus = corpus
        self.keep_newlines = keep_newlines
        self.text_lines = 0

    def __iter__(self) -> Iterator[list[str]]:
        batch: list[str] = []
        chars = 0
        for line in self.corpus:
            line = line.rstrip("\n")
            if line.strip():
                self.text_lines += 1
            elif not self.keep_newlines:
                continue  # nothing for BERT's pre-tokenizer to see
            batch.append(line + "\n" if self.keep_newlines else line)
            chars += len(line)
            if len(batch) >= _LINES_PER_BATCH or chars >= _CHARS_PER_BATCH:
                yield batch
                batch, chars = [], 0
        if batch:
            yield batch


def _train(tokenizer: Tokenizer, trainer, corpus, keep_newlines: bool) -> None:
    feed = _LineFeed(corpus, keep_newlines)
    tokenizer.train_from_iterator(iter(feed), trainer=trainer)
    if feed.text_lines == 0:
        path = getattr(corpus, "path", None)
        where = f"{path}: " if path is not None else ""
        raise UserInputError(f"{where}the corpus has no text (no non-blank lines); "
                             "pass a corpus with text in it to train a tokenizer")


def _train_byte_bpe(corpus, vocab_size: int, min_frequency: int, lowercase: bool,
                    show_progress: bool) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    # as GPT-2's tokenizer.json: offsets only, never adds tokens
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[ENDOFTEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    _train(tok, trainer, corpus, keep_newlines=True)
    return tok


def _wordpiece_pipeline(vocab: dict[str, int], lowercase: bool) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(vocab, unk_token=UNK, continuing_subword_prefix=WORDPIECE_PREFIX))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=lowercase, lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix=WORDPIECE_PREFIX)
    return tok


def _wordpiece_trainer(vocab_size: int, min_frequency: int, special_tokens: list[str],
                       show_progress: bool):
    return trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=special_tokens,
        continuing_subword_prefix=WORDPIECE_PREFIX,
        show_progress=show_progress,
    )


def _train_wordpiece(corpus, vocab_size: int, min_frequency: int, lowercase: bool,
                     show_progress: bool) -> Tokenizer:
    specials = list(WORDPIECE_SPECIALS)
    # pass 1, no merges: the characters and the ## forms of those seen inside words
    probe = _wordpiece_pipeline({UNK: 0}, lowercase)
    _train(probe, _wordpiece_trainer(0, min_frequency, specials, False), corpus, keep_newlines=False)
    symbols = [t for t in probe.get_vocab(with_added_tokens=False) if t not in WORDPIECE_SPECIALS]
    chars = sorted(t for t in symbols if not t.startswith(WORDPIECE_PREFIX))
    continued = sorted(t for t in symbols if t.startswith(WORDPIECE_PREFIX))
    base = specials + chars + continued
    if len(base) > vocab_size:
        raise UserInputError(
            f"vocab_size {vocab_size} is too small for this corpus: its {len(chars)} distinct characters, "
            f"their {len(continued)} '##' forms and {len(specials)} special tokens alone need {len(base)}; "
            f"use at least {len(base)} (typical sizes: 8000 to 50000)"
        )

    # pass 2: the same symbols handed over as fixed leading ids, so the trainer's merge
    # order (ties are broken by id) no longer depends on hash-map order
    tok = _wordpiece_pipeline({UNK: 0}, lowercase)
    _train(tok, _wordpiece_trainer(vocab_size, min_frequency, base, show_progress), corpus,
           keep_newlines=False)
    vocab = tok.get_vocab(with_added_tokens=False)
    # the trainer registered every seed as a special added token; rebuild so that only the
    # five real special tokens are (the seeds stay ordinary vocabulary entries)
    out = _wordpiece_pipeline(vocab, lowercase)
    out.add_special_tokens(specials)
    out.post_processor = processors.TemplateProcessing(
        single=f"{CLS}:0 $A:0 {SEP}:0",
        pair=f"{CLS}:0 $A:0 {SEP}:0 $B:1 {SEP}:1",
        special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])],
    )
    return out


# -- transformers -------------------------------------------------------------------------
def _to_transformers(backend: Tokenizer, kind: str, model_max_length: int):
    from transformers import PreTrainedTokenizerFast

    common = {
        "tokenizer_object": backend,
        "model_max_length": model_max_length,
        # decoding must stay exact (byte-bpe); WordPiece's decoder does BERT's clean-up itself
        "clean_up_tokenization_spaces": False,
        "padding_side": "right",
        "truncation_side": "right",
    }
    if kind == "byte-bpe":
        return PreTrainedTokenizerFast(
            **common,
            bos_token=ENDOFTEXT, eos_token=ENDOFTEXT, unk_token=ENDOFTEXT,
            model_input_names=["input_ids", "attention_mask"],
        )
    return PreTrainedTokenizerFast(
        **common,
        pad_token=PAD, unk_token=UNK, cls_token=CLS, sep_token=SEP, mask_token=MASK,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
