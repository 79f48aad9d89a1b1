"""Bounded resources: long lines are read in pieces, `--max-memory` caps a whole run, sizes
a file claims are checked before they are allocated, huge texts are cut before they are
tokenized, and pipes/devices are refused with the true reason instead of hanging."""

from __future__ import annotations

import csv
import json
import os
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nlpft.cli.main import main
from nlpft.data.corpus import TextCorpus
from nlpft.errors import UserInputError

#: the stated bounds (nlpft.data.corpus.MAX_LINE_CHARS, nlpft.finetune.data.CHARS_PER_TOKEN)
MAX_LINE_CHARS = 1 << 17
CHARS_PER_TOKEN = 16


def test_the_stated_bounds_are_the_ones_in_force():
    from nlpft.data import corpus
    from nlpft.finetune import data

    assert corpus.MAX_LINE_CHARS == MAX_LINE_CHARS and data.CHARS_PER_TOKEN == CHARS_PER_TOKEN

SENTENCE = "It is a truth universally acknowledged, that a single man in possession of a good fortune. "


def one_line_corpus(path: Path, chars: int) -> Path:
    path.write_text((SENTENCE * (chars // len(SENTENCE) + 1))[:chars] + "\n", encoding="utf-8")
    return path


def run_nlpft(args: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nlpft", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"}, **kwargs)


def _no_output(out: Path) -> bool:
    return not out.exists() and not out.with_name(out.name + ".partial").exists()


# -- long lines ---------------------------------------------------------------------------
def test_a_long_line_comes_in_bounded_pieces_and_short_lines_are_untouched(tmp_path):
    long_line = (SENTENCE * (3 * MAX_LINE_CHARS // len(SENTENCE)))
    short = ["a first short line", "", "  spaces kept  ", "x" * (MAX_LINE_CHARS - 1)]
    path = tmp_path / "c.txt"
    path.write_text("\n".join([short[0], long_line, *short[1:]]) + "\n", encoding="utf-8")

    lines = list(TextCorpus(path))
    assert lines[0] == short[0] and lines[-3:] == short[1:]
    pieces = lines[1:-3]
    assert len(pieces) >= 3 and max(map(len, pieces)) <= MAX_LINE_CHARS
    assert " ".join(pieces) == long_line  # each cut is at a space, and drops just that space


def test_undecodable_byte_in_a_long_line_is_located(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine\n" + b"a" * (MAX_LINE_CHARS + 10) + b"\xff tail\n")
    with pytest.raises(UserInputError, match=rf"line 2: not UTF-8 \(byte 0xff at column {MAX_LINE_CHARS + 11}\)"):
        list(TextCorpus(path))


_TOKENIZE_AND_ENCODE = textwrap.dedent("""
    import sys
    from pathlib import Path
    from nlpft.data.corpus import TextCorpus
    from nlpft.data.token_ids import encode_splits, encode_whole
    from nlpft.pretrained.pretraining import SubwordLineEncoder
    from nlpft.tokenization.subword import train_subword_tokenizer

    corpus = TextCorpus(sys.argv[1])
    tokenizer = train_subword_tokenizer(corpus, "byte-bpe", 400)
    encoder = SubwordLineEncoder(tokenizer, keep_newlines=True)
    encode_whole(corpus, encoder, Path(sys.argv[2]) / "all.npy")
    encode_splits(corpus, encoder, Path(sys.argv[2]))
    # this process image's own peak (VmHWM, KiB); getrusage's maxrss would also count the
    # parent's size at fork, which Linux carries across exec
    print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
""")


def test_tokenizer_training_and_encoding_of_a_one_line_corpus_stay_small(tmp_path):
    """A 6 MB single-line corpus through what `pretrain` does before the model: training a
    byte-level BPE tokenizer and encoding. Whole, that line costs over 1.3 GB; in pieces
    the child stays near its import footprint."""
    corpus = one_line_corpus(tmp_path / "line.txt", 6_000_000)
    done = subprocess.run([sys.executable, "-c", _TOKENIZE_AND_ENCODE, str(corpus), str(tmp_path / "ids")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    peak_mib = int(done.stdout.split()[-1]) / 1024
    assert peak_mib < 700, f"peak RSS {peak_mib:.0f} MiB"
    splits = json.loads((tmp_path / "ids" / "splits.json").read_text())["splits"]
    assert all(s["tokens"] > 0 for s in splits.values())  # pieces are lines: all three splits get some


# -- --max-memory ---------------------------------------------------------------------------
def test_max_memory_below_the_start_footprint_is_refused_up_front(small_corpus, tmp_path, capsys):
    out = tmp_path / "lm"
    assert main(["lm", "train", "--corpus", str(small_corpus), "--out", str(out), "--max-memory", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "--max-memory 0.01 GiB" in err and "before reading any data" in err
    assert _no_output(out)


def test_max_memory_stops_a_run_that_grows_past_it(small_corpus, tmp_path):
    """The cap covers the whole run, not a table estimate: `pretrain` passes 300 MiB of
    private memory once transformers and the model are loaded, so a 0.25 GiB cap must stop
    it with exit 2, name the cap and the phase, and leave nothing behind."""
    out = tmp_path / "pre"
    done = run_nlpft(["pretrain", "--arch", "gpt2", "--corpus", str(small_corpus), "--out", str(out),
                      "--max-steps", "200", "--batch-size", "4", "--threads", "1", "--quiet",
                      "--max-memory", "0.25"], timeout=300)
    assert done.returncode == 2, done.stderr
    assert "more than --max-memory 0.25 GiB" in done.stderr and " while " in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert _no_output(out)


def test_memory_cap_interrupts_python_code_that_keeps_allocating():
    script = textwrap.dedent("""
        from nlpft.errors import ResourceLimitError
        from nlpft.training.memory import GIB, MemoryCap, private_memory_bytes, set_phase
        held = []
        try:
            with MemoryCap((private_memory_bytes() + (64 << 20)) / GIB):
                set_phase("filling a list")
                for _ in range(4000):  # 4 GB if nothing stopped it
                    held.append(bytearray(1 << 20))
        except ResourceLimitError as exc:
            print(len(held), exc)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    filled, message = done.stdout.split(" ", 1)
    assert 64 <= int(filled) < 1000 and "while filling a list" in message


# -- claimed sizes ------------------------------------------------------------------------
def test_vectors_header_claiming_a_trillion_words_is_an_input_error(tmp_path, capsys):
    rows = b"".join(w + b" " + struct.pack("<2f", 1.0, 2.0) + b"\n" for w in (b"a", b"b"))
    path = tmp_path / "v.bin"
    path.write_bytes(b"1000000000000 2\n" + rows)
    assert main(["embed", "neighbors", "--vectors", str(path), "a"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "promises 1000000000000" in err


def test_vectors_header_claiming_a_huge_dimension_is_an_input_error(tmp_path):
    path = tmp_path / "v.bin"
    path.write_bytes(b"2 1000000000000\n" + b"a " + b"\x00" * 64)
    with pytest.raises(UserInputError, match=str(path)):
        from nlpft.embeddings.vectors_io import load_vectors

        load_vectors(path)


def test_lm_config_claiming_a_trillion_word_vocabulary_is_an_input_error(tmp_path):
    from nlpft.lm.model import RNNLanguageModel, RNNLMConfig

    model_dir = tmp_path / "lm"
    RNNLanguageModel(RNNLMConfig(vocab_size=50, embedding_dim=8, hidden_dim=8)).save_pretrained(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "vocab_size": 10**12}))
    with pytest.raises(UserInputError, match=r"config\.json implies \(1000000000000"):
        RNNLanguageModel.from_pretrained(model_dir)


def test_word_classifier_config_claiming_a_trillion_word_vocabulary_is_refused_before_allocating(tmp_path):
    from nlpft.finetune.word_models import WordClassifier, WordClassifierConfig

    model_dir = tmp_path / "clf"
    WordClassifier(WordClassifierConfig(kind="static", num_labels=2, vocab_size=30, embedding_dim=8,
                                        head_hidden=4)).save_pretrained(model_dir)
    config = json.loads((model_dir / "classifier.json").read_text())
    (model_dir / "classifier.json").write_text(json.dumps({**config, "vocab_size": 10**12}))
    with pytest.raises(UserInputError, match=r"classifier\.json: implies embedding\.weight of shape \(1000000000000, 8\)"):
        WordClassifier.from_pretrained(model_dir)


def test_hf_config_claiming_a_trillion_word_vocabulary_is_an_input_error(tmp_path):
    from nlpft.pretrained.loading import load_model

    model_dir = tmp_path / "bert"
    _tiny_bert(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "vocab_size": 10**12}))
    with pytest.raises(UserInputError, match=r"config\.json: vocab_size 1,000,000,000,000 x width 32"):
        load_model(str(model_dir), quiet=True)
    (model_dir / "config.json").write_text(json.dumps(config))
    assert load_model(str(model_dir), quiet=True).config.vocab_size == config["vocab_size"]  # the real one loads


# -- predict on huge cells --------------------------------------------------------------------
def test_predict_cuts_a_huge_cell_before_tokenizing(tmp_path, monkeypatch):
    from transformers import PreTrainedTokenizerBase

    from tests.test_finetune import make_rows, write_csv

    model = tmp_path / "tiny-bert"
    _tiny_bert(model)
    run = tmp_path / "clf"
    assert main(["finetune", "--train", str(write_csv(tmp_path / "train.csv", make_rows(60, 0))), "--model",
                 str(model), "--out", str(run), "--max-steps", "3", "--batch-size", "8", "--max-length", "32",
                 "--threads", "1", "--quiet", "--method", "standard"]) == 0

    head = "the film was good and great today "
    huge = head * (2_000_000 // len(head))
    write_csv(tmp_path / "in.csv", [{"text": huge}, {"text": huge[:2000]}], fields=("text",))
    seen: list[int] = []
    real_call = PreTrainedTokenizerBase.__call__

    def spy(self, text=None, *args, **kwargs):
        seen.extend(len(t) for t in (text if isinstance(text, list) else [text]))
        return real_call(self, text, *args, **kwargs)

    monkeypatch.setattr(PreTrainedTokenizerBase, "__call__", spy)
    started = time.perf_counter()
    assert main(["predict", "--model", str(run), "--input", str(tmp_path / "in.csv"),
                 "--out", str(tmp_path / "p.csv")]) == 0
    assert time.perf_counter() - started < 60
    assert seen and max(seen) <= 32 * CHARS_PER_TOKEN
    limit = csv.field_size_limit(1 << 30)  # predictions.csv repeats the 2 MB text
    try:
        with open(tmp_path / "p.csv", encoding="utf-8") as fh:
            huge_row, start_row = [{k: v for k, v in row.items() if k not in ("row", "text")} for row in csv.DictReader(fh)]
    finally:
        csv.field_size_limit(limit)
    # only the first 32 tokens are read either way: the huge cell scores exactly as its start
    assert huge_row == start_row


def _tiny_bert(out: Path) -> None:
    import torch
    from transformers import BertConfig, BertModel

    from nlpft.tokenization.subword import train_subword_tokenizer
    from tests.test_finetune import make_rows

    tok = train_subword_tokenizer([r["text"] for r in make_rows(100, 1)], "wordpiece", 200, model_max_length=64)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(out)
    tok.save_pretrained(out)


# -- pipes and devices --------------------------------------------------------------------------
@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "stream.csv"
    os.mkfifo(path)
    return path


def test_a_named_pipe_as_train_file_is_refused_not_waited_on(fifo, tmp_path):
    # a subprocess with a timeout: opening a FIFO with no writer blocks forever
    try:
        done = run_nlpft(["finetune", "--train", str(fifo), "--model", "tfidf", "--out", str(tmp_path / "o")],
                         timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("nlpft waited on the named pipe instead of refusing it")
    assert done.returncode == 2
    assert f"{fifo}: is a pipe" in done.stderr and "write the stream to a file first" in done.stderr


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_pipe_or_device_as_corpus_says_what_it_is(kind, fifo, tmp_path, capsys):
    corpus = fifo if kind == "fifo" else Path("/dev/zero")
    if not corpus.exists():
        pytest.skip("no /dev/zero here")
    assert main(["lm", "train", "--corpus", str(corpus), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "holds no files" not in err
    assert ("is a pipe" if kind == "fifo" else "is a character device") in err


def test_process_substitution_as_corpus_is_refused(tmp_path, capsys):
    read_end, write_end = os.pipe()
    try:
        corpus = f"/dev/fd/{read_end}"
        if not Path(corpus).exists():
            pytest.skip("no /dev/fd here")
        assert main(["embed", "train", "--corpus", corpus, "--out", str(tmp_path / "o")]) == 2
        assert f"{corpus}: is a pipe" in capsys.readouterr().err
    finally:
        os.close(read_end)
        os.close(write_end)
