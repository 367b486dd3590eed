"""The user-facing errors: each carries one line that names the problem and the fix.

Command-line entry points print `str(error)` and exit with code 2; anything else
that escapes is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """Bad input from the user (config, flags, files): reported as one line, exit 2."""


class ConfigError(UserError):
    """An unknown name or an invalid value in a trial config."""


class DataError(UserError):
    """A dataset that is missing, truncated or malformed."""
