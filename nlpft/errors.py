"""Errors that the CLI turns into exit codes.

`UserInputError` means the user can fix it (bad path, bad flag, bad file): exit code 2,
one clear line. Anything else escaping a command is an internal error: exit code 1.
"""


class UserInputError(Exception):
    """Bad input: the message names the file, row or field and says what to do."""

    exit_code = 2


class ResourceLimitError(UserInputError):
    """The job would need more memory or disk than the user allowed."""


#: numpy and scikit-learn take seeds in [0, 2**32); torch takes those too
SEED_LIMIT = 2**32


def check_seed(seed: object, name: str = "--seed") -> None:
    """Raise for a seed that one of the libraries nlpft seeds would reject (mid-run)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise UserInputError(f"{name} must be a whole number from 0 to {SEED_LIMIT - 1}, not {seed!r}")


def check_threads(threads: object) -> None:
    """None means all cores; anything else must be a thread count torch accepts."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise UserInputError(f"--threads must be at least 1 (or left out for all cores), not {threads!r}")


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; a checkpoint was written."""
