"""`--out DIR`, written atomically, safely, with a place for resumable checkpoints.

A run writes into `DIR.partial/` next to `DIR`. On success the finished directory
replaces `DIR` by rename, so a killed run leaves either the previous output or none.
Checkpoints live in `DIR.partial/checkpoint/`; `--resume` picks them up, and a run
without `--resume` starts from a clean `DIR.partial/`. On a bad-input error the partial
directory is removed, so nothing half-written is left behind.

Safety rules, checked before any work:
- every directory nlpft writes carries `MARKER_FILE` (in `DIR.partial/` from its first
  moment, so in `DIR` once published); an existing non-empty `DIR` is replaced only when
  it carries the marker and the run was given `overwrite` (or resumes its own checkpoint),
  and a `DIR.partial/` without the marker is never removed: nlpft deletes only what it wrote;
- `DIR` may not lie inside an input, nor an input inside `DIR` (real paths compared);
- one run at a time per `DIR`: an exclusive `flock` on `DIR.partial.lock`, which names
  its holder; the kernel drops it when the holder dies, so a stale file never blocks;
- a full disk, a read-only or unwritable place is one line naming the path (exit 2).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from nlpft.data.fingerprint import FILE_NAME as FINGERPRINT_FILE
from nlpft.errors import UserInputError

#: written into every output directory: what nlpft may later replace
MARKER_FILE = ".nlpft-output.json"

#: errors of the place written to, which the user fixes (space, permissions), not bugs
_PLACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
_PLACE_HINTS = {
    errno.ENOSPC: "free some space or pass an --out on another disk",
    errno.EDQUOT: "free some of your quota or pass an --out on another disk",
    errno.EROFS: "the file system is read-only; pass an --out on a writable one",
}


def is_nlpft_output(directory: Path) -> bool:
    return (Path(directory) / MARKER_FILE).is_file()


def output_path(out: str | os.PathLike) -> Path:
    """The directory `--out` names: refused when it can never be an nlpft output (`.`, `..`,
    `/`, a file); a symbolic link stands for its target, which the run replaces."""
    path = Path(out)
    if path.is_symlink():
        # publish renames over the target; the link keeps pointing at the new output
        path = Path(os.path.realpath(path))
    if path.name in ("", ".", ".."):
        raise UserInputError(f"--out {out}: names the current, parent or root directory, which nlpft never "
                             "replaces; pass a new directory name such as runs/NAME")
    if path.exists() and not path.is_dir():
        raise UserInputError(f"{path}: exists and is not a directory; pass another --out")
    existing = next((parent for parent in path.absolute().parents if parent.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserInputError(f"{existing}: is a file, so --out {out} cannot be made under it; pass another --out")
    return path


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def refuse_output_overlapping_inputs(out: str | os.PathLike, inputs) -> None:
    """Refuse an output inside an input directory (the run would read what it writes) and an
    input inside the output (publishing would replace it). Real paths are compared, so
    links and `..` do not hide an overlap; inputs that are not paths (aliases) are skipped."""
    target = Path(os.path.realpath(out))
    scratch = target.with_name(target.name + ".partial")
    for given in inputs:
        if given is None or not os.path.exists(given):
            continue
        source = Path(os.path.realpath(given))
        if _within(target, source):
            raise UserInputError(f"--out {out} is inside the input {given}: the run would read what it writes; "
                                 "pass an --out outside every input")
        if _within(source, target) or _within(source, scratch):
            raise UserInputError(f"the input {given} is inside --out {out}, which the run replaces; "
                                 "pass an --out that holds no input")


def place_error(exc: OSError, out: Path) -> UserInputError | None:
    """A one-line UserInputError for a full disk or an unwritable place; None for other errors."""
    if exc.errno not in _PLACE_ERRNOS:
        return None
    where = exc.filename or out
    hint = _PLACE_HINTS.get(exc.errno, "fix the permissions or pass an --out you can write to")
    return UserInputError(f"{where}: {exc.strerror or os.strerror(exc.errno)}; {hint}")


@contextlib.contextmanager
def place_errors_reported(out: Path):
    """Turn a full disk or an unwritable place met in the block into a one-line UserInputError."""
    try:
        yield
    except OSError as exc:
        error = place_error(exc, out)
        if error is None:
            raise
        raise error from None


class RunOutput:
    def __init__(self, out: str | os.PathLike, resume: bool = False, overwrite: bool = False,
                 command: str = "", inputs=()):
        self.final = output_path(out)
        refuse_output_overlapping_inputs(self.final, inputs)
        self.partial = self.final.with_name(self.final.name + ".partial")
        self.lock_path = self.final.with_name(self.final.name + ".partial.lock")
        self.resume = resume
        self.overwrite = overwrite
        self.command = command
        self._lock_fd: int | None = None

    @property
    def checkpoint_dir(self) -> Path:
        return self.partial / "checkpoint"

    def has_checkpoint(self) -> bool:
        return self.checkpoint_dir.is_dir() and any(self.checkpoint_dir.iterdir())

    def open(self) -> Path:
        """Lock the output, check that it may be written, create (or, resuming, reuse) the
        partial directory with its marker; return it. The lock is held until `publish`,
        `discard` or the end of `cleaned_up_on_error`."""
        with place_errors_reported(self.final):
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self._lock()
            try:
                self._check_replaceable()
                if self.partial.is_dir() and not any(self.partial.iterdir()):
                    self.partial.rmdir()  # empty: holds nothing of anyone's
                if self.partial.exists():
                    self._check_written_by_nlpft(self.partial)
                    if not self.resume:
                        shutil.rmtree(self.partial)
                if not self.partial.exists():
                    self._create_partial()
            except BaseException:
                self.release()
                raise
        return self.partial

    def publish(self, keep_checkpoint: bool = False) -> Path:
        """Move the finished run into place: rename is atomic on one filesystem."""
        with place_errors_reported(self.final):
            if not keep_checkpoint and self.checkpoint_dir.exists():
                shutil.rmtree(self.checkpoint_dir)
            (self.partial / FINGERPRINT_FILE).unlink(missing_ok=True)  # what --resume compares; done with
            if is_nlpft_output(self.final):
                old = self.final.with_name(f"{self.final.name}.old-{os.getpid()}-{int(time.time())}")
                os.replace(self.final, old)
                os.replace(self.partial, self.final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                # not ours: the kernel replaces only an absent or empty directory
                os.replace(self.partial, self.final)
        self.release()
        return self.final

    def discard(self) -> None:
        """Remove what this run wrote (bad input: nothing half-written stays)."""
        shutil.rmtree(self.partial, ignore_errors=True)
        self.release()

    def release(self) -> None:
        """Give up the lock (the lock file goes with it); a no-op when not held."""
        if self._lock_fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lock_path)  # while still held, so nobody locks a file about to vanish
        os.close(self._lock_fd)
        self._lock_fd = None

    def _lock(self) -> None:
        while True:
            fd = try_flock(self.lock_path)
            if fd is None:
                holder = lock_holder(self.lock_path)
                where = f"{holder}; lock {self.lock_path}" if holder else f"lock {self.lock_path}"
                raise UserInputError(f"{self.final}: another nlpft run is writing it ({where}); "
                                     "wait for it to finish or pass another --out")
            # the previous holder unlinks the file when done: lock the file that is there now
            with contextlib.suppress(FileNotFoundError):
                if os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino:
                    break
            os.close(fd)
        record_holder(fd, self.command)
        self._lock_fd = fd

    def _check_replaceable(self) -> None:
        if not self.final.is_dir() or not any(self.final.iterdir()):
            return  # absent or empty: free to use
        if not is_nlpft_output(self.final):
            raise UserInputError(f"{self.final}: exists, is not empty and was not written by nlpft (no {MARKER_FILE}); "
                                 "nlpft never deletes what it did not write: pass a new or empty directory to --out")
        if not (self.overwrite or (self.resume and self.has_checkpoint())):
            raise UserInputError(f"{self.final}: holds an earlier nlpft output; pass --overwrite to replace it, "
                                 "or another --out")

    def _check_written_by_nlpft(self, directory: Path) -> None:
        if not directory.is_dir() or not is_nlpft_output(directory):
            raise UserInputError(f"{directory}: exists and was not written by nlpft (no {MARKER_FILE}), so nlpft "
                                 "will not delete it; move it away or pass another --out")

    def _create_partial(self) -> None:
        """DIR.partial, born with its marker: made as a staging directory, marked, then renamed,
        so a kill at any moment leaves either no DIR.partial or one nlpft may clean up (a
        partial without the marker is never deleted: it would stay in the way for good)."""
        from nlpft.version import __version__

        for stale in self.partial.parent.glob(f"{glob.escape(self.partial.name)}.new-*"):
            if is_nlpft_output(stale) or (stale.is_dir() and not any(stale.iterdir())):
                shutil.rmtree(stale, ignore_errors=True)  # a staging directory of a killed run
        staging = self.partial.with_name(f"{self.partial.name}.new-{os.getpid()}")
        staging.mkdir()
        write_json(staging / MARKER_FILE, {"nlpft_version": __version__, "command": self.command,
                                           **_this_process()})
        os.rename(staging, self.partial)

    @contextlib.contextmanager
    def cleaned_up_on_error(self, owner: bool = True):
        """Around a run: bad input (a full disk or an unwritable place included, then reported
        in one line) removes the partial directory unless it holds a checkpoint; an
        interruption or a crash keeps it when it holds a checkpoint (and says how to resume),
        removes it otherwise. The lock is released on the way out.
        `owner` is False on the non-zero ranks of a multi-process run: rank 0 decides."""
        try:
            yield
        except UserInputError:
            # a checkpoint the error is about (say, one missing its RNG state) stays for the
            # user to inspect; anything else from a run that failed on bad input goes
            if owner and not self.has_checkpoint():
                self.discard()
            raise
        except OSError as exc:
            error = place_error(exc, self.final)
            if error is None:
                self._after_crash(exc, owner)
                raise
            if owner:
                if self.has_checkpoint():
                    error = UserInputError(f"{error}; checkpoint kept in {self.checkpoint_dir}, rerun the same "
                                           "command with --resume once fixed")
                else:
                    self.discard()
            raise error from None
        except BaseException as exc:
            self._after_crash(exc, owner)
            raise
        finally:
            if owner:
                self.release()

    def _after_crash(self, exc: BaseException, owner: bool) -> None:
        if not owner:
            return
        if self.has_checkpoint():
            print(f"\n{type(exc).__name__}: checkpoint kept in {self.checkpoint_dir}; "
                  "rerun the same command with --resume to continue", file=sys.stderr)
        else:
            self.discard()


# -- lock files ---------------------------------------------------------------------------------
def try_flock(path: Path) -> int | None:
    """A descriptor of `path` (created when absent) holding an exclusive flock, or None when
    another process holds one. The kernel drops the lock when its holder dies."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def record_holder(fd: int, command: str | None) -> None:
    """Write into the locked file `fd` who holds it: pid, host, start time and command."""
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({**_this_process(), "command": command}).encode())


def lock_holder(path: Path) -> str | None:
    """The holder `record_holder` wrote into `path`, for an error message; None when unreadable."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        return (f"pid {holder['pid']} on {holder['host']}, `nlpft {holder.get('command') or '...'}` "
                f"since {holder['started']}")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def flock_held(path: Path) -> bool:
    """Whether some process holds an flock on the file `path` (False when it is absent)."""
    import fcntl

    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _this_process() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


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
