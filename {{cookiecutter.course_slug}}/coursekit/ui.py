"""Consoles shared by every command: results to stdout, progress and errors to stderr."""
import sys

from rich.console import Console

# Wide when not a terminal, so tables in CI logs and pipes are not cut at 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 200)


def plural(n: int, word: str) -> str:
    """'1 seat', '3 seats'."""
    return f"{n} {word}{'' if n == 1 else 's'}"
