"""The subcommands of `orderbus` (cli.py puts them together): each module's `register(sub)` adds
its parsers to `sub` and sets `func`, a `Command`, on each."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeAlias

from workers.runtime.settings import Settings

# what `register` is given: the `orderbus` parser's add_subparsers()
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
# what a subcommand runs: (the parsed arguments, the settings) -> the exit code
Command: TypeAlias = Callable[[argparse.Namespace, Settings], int]
