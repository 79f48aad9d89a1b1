"""`nlpft pretrain --objective mlm+nsp`: BERT's next-sentence prediction.

Pair building is checked on id streams whose every token names its line (a stand-in
tokenizer reads "17 17 17" as three ids 17), so a pair's tokens say which lines, files and
documents it came from; the command itself runs on a tiny BERT for a few steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nlpft.cli.main import main
from nlpft.data.corpus import TextCorpus
from nlpft.data.token_ids import encode_splits
from nlpft.pretrained.sentence_pairs import (
    DOC_END,
    IS_NEXT,
    LINE_END,
    NOT_NEXT,
    FileEndMarked,
    LineMarkedEncoder,
    SentencePairs,
    trimmed_lengths,
)
from tests.conftest import story_lines
from tests.test_pretrain import no_pickles, run_python

CLS, SEP = 1, 2
FIRST_LINE_ID = 10  # line n of the corpus is written as tokens FIRST_LINE_ID + n
BLOCK_LINES = 200  # encode_splits' split blocks: documents end with them
FAST = ["--size", "tiny", "--block-size", "32", "--batch-size", "4", "--vocab-size", "300",
        "--eval-every", "5", "--max-eval-blocks", "8", "--quiet", "--threads", "1"]


class NumberTokenizer:
    """Reads a line of integers as those ids (what `LineMarkedEncoder` needs of a tokenizer)."""

    def __len__(self) -> int:
        return 1_000_000

    def __call__(self, texts, **kwargs):
        return {"input_ids": [[int(word) for word in text.split()] for text in texts]}


def write_numbered_files(folder: Path, lines_per_file: list[int]) -> list[Path]:
    """Files whose n-th non-empty line (counted over all files) is 1-7 copies of the id
    FIRST_LINE_ID + n, with a blank line after every 7th line (paragraphs, not documents)."""
    paths, n = [], 0
    for number, count in enumerate(lines_per_file):
        rows = []
        for _ in range(count):
            rows.append(" ".join([str(FIRST_LINE_ID + n)] * (1 + n * 5 % 7)))
            if n % 7 == 6:
                rows.append("")
            n += 1
        path = folder / f"part{number}.txt"
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def split_streams(folder: Path, lines_per_file: list[int]):
    files = write_numbered_files(folder, lines_per_file)
    return encode_splits(FileEndMarked(TextCorpus(files)), LineMarkedEncoder(NumberTokenizer()), folder / "ids",
                         valid_fraction=0.1, test_fraction=0.1, seed=3, block_lines=BLOCK_LINES)


def segments(item: dict) -> tuple[list[int], list[int]]:
    ids, types = item["input_ids"].tolist(), item["token_type_ids"].tolist()
    first_sep = ids.index(SEP)
    assert ids[0] == CLS and ids[-1] == SEP and ids.count(SEP) == 2
    assert types == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
    return ids[1:first_sep], ids[first_sep + 1:-1]


def document_of(line: int, file_starts: list[int]) -> tuple[int, int]:
    """(file, split block) of corpus line `line`: together they name its document."""
    file = sum(line >= start for start in file_starts) - 1
    return file, line // BLOCK_LINES


# -- text -> ids --------------------------------------------------------------------------------
def test_encoder_marks_line_file_and_block_ends(tmp_path):
    files = write_numbered_files(tmp_path, [3, 2])
    encoder = LineMarkedEncoder(NumberTokenizer())
    blocks = list(encoder.blocks(FileEndMarked(TextCorpus(files)), block_lines=4))
    assert [lines for _, lines in blocks] == [4, 1]
    first, second = (ids.tolist() for ids, _ in blocks)
    line = [[FIRST_LINE_ID + n] * (1 + n * 5 % 7) for n in range(5)]
    # file 0 ends after its 3 lines; each block ends its document; blank lines leave no trace
    assert first == [*line[0], LINE_END, *line[1], LINE_END, *line[2], LINE_END, DOC_END, *line[3], LINE_END,
                     DOC_END]
    assert second == [*line[4], LINE_END, DOC_END]


# -- pairs ---------------------------------------------------------------------------------------
def test_pairs_are_half_is_next_consecutive_or_from_another_document(tmp_path):
    lines_per_file = [2500, 1700]
    splits = split_streams(tmp_path, lines_per_file)
    pairs = SentencePairs(splits.train, block_size=32, cls_id=CLS, sep_id=SEP, seed=5)
    labels = pairs.pairs[:, 4]
    assert len(pairs) > 400
    assert abs(np.mean(labels == IS_NEXT) - 0.5) < 0.06
    file_starts = [0, lines_per_file[0]]
    for index in range(len(pairs)):
        item = pairs[index]
        a, b = segments(item)
        assert len(item["input_ids"]) <= 32 and a and b
        a_lines, b_lines = [t - FIRST_LINE_ID for t in a], [t - FIRST_LINE_ID for t in b]
        assert a_lines == sorted(a_lines) and b_lines == sorted(b_lines)  # segments are runs of lines
        last_a, first_b = a_lines[-1], b_lines[0]
        if int(item["next_sentence_label"]) == IS_NEXT:
            assert first_b == last_a + 1, "IsNext: B starts with the line after A"
            assert document_of(first_b, file_starts) == document_of(last_a, file_starts)
        else:
            assert document_of(first_b, file_starts) != document_of(last_a, file_starts)
    # the pairs use nearly all the text (as A, or as B of IsNext): only lines the coin could not pair are left
    used = set()
    for a_first, a_stop, b_first, b_stop, label in pairs.pairs.tolist():
        used.update(range(a_first, a_stop))
        if label == IS_NEXT:
            used.update(range(b_first, b_stop))
    assert len(used) > 0.95 * pairs.index.lines
    # some IsNext pairs run over a blank line: paragraphs do not end documents
    blank_after = {n for n in range(sum(lines_per_file)) if n % 7 == 6}
    assert any(int(pairs[i]["next_sentence_label"]) == IS_NEXT
               and segments(pairs[i])[0][-1] - FIRST_LINE_ID in blank_after for i in range(len(pairs)))


def test_pairs_follow_the_seed(tmp_path):
    splits = split_streams(tmp_path, [900])
    first = SentencePairs(splits.train, 32, CLS, SEP, seed=1).pairs
    again = SentencePairs(splits.train, 32, CLS, SEP, seed=1).pairs
    other = SentencePairs(splits.train, 32, CLS, SEP, seed=2).pairs
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_one_document_split_draws_not_next_away_from_a(tmp_path):
    """A split that is one document (a small valid split) still gets NotNext pairs: B from a
    line neither in A nor its continuation, and never running into A."""
    lines = [[FIRST_LINE_ID + n] * 4 for n in range(60)]
    stream = np.array([t for line in lines for t in [*line, LINE_END]] + [DOC_END], dtype="<u4")
    pairs = SentencePairs(stream, block_size=16, cls_id=CLS, sep_id=SEP, seed=0)
    assert pairs.index.documents == 1
    not_next = [segments(pairs[i]) for i in range(len(pairs)) if int(pairs[i]["next_sentence_label"]) == NOT_NEXT]
    assert len(not_next) > 3
    for a, b in not_next:
        assert not set(a) & set(b) and a[-1] + 1 not in b


def test_trimming_keeps_the_junction():
    assert trimmed_lengths(10, 5, 20) == (10, 5)
    assert trimmed_lengths(30, 5, 20) == (15, 5)  # the longer segment loses tokens first
    assert trimmed_lengths(12, 12, 20) == (10, 10)
    assert trimmed_lengths(13, 12, 20) == (10, 10)


# -- the command ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Varied English-like lines in two files (the WordPiece trainer needs some variety)."""
    import random

    rng = random.Random(0)
    folder = tmp_path_factory.mktemp("corpus")
    for name in ("one.txt", "two.txt"):
        (folder / name).write_text("\n".join(story_lines(rng, 400)) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def nsp_dir(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "bert-nsp"
    assert main(["pretrain", "--arch", "bert", "--objective", "mlm+nsp", "--corpus", str(corpus), "--out", str(out),
                 "--max-steps", "12", *FAST]) == 0
    return out


def test_mlm_nsp_run_reports_both_and_saves_bert_for_pretraining(nsp_dir):
    metrics = json.loads((nsp_dir / "metrics.json").read_text())
    assert metrics["objective"] == "mlm+nsp" and metrics["steps"] == 12
    for split in ("valid", "test", "valid_before"):
        result = metrics[split]
        assert 0 <= result["nsp_accuracy"] <= 1 and result["nsp_loss"] > 0
        assert result["perplexity"] == pytest.approx(np.exp(result["loss"]))  # "loss" is the MLM loss
    assert metrics["valid"]["loss"] < metrics["valid_before"]["loss"]
    assert all(0.3 < share < 0.7 for share in metrics["is_next_share"].values())
    assert metrics["pairs"]["train"] > 50 and metrics["eval_pairs"]["valid"] == 8
    config = json.loads((nsp_dir / "config.json").read_text())
    assert config["architectures"] == ["BertForPreTraining"]
    assert (nsp_dir / "model.safetensors").is_file()
    assert not no_pickles(nsp_dir)
    out = run_python(f"""
import sys, torch
from transformers import AutoModel, AutoTokenizer, BertForPreTraining
model, info = BertForPreTraining.from_pretrained({str(nsp_dir)!r}, output_loading_info=True)
assert not info["missing_keys"] and not info["unexpected_keys"], info
tok = AutoTokenizer.from_pretrained({str(nsp_dir)!r})
batch = tok("the cat sees the river.", "a dog finds the letter.", return_tensors="pt")
assert batch["token_type_ids"][0].tolist().count(1) > 0
out = model(**batch)
assert out.seq_relationship_logits.shape == (1, 2)
encoder = AutoModel.from_pretrained({str(nsp_dir)!r})
assert type(encoder).__name__ == "BertModel"
assert not any(m.startswith("nlpft") for m in sys.modules)
print("ok")
""")
    assert out.strip() == "ok"


def test_finetune_and_lm_eval_take_the_nsp_model(nsp_dir, corpus, tmp_path, capsys):
    rows = ["text,label"]
    for line in (corpus / "one.txt").read_text().splitlines()[:120]:
        rows.append(f'"{line}",{"animal" if line.startswith(("the cat", "a dog")) else "person"}')
    data = tmp_path / "labeled.csv"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "clf"
    assert main(["finetune", "--train", str(data), "--model", str(nsp_dir), "--out", str(out), "--max-steps", "4",
                 "--batch-size", "16", "--max-length", "32", "--threads", "1", "--quiet", "--method", "standard"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backbone"] == "hf-encoder" and 0 <= metrics["test"]["accuracy"] <= 1
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForSequenceClassification"]
    capsys.readouterr()
    assert main(["lm", "eval", "--model", str(nsp_dir), "--corpus", str(corpus), "--block-size", "32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["objective"] == "mlm"


def test_continue_a_bert_encoder_with_nsp(corpus, tmp_path, capsys):
    """--from a BERT saved without heads: both heads are new, and said to be."""
    from nlpft.tokenization.subword import train_subword_tokenizer
    from tests.conftest import save_tiny_bert

    tokenizer = train_subword_tokenizer(TextCorpus(corpus), "wordpiece", 300)
    source = save_tiny_bert(tmp_path / "encoder", tokenizer, hidden_size=32, heads=2)
    out = tmp_path / "more"
    assert main(["pretrain", "--from", str(source), "--objective", "mlm+nsp", "--corpus", str(corpus), "--out",
                 str(out), "--max-steps", "3", "--block-size", "32", "--batch-size", "4", "--max-eval-blocks", "4",
                 "--quiet", "--threads", "1"]) == 0
    assert "has no MLM+NSP head" in capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert "cls.seq_relationship.weight" in metrics["new_head_weights"] and metrics["objective"] == "mlm+nsp"


@pytest.mark.parametrize("args, message", [
    (["--arch", "gpt2", "--objective", "mlm+nsp"], "--objective mlm+nsp does not apply to --arch gpt2"),
    (["--arch", "bert", "--objective", "clm"], "--objective clm does not apply to --arch bert"),
])
def test_objective_the_architecture_cannot_learn_is_refused(args, message, corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["pretrain", "--corpus", str(corpus), "--out", str(out), *args, *FAST]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not out.with_name("out.partial").exists()


def test_nsp_from_a_gpt_checkpoint_is_refused(corpus, tmp_path, capsys):
    from transformers import GPT2Config, GPT2LMHeadModel

    source = tmp_path / "gpt"
    GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32)).save_pretrained(source)
    out = tmp_path / "out"
    assert main(["pretrain", "--from", str(source), "--objective", "mlm+nsp", "--corpus", str(corpus),
                 "--out", str(out)]) == 2
    assert "--objective mlm+nsp needs a BERT checkpoint" in capsys.readouterr().err
    assert not out.with_name("out.partial").exists()
