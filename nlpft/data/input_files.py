"""What kind of filesystem object an input path is, checked before anything opens it.

nlpft reads every input more than once (up-front checks, then a counting or tokenizer
pass, then training), so a stream that can be read only once cannot work: a named pipe,
a process substitution such as `<(zcat big.gz)` (a pipe under /dev/fd), or a device such
as /dev/zero (endless). Such paths are refused with the true reason before they are
opened: opening a named pipe blocks until some other process writes to it, and reading a
device may never end.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nlpft.errors import UserInputError

_READ_MORE_THAN_ONCE = "nlpft reads its inputs more than once (checks, then training)"


def _kind(mode: int) -> str | None:
    """A description of a non-regular, non-directory file mode; None for a file or directory."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a pipe (a named pipe/FIFO, or a process substitution such as <(...))"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_not_stream(path: str | os.PathLike) -> None:
    """Raise `UserInputError` when `path` exists and is a pipe, a device or a socket (after
    following symlinks); regular files, directories and missing paths pass (their own
    checks report them)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    kind = _kind(mode)
    if kind is None:
        return
    if stat.S_ISFIFO(mode):
        raise UserInputError(
            f"{path}: is {kind}, which can be read only once, but {_READ_MORE_THAN_ONCE}; write the stream to "
            f"a file first (e.g. `cat {path} > input{Path(path).suffix or '.txt'}`) and pass that"
        )
    raise UserInputError(f"{path}: is {kind}, not a regular file; pass a file")
