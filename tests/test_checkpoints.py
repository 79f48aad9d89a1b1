"""Checkpoint discovery shared by the RNN LM trainer and the Hugging Face trainer."""

import pytest

from nlpft.training.checkpoints import COMPLETE, CheckpointDirs


def _checkpoint(root, name, complete=True):
    folder = root / name
    folder.mkdir(parents=True)
    if complete:
        (folder / COMPLETE).write_text("{}")
    return folder


def test_both_trainers_find_checkpoints_through_one_helper():
    from nlpft.lm import checkpoint as lm_checkpoint
    from nlpft.training import hf

    assert isinstance(lm_checkpoint.CHECKPOINTS, CheckpointDirs)
    assert isinstance(hf.CHECKPOINTS, CheckpointDirs)
    assert hf.latest_checkpoint == hf.CHECKPOINTS.latest


@pytest.mark.parametrize("prefix, name", [("step-", "step-{:08d}"), ("checkpoint-", "checkpoint-{}")])
def test_newest_complete_checkpoint_by_step_and_half_written_ones_removed(tmp_path, prefix, name):
    dirs = CheckpointDirs(prefix)
    for step in (9, 10, 100):
        _checkpoint(tmp_path, name.format(step))
    half_written = _checkpoint(tmp_path, name.format(200), complete=False)
    partial = _checkpoint(tmp_path, f"{name.format(300)}.partial", complete=False)
    other = _checkpoint(tmp_path, "best", complete=True)

    assert [dirs.step(p) for p in dirs.complete(tmp_path)] == [9, 10, 100]
    assert dirs.latest(tmp_path).name == name.format(100)
    assert not half_written.exists() and not partial.exists()
    assert other.exists()
    assert dirs.latest(tmp_path / "none") is None and dirs.complete(tmp_path / "none") == []
