"""What both trainers' checkpoint directories have in common, in one place.

The RNN LM trainer (`nlpft.lm.checkpoint`, `step-00001234/`) and the Hugging Face trainer
(`nlpft.training.hf`, `checkpoint-1234/`) name their directories differently but agree on
the rest: a directory is complete once `complete.json` is in it, resume takes the newest
complete one, and one without it was being written when the process died and is removed.
Optimizer state is split into tensors (safetensors) and JSON, so no checkpoint holds a pickle.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

COMPLETE = "complete.json"


@dataclass(frozen=True)
class CheckpointDirs:
    """Checkpoint directories named `<prefix><step>` under one root."""

    prefix: str

    def step(self, path: Path) -> int:
        """The optimizer step a checkpoint directory was saved at (-1 for other names)."""
        try:
            return int(path.name[len(self.prefix):])
        except ValueError:
            return -1

    def complete(self, root: str | os.PathLike) -> list[Path]:
        """Complete checkpoints under `root`, oldest first."""
        root = Path(root)
        if not root.is_dir():
            return []
        found = [p for p in root.iterdir()
                 if p.is_dir() and p.name.startswith(self.prefix) and self.step(p) >= 0 and (p / COMPLETE).is_file()]
        return sorted(found, key=self.step)

    def latest(self, root: str | os.PathLike) -> Path | None:
        """The newest complete checkpoint; half-written ones (killed mid-save) are removed."""
        root = Path(root)
        if root.is_dir():
            for path in root.iterdir():
                if path.is_dir() and path.name.startswith(self.prefix) and not (path / COMPLETE).is_file():
                    shutil.rmtree(path, ignore_errors=True)
        done = self.complete(root)
        return done[-1] if done else None


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
