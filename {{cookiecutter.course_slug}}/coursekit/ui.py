"""Consoles shared by every command: results to stdout, progress and errors to stderr."""
from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def plural(n: int, word: str) -> str:
    """'1 seat', '3 seats'."""
    return f"{n} {word}{'' if n == 1 else 's'}"
