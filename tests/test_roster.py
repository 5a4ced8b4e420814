"""Seats and credentials, and the roster in CSV, Markdown and HTML."""
from __future__ import annotations

import csv
import io
import os
import re
from html.parser import HTMLParser

from conftest import run_coursekit
from helpers import copy_course

SECRET = "correct-horse-battery-staple"
# From openssl, not from our code:
#   printf 'intro-to-data-science:alice' | openssl dgst -sha256 -hmac 'correct-horse-battery-staple' -binary | base64 | tr '+/' '-_' | tr -d '='
ALICE = "eB4brG-JJWB49YVMv9DWr1kuxIzPaQ1ELw6Zyvq4Tic"


def _roster(repo, *args, secret=SECRET, env=None):
    return run_coursekit(repo, "roster", *args, env={"COURSEKIT_SECRET": secret, **(env or {})})


def test_credential_matches_an_independent_hmac(coursekit):
    from coursekit.keys import token as credential

    assert credential(SECRET, "intro-to-data-science", "alice") == ALICE


def test_a_vms_tls_key_matches_an_independent_hmac_and_differs_from_its_token(coursekit):
    """The keys of VMs already deployed must not change: the scalar is HMAC-SHA256(secret, "tls:" slug ":" name)."""
    import hashlib
    import hmac

    from coursekit import keys

    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256's group order (SEC 2)
    for name in ("alice", keys.GATEWAY):
        digest = hmac.new(SECRET.encode(), f"tls:intro-to-data-science:{name}".encode(), hashlib.sha256).digest()
        scalar = keys.tls_key(SECRET, "intro-to-data-science", name).private_numbers().private_value
        assert scalar == int.from_bytes(digest, "big") % (order - 1) + 1
    assert keys.token(SECRET, "intro-to-data-science", keys.GATEWAY) != keys.token(SECRET, "intro-to-data-science", "alice")


def test_credentials_are_long_url_safe_and_distinct(coursekit):
    from coursekit.keys import token as credential

    tokens = {credential(SECRET, slug, seat) for slug in ("a", "ab", "course") for seat in ("b", "c", "spare-1")}
    assert len(tokens) == 9
    assert credential(SECRET, "ab", "c") != credential(SECRET, "a", "bc")
    assert credential(SECRET, "a", "b") != credential(SECRET + "x", "a", "b")
    for token in tokens:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)  # 256 bits, at least 128 required


def test_csv_roster_has_one_row_per_seat(course_repo):
    result = _roster(course_repo)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["seat"], r["role"]) for r in rows] == [
        ("alice", "student"), ("bob", "student"), ("carol", "student"), ("ada-lovelace", "instructor"), ("spare-1", "spare")
    ]
    assert rows[0]["credential"] == ALICE
    assert {r["url"] for r in rows} == {"(not deployed yet)"}


def test_markdown_roster(course_repo):
    result = _roster(course_repo, "--format", "md")
    assert result.returncode == 0
    assert "| alice | Alice Example | student | (not deployed yet) | `" + ALICE + "` |" in result.stdout.splitlines()


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.external, self.cells = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("link", "script", "img", "iframe") or ("src" in attrs):
            self.external.append((tag, attrs))

    def handle_data(self, data):
        if data.strip():
            self.cells.append(data.strip())


def grouped(credential: str) -> str:
    return " ".join(credential[i:i + 4] for i in range(0, len(credential), 4))


def test_html_roster_is_self_contained_and_escapes_names(course_repo, tmp_path):
    repo = copy_course(course_repo, tmp_path / "course")
    text = (repo / "course.yaml").read_text().replace("name: Bob Example", "name: \"<script>alert('x')</script> & Bob\"")
    (repo / "course.yaml").write_text(text)
    result = _roster(repo, "--format", "html")
    assert result.returncode == 0, result.stderr
    page = _Page()
    page.feed(result.stdout)
    assert page.external == []
    assert "<script>alert('x')</script> & Bob" in page.cells  # shown as text, not run
    assert any(grouped(ALICE) in cell for cell in page.cells)  # on alice's slip, in groups of four


def test_output_file_is_private(course_repo, tmp_path):
    target = tmp_path / "roster.html"
    result = _roster(course_repo, "--format", "html", "--output", str(target))
    assert result.returncode == 0, result.stderr
    assert os.stat(target).st_mode & 0o777 == 0o600
    assert grouped(ALICE) in target.read_text()
    assert ALICE not in result.stdout + result.stderr and grouped(ALICE) not in result.stdout + result.stderr


def test_missing_secret_says_how_to_make_one(course_repo):
    result = _roster(course_repo, secret="")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: COURSEKIT_SECRET is not set.")
    assert "secrets.token_urlsafe(32)" in result.stderr


def test_short_secret_is_refused(course_repo):
    result = _roster(course_repo, secret="tooshort")
    assert result.returncode == 1
    assert "COURSEKIT_SECRET is only 8 characters; use at least 16" in result.stderr


def test_roster_refuses_to_print_credentials_into_a_ci_log(course_repo):
    result = _roster(course_repo, env={"CI": "true"})
    assert result.returncode == 1
    assert "does not write to a CI log" in result.stderr
    assert result.stdout == ""
