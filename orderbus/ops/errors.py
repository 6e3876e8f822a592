"""Errors every wing of the command line may raise and `orderbus` turns into a message."""


class UsageError(ValueError):
    """Bad input from the command line or a file: a clear message, exit 2."""
