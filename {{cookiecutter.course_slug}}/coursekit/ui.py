"""Consoles shared by every command: results to stdout, progress and errors to stderr."""
import sys

from rich.console import Console
from rich.text import Text

# Wide when not a terminal, so tables in CI logs and pipes are not cut at 80 columns. No console markup:
# names, paths and messages come from course.yaml and the cloud, and "[/]" in a student's name is text.
out = Console(markup=False, highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, markup=False, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 200)


def styled(text: str, style: str) -> Text:
    """Text in a style (a word of a report in colour), never parsed as markup."""
    return Text(text, style=style)


def warn(message: str) -> None:
    """'warning: MESSAGE' on stderr."""
    err.print(Text.assemble(styled("warning", "yellow"), f": {message}"))


def plural(n: int, word: str) -> str:
    """'1 seat', '3 seats'."""
    return f"{n} {word}{'' if n == 1 else 's'}"
