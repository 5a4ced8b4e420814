"""The roster: one row per seat with its URL and credential, as CSV, Markdown or HTML."""
from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass
from typing import Callable, Mapping

from coursekit.config import Course
from coursekit.seats import SeatTokens, seats
from coursekit.summary import cell

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


def to_markdown(course: Course, table: list[Row]) -> str:
    """A Markdown table under the course's name."""
    lines = [f"# {cell(course.course.name)}: roster", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in table:
        url = f"[{cell(r.url)}]({r.login_url})" if r.login_url else cell(r.url)
        lines.append(f"| {cell(r.seat)} | {cell(r.name)} | {r.role} | {url} | `{r.credential}` |")
    return "\n".join(lines) + "\n"


SLIPS_PER_PAGE = 4  # 60 mm each: four fit A4 and US Letter alike, with margins

_STYLE = """
@page { margin: 12mm; }
body { font-family: system-ui, sans-serif; margin: 0; color: #111; }
main { max-width: 180mm; margin: 0 auto; }
.slip { box-sizing: border-box; height: 60mm; padding: 4mm 2mm; border-bottom: 1px dashed #444;
        display: grid; grid-template-columns: 38mm 1fr; column-gap: 5mm; break-inside: avoid; overflow: hidden; }
.slip.last-on-page { break-after: page; }
.qr svg { width: 36mm; height: 36mm; }
.course { font-size: 10pt; margin: 0; }
.slip h2 { font-size: 16pt; margin: 1mm 0 2mm; }
.slip p { margin: 1mm 0; font-size: 10pt; }
a { color: #0645ad; word-break: break-all; }
.credential { font-family: ui-monospace, monospace; font-size: 12pt; letter-spacing: .05em; word-spacing: .4em; }
.cut { font-size: 8pt; color: #444; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #666; padding: .3rem .5rem; text-align: left; }
"""


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<meta name="robots" content="noindex">\n'
            f"<title>{title}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n")


def grouped(credential: str, size: int = 4) -> str:
    """A credential in groups of four characters, for reading aloud and typing from paper."""
    return " ".join(credential[i:i + size] for i in range(0, len(credential), size))


def qr_svg(link: str, label: str) -> str:
    """An inline SVG QR code of link (segno), titled for screen readers."""
    import segno

    return segno.make(link, error="m").svg_inline(scale=4, border=2, title=label)


def _slip(course: Course, row: Row, last_on_page: bool) -> str:
    name = html.escape(row.name)
    if row.login_url:
        link = html.escape(row.login_url)
        qr = f'<div class="qr">{qr_svg(row.login_url, f"QR code of the link for {row.name}")}</div>'
        opening = (f'<p>Scan the code, or open this link: it logs you in.</p>\n<p><a href="{link}">{link}</a></p>')
    else:
        qr = '<div class="qr"></div>'
        opening = f"<p>Your environment: {html.escape(row.url)}</p>"
    classes = "slip last-on-page" if last_on_page else "slip"
    return (f'<section class="{classes}" aria-label="Slip for {name}">\n{qr}\n<div>\n'
            f'<p class="course">{html.escape(course.course.name)}</p>\n<h2>{name}</h2>\n'
            f"<p>Seat: {html.escape(row.seat)}</p>\n{opening}\n"
            f'<p>If it asks for a token or password, type: <span class="credential">{grouped(row.credential)}</span>'
            " (without the spaces)</p>\n"
            '<p class="cut">Keep this slip to yourself; it opens your environment.</p>\n</div>\n</section>')


def to_html(course: Course, table: list[Row]) -> str:
    """A self-contained, printable page: one slip per seat to cut apart (course, name, a link that logs in, its QR
    code, the credential in groups), four to a page, never split across pages."""
    slips = [_slip(course, row, i % SLIPS_PER_PAGE == SLIPS_PER_PAGE - 1 and i != len(table) - 1)
             for i, row in enumerate(table)]
    title = html.escape(f"{course.course.name}: slips")
    return _page(title, f'<h1 class="cut">{title} (cut along the dashed lines)</h1>\n' + "\n".join(slips))


def to_sheet(course: Course, table: list[Row], states: Mapping[str, str] | None = None) -> str:
    """The instructor's sheet: seat, name, role and state, without any credential."""
    states = states or {}
    lines = [f"<tr><td>{html.escape(r.seat)}</td><td>{html.escape(r.name)}</td><td>{r.role}</td>"
             f"<td>{html.escape(states.get(r.seat, 'not deployed'))}</td></tr>" for r in table]
    title = html.escape(f"{course.course.name}: seats")
    return _page(title, f"<h1>{title}</h1>\n<table>\n<thead><tr><th scope=\"col\">Seat</th><th scope=\"col\">Name</th>"
                        f"<th scope=\"col\">Role</th><th scope=\"col\">State</th></tr></thead>\n<tbody>\n"
                        + "\n".join(lines) + "\n</tbody>\n</table>")


FORMATS: dict[str, Callable[[Course, list[Row]], str]] = {"csv": to_csv, "md": to_markdown, "html": to_html, "sheet": to_sheet}
