"""Errors that the CLI turns into exit codes.

`UserInputError` means the user can fix it (bad path, bad flag, bad file): exit code 2,
one clear line. Anything else escaping a command is an internal error: exit code 1.
"""


class UserInputError(Exception):
    """Bad input: the message names the file, row or field and says what to do."""

    exit_code = 2


class ResourceLimitError(UserInputError):
    """The job would need more memory or disk than the user allowed."""
