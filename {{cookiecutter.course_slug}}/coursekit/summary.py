"""A run's page for the instructor: Markdown appended to GitHub Actions' job summary ($GITHUB_STEP_SUMMARY).

Elsewhere (a laptop) nothing is written. Never a credential: callers pass links without their token.
"""
from __future__ import annotations

import os
import re
from typing import Iterable, Sequence

VARIABLE = "GITHUB_STEP_SUMMARY"


def cell(text: object) -> str:
    """Text as a literal in a Markdown table cell: what could open a link, HTML, code or a new column is escaped."""
    escaped = re.sub(r"([\\`\[\]<>|])", r"\\\1", str(text))
    return " ".join(escaped.splitlines())


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write(title: str, body: str = "") -> None:
    """Append a section to the job summary, when there is one."""
    path = os.environ.get(VARIABLE)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"### {cell(title)}\n\n{body}\n")
