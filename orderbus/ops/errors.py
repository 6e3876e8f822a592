"""Errors every wing of the command line may raise and `orderbus` turns into a message."""


class UsageError(ValueError):
    """Bad input from the command line or a file: a clear message, exit 2."""


def summary(e: BaseException) -> str:
    """An exception in one line, as a frame or a caveat shows it: its message's first line, or
    its type's name."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
