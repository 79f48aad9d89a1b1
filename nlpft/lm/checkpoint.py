"""Pickle-free, atomically published training checkpoints.

A checkpoint is a directory `step-00001234/` holding safetensors files (model, optimizer
tensors, carried hidden state, RNG state per process) and `state.json` (everything else:
position in the data, schedule, early-stopping counters, optimizer hyper-parameters).
`complete.json` is written last; a directory without it is a checkpoint that was being
written when the process died, and is skipped (and removed) on resume, which falls back
to the newest complete one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from nlpft.errors import UserInputError
from nlpft.training.checkpoints import COMPLETE, CheckpointDirs
from nlpft.training.weights import save_file

PREFIX = "step-"
CHECKPOINTS = CheckpointDirs(PREFIX)


def _dir_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def begin(root: Path, step: int) -> Path:
    path = root / _dir_name(step)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def finish(root: Path, path: Path, keep: int = 1) -> None:
    """Mark `path` complete (atomically) and drop older complete checkpoints."""
    tmp = path / (COMPLETE + ".tmp")
    tmp.write_text(json.dumps({"complete": True}))
    os.replace(tmp, path / COMPLETE)
    for old in CHECKPOINTS.complete(root)[:-keep]:
        if old != path:
            shutil.rmtree(old, ignore_errors=True)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, path)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserInputError(f"{path}: missing from the checkpoint; it is incomplete — drop --resume to start over")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise UserInputError(f"{path}: unreadable checkpoint file ({exc}); drop --resume to start over") from None
