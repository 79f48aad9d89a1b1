"""`--out` safety: nlpft replaces only its own outputs, and only when asked; an output may not
overlap an input; one run at a time per output; unwritable places are one-line errors."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nlpft.cli.main import main
from nlpft.runners.output import MARKER_FILE, RunOutput
from tests.test_finetune import make_rows, write_csv

FAST = ["--min-count", "2", "--dim", "8", "--epochs", "1", "--max-steps", "2", "--quiet"]


def _embed(corpus: Path, out, *extra: str) -> int:
    return main(["embed", "train", "--corpus", str(corpus), "--out", str(out), *FAST, *extra])


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    return err[0]


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))


@pytest.fixture(scope="module")
def tfidf_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tfidf")
    data = write_csv(folder / "reviews.csv", make_rows(150, 0))
    out = folder / "model"
    assert main(["finetune", "--train", str(data), "--model", "tfidf", "--out", str(out), "--quiet"]) == 0
    return out


# -- item 1: an existing --out is replaced only when nlpft wrote it and --overwrite says so ----
def test_a_directory_nlpft_did_not_write_is_never_replaced(tmp_path, small_corpus, capsys):
    thesis = tmp_path / "thesis"
    (thesis / "chapters").mkdir(parents=True)
    (thesis / "chapters" / "ch1.tex").write_text("x")
    assert _embed(small_corpus, thesis) == 2
    assert (thesis / "chapters" / "ch1.tex").read_text() == "x"
    line = _error_line(capsys)
    assert str(thesis) in line and "not written by nlpft" in line
    assert _embed(small_corpus, thesis, "--overwrite") == 2  # not even when asked
    assert (thesis / "chapters" / "ch1.tex").read_text() == "x"
    assert _siblings(thesis) == ["thesis"]


def test_finetune_never_replaces_the_folder_of_its_training_file(tmp_path, capsys):
    data = tmp_path / "mydata"
    data.mkdir()
    train = write_csv(data / "train.csv", make_rows(90, 0))
    before = train.read_bytes()
    assert main(["finetune", "--train", str(train), "--model", "tfidf", "--out", str(data), "--quiet"]) == 2
    assert train.read_bytes() == before and [p.name for p in data.iterdir()] == ["train.csv"]
    assert str(data) in _error_line(capsys)


def test_an_earlier_output_is_replaced_only_with_overwrite(tmp_path, small_corpus, capsys):
    out = tmp_path / "w2v"
    assert _embed(small_corpus, out) == 0
    assert (out / MARKER_FILE).is_file()
    first = (out / "vectors.bin").read_bytes()
    assert _embed(small_corpus, out, "--seed", "5") == 2
    line = _error_line(capsys)
    assert str(out) in line and "--overwrite" in line
    assert (out / "vectors.bin").read_bytes() == first
    assert _embed(small_corpus, out, "--seed", "5", "--overwrite") == 0
    assert (out / "vectors.bin").read_bytes() != first
    assert _siblings(out) == ["w2v"]  # no partial, lock or old copy left


def test_an_empty_directory_may_be_the_output(tmp_path, small_corpus):
    out = tmp_path / "empty"
    out.mkdir()
    assert _embed(small_corpus, out) == 0
    assert (out / "vectors.bin").is_file() and _siblings(out) == ["empty"]


def test_a_partial_directory_nlpft_did_not_write_is_kept(tmp_path, small_corpus, capsys):
    out = tmp_path / "w2v"
    stray = tmp_path / "w2v.partial"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    assert _embed(small_corpus, out) == 2
    assert (stray / "notes.txt").read_text() == "mine" and not out.exists()
    assert str(stray) in _error_line(capsys)


def test_what_a_run_killed_while_creating_its_partial_directory_leaves_does_not_block(tmp_path, small_corpus):
    """A kill between making DIR.partial and marking it used to leave an unmarked, empty
    DIR.partial that every later run refused; now the partial is staged, marked, then
    renamed, and an empty one (or a marked staging directory) is cleaned up."""
    out = tmp_path / "w2v"
    (tmp_path / "w2v.partial").mkdir()  # empty, no marker: what the old window left
    staged = tmp_path / "w2v.partial.new-99999999"
    staged.mkdir()
    (staged / MARKER_FILE).write_text("{}")  # a staging directory of a killed run
    assert _embed(small_corpus, out) == 0
    assert (out / "vectors.bin").is_file() and _siblings(out) == ["w2v"]


# -- item 2: an output inside an input, or an input inside the output --------------------------
def test_out_inside_the_corpus_directory_is_refused_before_any_work(tmp_path, small_corpus, capsys):
    corpus = tmp_path / "indir"
    corpus.mkdir()
    (corpus / "a.txt").write_text(small_corpus.read_text())
    assert _embed(corpus, corpus / "w2v") == 2
    assert [p.name for p in corpus.iterdir()] == ["a.txt"]
    line = _error_line(capsys)
    assert "inside the input" in line and str(corpus) in line


def test_out_reaching_an_input_through_a_link_is_refused(tmp_path, small_corpus, capsys):
    corpus = tmp_path / "indir"
    corpus.mkdir()
    (corpus / "a.txt").write_text(small_corpus.read_text())
    (tmp_path / "alias").symlink_to(corpus)
    assert _embed(corpus, tmp_path / "alias" / "w2v") == 2
    assert [p.name for p in corpus.iterdir()] == ["a.txt"]
    assert "inside the input" in _error_line(capsys)


def test_an_input_inside_the_output_is_refused(tmp_path, small_corpus, capsys):
    out = tmp_path / "w2v"
    assert _embed(small_corpus, out) == 0
    vectors = out / "vectors.txt"
    assert main(["lm", "train", "--corpus", str(small_corpus), "--init-vectors", str(vectors), "--out", str(out),
                 "--overwrite", "--max-steps", "1", "--quiet"]) == 2
    assert vectors.is_file()
    assert "inside --out" in _error_line(capsys)


# -- item 3: one run at a time per output ------------------------------------------------------
HOLD_THE_OUTPUT = """
import sys
from pathlib import Path
from nlpft.runners.output import RunOutput
output = RunOutput(sys.argv[1], command="embed train")
output.open()
Path(sys.argv[2]).write_text("locked")
sys.stdin.read()  # hold the lock until the test closes our stdin
output.discard()
"""


def test_a_second_run_on_the_same_out_is_refused_naming_the_holder(tmp_path, small_corpus, capsys):
    out, ready = tmp_path / "w2v", tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_OUTPUT, str(out), str(ready)],
                              stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert holder.poll() is None, holder.stderr.read()
            assert time.monotonic() < deadline, "the holder never took the lock"
            time.sleep(0.05)
        assert _embed(small_corpus, out) == 2
        line = _error_line(capsys)
        assert f"pid {holder.pid}" in line and str(out) in line
        assert (tmp_path / "w2v.partial").is_dir()  # the holder's work is untouched
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 0
    assert _embed(small_corpus, out) == 0  # free again once the holder is done
    assert _siblings(out) == ["w2v"]


def test_a_lock_file_left_by_a_dead_process_does_not_block(tmp_path, small_corpus):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    out = tmp_path / "w2v"
    lock = tmp_path / "w2v.partial.lock"
    lock.write_text(f'{{"pid": {dead.stdout.strip()}, "host": "here", "started": "earlier"}}')
    assert _embed(small_corpus, out) == 0
    assert (out / "vectors.bin").is_file() and not lock.exists()


def test_the_lock_is_released_after_a_failed_run(tmp_path, small_corpus):
    out = RunOutput(tmp_path / "o")
    out.open()
    with pytest.raises(RuntimeError), out.cleaned_up_on_error():
        raise RuntimeError("simulated bug")
    assert _siblings(tmp_path / "o") == []
    RunOutput(tmp_path / "o").open()  # free again


# -- item 11: places that cannot hold an output ------------------------------------------------
@pytest.mark.parametrize("name", [".", ".."])
def test_current_or_parent_directory_as_out_is_refused(tmp_path, small_corpus, monkeypatch, capsys, name):
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("mine")
    monkeypatch.chdir(work)
    assert _embed(small_corpus, name) == 2
    assert sorted(p.name for p in work.iterdir()) == ["keep.txt"]
    assert f"--out {name}" in _error_line(capsys)


def test_out_under_a_file_is_one_line(tmp_path, small_corpus, capsys):
    assert _embed(small_corpus, small_corpus / "w2v") == 2
    assert str(small_corpus) in _error_line(capsys)
    assert _siblings(small_corpus) == ["small.txt"]


def test_an_unwritable_parent_is_one_line(tmp_path, small_corpus, monkeypatch, capsys):
    readonly = tmp_path / "readonly"
    readonly.mkdir()

    def refused_inside(original):
        def call(path, *args, **kwargs):
            if os.fspath(path).startswith(str(readonly)):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
            return original(path, *args, **kwargs)
        return call

    # as root a chmod does not stop writes, so the file system's answer is simulated
    monkeypatch.setattr(os, "mkdir", refused_inside(os.mkdir))
    monkeypatch.setattr(os, "open", refused_inside(os.open))
    assert _embed(small_corpus, readonly / "w2v") == 2
    line = _error_line(capsys)
    assert str(readonly) in line and "Permission denied" in line


def _disk_full(path: Path):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, small_corpus, monkeypatch, capsys):
    import nlpft.runners.embed as runner

    monkeypatch.setattr(runner, "tokenize_to_file", lambda text, tokenizer, path, **kw: _disk_full(path))
    out = tmp_path / "w2v"
    assert _embed(small_corpus, out) == 2
    line = _error_line(capsys)
    assert "No space left on device" in line and "w2v.partial" in line
    assert _siblings(out) == []


def test_a_full_disk_after_a_checkpoint_keeps_it_for_resume(tmp_path, small_corpus, monkeypatch, capsys):
    import nlpft.embeddings.vectors_io as vectors_io

    monkeypatch.setattr(vectors_io, "save_vectors", lambda kv, folder, **kw: _disk_full(Path(folder) / "vectors.bin"))
    out = tmp_path / "w2v"
    assert _embed(small_corpus, out) == 2
    line = _error_line(capsys)
    assert "No space left on device" in line and "--resume" in line
    assert _siblings(out) == ["w2v.partial"] and not out.exists()
    monkeypatch.undo()
    assert _embed(small_corpus, out, "--resume") == 0
    assert (out / "vectors.bin").is_file() and _siblings(out) == ["w2v"]


def test_predict_out_naming_a_directory_is_refused_without_leftovers(tfidf_model, tmp_path, capsys):
    source = write_csv(tmp_path / "new.csv", make_rows(6, 4), fields=("text",))
    folder = tmp_path / "predictions"
    folder.mkdir()
    assert main(["predict", "--model", str(tfidf_model), "--input", str(source), "--out", str(folder)]) == 2
    assert str(folder) in _error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv", "predictions"]
    assert not any(folder.iterdir())


def test_predict_out_naming_its_input_is_refused(tfidf_model, tmp_path, capsys):
    source = write_csv(tmp_path / "new.csv", make_rows(6, 4), fields=("text",))
    before = source.read_bytes()
    assert main(["predict", "--model", str(tfidf_model), "--input", str(source), "--out", str(source)]) == 2
    assert source.read_bytes() == before
    assert "--input" in _error_line(capsys)


def test_evaluate_out_naming_a_file_is_refused(tfidf_model, tmp_path, capsys):
    labeled = write_csv(tmp_path / "test.csv", make_rows(12, 5))
    existing = tmp_path / "results.txt"
    existing.write_text("mine")
    assert main(["evaluate", "--model", str(tfidf_model), "--input", str(labeled), "--out", str(existing)]) == 2
    assert existing.read_text() == "mine"
    assert str(existing) in _error_line(capsys)


def test_evaluate_out_follows_the_out_rules(tfidf_model, tmp_path, capsys):
    labeled = write_csv(tmp_path / "test.csv", make_rows(12, 5))
    report = tmp_path / "report"
    command = ["evaluate", "--model", str(tfidf_model), "--input", str(labeled), "--out", str(report)]
    assert main(command) == 0
    assert {"metrics.json", "report.md", "predictions.csv", MARKER_FILE} <= {p.name for p in report.iterdir()}
    capsys.readouterr()
    assert main(command) == 2 and "--overwrite" in _error_line(capsys)
    assert main([*command, "--overwrite"]) == 0
    assert _siblings(report) == ["report"]


# -- item 13: an --out that is a symbolic link ---------------------------------------------------
def test_a_linked_out_is_published_into_its_target_and_the_link_kept(tmp_path, small_corpus):
    target = tmp_path / "disk" / "w2v"
    target.mkdir(parents=True)
    link = tmp_path / "w2v"
    link.symlink_to(target)
    assert _embed(small_corpus, link) == 0
    assert _embed(small_corpus, link, "--overwrite", "--seed", "3") == 0
    assert link.is_symlink() and (target / "vectors.bin").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk", "small.txt", "w2v"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["w2v"]
