"""The stand-in base image's builder finds the machine's own Debian mirror and keeps stdout for the tag."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "baseimage"))
import standin  # noqa: E402

DEB822 = """Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main

Types: deb deb-src
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main
"""


def _apt(tmp_path: Path, sources: dict[str, str]) -> Path:
    for name, text in sources.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_mirror_comes_from_deb822_sources(tmp_path):
    apt = _apt(tmp_path, {"sources.list.d/debian.sources": DEB822, "sources.list.d/old.sources.disabled": "URIs: http://x.invalid/"})
    assert standin.debian_mirror(apt, {}) == "http://mirror.invalid/debian"


def test_the_mirror_comes_from_one_line_sources(tmp_path):
    apt = _apt(tmp_path, {"sources.list": "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://local.invalid/debian bookworm main\n"})
    assert standin.debian_mirror(apt, {}) == "http://local.invalid/debian"


def test_another_release_archive_is_used_when_no_source_names_bookworm(tmp_path):
    apt = _apt(tmp_path, {"sources.list": "deb http://local.invalid/debian trixie main\n"})
    assert standin.debian_mirror(apt, {}) == "http://local.invalid/debian"


def test_debian_mirror_overrides_and_no_archive_is_a_clear_exit(tmp_path):
    assert standin.debian_mirror(tmp_path, {"DEBIAN_MIRROR": "http://given.invalid/debian"}) == "http://given.invalid/debian"
    with pytest.raises(SystemExit, match="set DEBIAN_MIRROR"):
        standin.debian_mirror(tmp_path, {})


def test_standin_prints_only_its_tag(base_image):
    # The demo passes standin.py's stdout to --base-image; one extra line broke it on fresh machines
    # (CI's first step builds it from nothing with --fresh, through the same main()).
    result = subprocess.run([sys.executable, standin.__file__], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout == base_image + "\n"
