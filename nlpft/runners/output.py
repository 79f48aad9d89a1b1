"""`--out DIR`, written atomically, with a place for resumable checkpoints.

A run writes into `DIR.partial/` next to `DIR`. On success the finished directory
replaces `DIR` by rename, so a killed run leaves either the previous output or none.
Checkpoints live in `DIR.partial/checkpoint/`; `--resume` picks them up, and a run
without `--resume` starts from a clean `DIR.partial/`. On a bad-input error the partial
directory is removed, so nothing half-written is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from nlpft.data.fingerprint import FILE_NAME as FINGERPRINT_FILE
from nlpft.errors import UserInputError


class RunOutput:
    def __init__(self, out: str | os.PathLike, resume: bool = False):
        self.final = Path(out)
        if self.final.exists() and not self.final.is_dir():
            raise UserInputError(f"{self.final}: exists and is not a directory; pass another --out")
        self.partial = self.final.with_name(self.final.name + ".partial")
        self.resume = resume

    @property
    def checkpoint_dir(self) -> Path:
        return self.partial / "checkpoint"

    def has_checkpoint(self) -> bool:
        return self.checkpoint_dir.is_dir() and any(self.checkpoint_dir.iterdir())

    def open(self) -> Path:
        """Create (or, resuming, reuse) the partial directory; return it."""
        if self.partial.exists() and not self.resume:
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True, exist_ok=True)
        return self.partial

    def publish(self, keep_checkpoint: bool = False) -> Path:
        """Move the finished run into place: rename is atomic on one filesystem."""
        if not keep_checkpoint and self.checkpoint_dir.exists():
            shutil.rmtree(self.checkpoint_dir)
        (self.partial / FINGERPRINT_FILE).unlink(missing_ok=True)  # what --resume compares; done with
        old = None
        if self.final.exists():
            old = self.final.with_name(f"{self.final.name}.old-{os.getpid()}-{int(time.time())}")
            os.replace(self.final, old)
        os.replace(self.partial, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final

    def discard(self) -> None:
        """Remove what this run wrote (bad input: nothing half-written stays)."""
        shutil.rmtree(self.partial, ignore_errors=True)

    @contextlib.contextmanager
    def cleaned_up_on_error(self, owner: bool = True):
        """Around a run: bad input removes the partial directory (unless it holds a checkpoint);
        an interruption or a crash
        keeps it when it holds a checkpoint (and says how to resume), removes it otherwise.
        `owner` is False on the non-zero ranks of a multi-process run: rank 0 decides."""
        try:
            yield
        except UserInputError:
            # a checkpoint the error is about (say, one missing its RNG state) stays for the
            # user to inspect; anything else from a run that failed on bad input goes
            if owner and not self.has_checkpoint():
                self.discard()
            raise
        except BaseException as exc:
            if owner:
                if self.has_checkpoint():
                    print(f"\n{type(exc).__name__}: checkpoint kept in {self.checkpoint_dir}; "
                          "rerun the same command with --resume to continue", file=sys.stderr)
                else:
                    self.discard()
            raise


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(obj):
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
