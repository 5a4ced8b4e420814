"""The roster: one row per seat with its URL and credential, as CSV, Markdown or HTML."""
from __future__ import annotations

import csv
import html
import io
import re
from dataclasses import dataclass
from typing import Callable, Mapping

from coursekit.config import Course
from coursekit.seats import SeatTokens, seats

NOT_DEPLOYED = "(not deployed yet)"
COLUMNS = ("seat", "name", "role", "url", "credential")
CSV_COLUMNS = (*COLUMNS, "link")  # the link that logs the student straight in: url + ?token=credential


@dataclass(frozen=True)
class Row:
    seat: str
    name: str
    role: str
    url: str
    credential: str

    @property
    def login_url(self) -> str | None:
        """The link that logs the student straight in, once the seat has a URL."""
        return f"{self.url.rstrip('/')}/?token={self.credential}" if self.url.startswith("http") else None


def rows(course: Course, tokens: SeatTokens, urls: Mapping[str, str] | None = None) -> list[Row]:
    """One Row per seat; seats without a known URL get a placeholder."""
    urls = urls or {}
    return [Row(s.id, s.name, s.role, urls.get(s.id, NOT_DEPLOYED), tokens.token(s.id)) for s in seats(course)]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """OWASP's rule against CSV injection: a cell a spreadsheet would run as a formula starts with a quote."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def to_csv(course: Course, table: list[Row]) -> str:
    """Spreadsheet-friendly CSV with a header row. Text from course.yaml is neutralised; the credential is
    left exact (it is HMAC output, never attacker-chosen, and scripts read it back)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180; a \r inside a cell is then quoted too
    writer.writerow(CSV_COLUMNS)
    writer.writerows([spreadsheet_safe(r.seat), spreadsheet_safe(r.name), r.role, spreadsheet_safe(r.url), r.credential,
                      spreadsheet_safe(r.login_url or "")] for r in table)
    return out.getvalue()


def _md(text: str) -> str:
    """Text as a literal in a Markdown table cell: punctuation that could open a link, HTML, code or a new column is escaped."""
    escaped = re.sub(r"([\\`\[\]<>|])", r"\\\1", text)
    return " ".join(escaped.splitlines())


def to_markdown(course: Course, table: list[Row]) -> str:
    """A Markdown table under the course's name."""
    lines = [f"# {_md(course.course.name)}: roster", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in table:
        url = f"[{_md(r.url)}]({r.login_url})" if r.login_url else _md(r.url)
        lines.append(f"| {_md(r.seat)} | {_md(r.name)} | {r.role} | {url} | `{r.credential}` |")
    return "\n".join(lines) + "\n"


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border: 1px solid #999; padding: .4rem .6rem; text-align: left; vertical-align: top; }}
code {{ font-size: .85em; word-break: break-all; }}
tr {{ break-inside: avoid; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>Each person uses only their own row. The link opens your environment and logs you in;
if it asks for a token, paste the credential.</p>
<table>
<thead><tr><th>Seat</th><th>Name</th><th>Role</th><th>Your environment</th><th>Credential</th></tr></thead>
<tbody>
{body}
</tbody>
</table>
</body>
</html>
"""


def to_html(course: Course, table: list[Row]) -> str:
    """A self-contained, printable page with one login link per seat."""
    body = []
    for r in table:
        link = f'<a href="{html.escape(r.login_url)}">{html.escape(r.url)}</a>' if r.login_url else html.escape(r.url)
        cells = (html.escape(r.seat), html.escape(r.name), r.role, link, f"<code>{r.credential}</code>")
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return _PAGE.format(title=html.escape(f"{course.course.name}: roster"), body="\n".join(body))


FORMATS: dict[str, Callable[[Course, list[Row]], str]] = {"csv": to_csv, "md": to_markdown, "html": to_html}
