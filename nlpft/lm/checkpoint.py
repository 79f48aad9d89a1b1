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

from nlpft.training.weights import save_file

from nlpft.errors import UserInputError

COMPLETE = "complete.json"


def _dir_name(step: int) -> str:
    return f"step-{step:08d}"


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint directories under `root`, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / COMPLETE).is_file())


def latest_checkpoint(root: Path) -> Path | None:
    done = complete_checkpoints(root)
    # half-written ones (killed mid-write) are useless: clear them out
    for path in root.iterdir() if root.is_dir() else []:
        if path.is_dir() and path.name.startswith("step-") and not (path / COMPLETE).is_file():
            shutil.rmtree(path, ignore_errors=True)
    return done[-1] if done else None


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
    for old in complete_checkpoints(root)[:-keep]:
        if old != path:
            shutil.rmtree(old, ignore_errors=True)


# -- optimizer state without pickle ---------------------------------------------------

def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.detach().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_flat(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, path)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserInputError(f"{path}: missing from the checkpoint; it is incomplete — drop --resume to start over")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise UserInputError(f"{path}: unreadable checkpoint file ({exc}); drop --resume to start over") from None
