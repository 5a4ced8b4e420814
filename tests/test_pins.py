"""`validate --online` finds a pin that does not exist in seconds, against a package index made here
(a PEP 503 simple index in a folder; pip reads it as it reads any mirror)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import copy_course, edit_course

pytestmark = pytest.mark.slow  # pip asks a package index

VERSIONS = {"nibabel": ["5.3.3", "5.4.0", "5.4.2"], "dipy": ["1.11.0", "1.12.0", "1.12.1"]}


@pytest.fixture
def index(tmp_path) -> Path:
    root = tmp_path / "index"
    for name, versions in VERSIONS.items():
        (root / name).mkdir(parents=True)
        links = "".join(f'<a href="{name}-{v}-py3-none-any.whl">{name}-{v}-py3-none-any.whl</a>\n' for v in versions)
        (root / name / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    return root


def _validate_online(repo: Path, index: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k not in ("CI", "COURSEKIT_SECRET")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=index.as_uri())
    return subprocess.run([sys.executable, "-m", "coursekit", "validate", "--online"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_pin_the_index_lacks_fails_fast_with_the_closest_versions(course_repo, tmp_path, index):
    repo = copy_course(course_repo, tmp_path / "course")
    edit_course(repo, lambda d: d["image"].update(python_packages=[
        "nibabel==5.4.2", "dipy==1.12.9", 'coursekit-no-such-package==1.0; python_version >= "3"']))
    started = time.monotonic()
    result = _validate_online(repo, index)
    assert time.monotonic() - started < 30
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "error: 2 problems in course.yaml:"
    assert "image.python_packages[1]: 'dipy==1.12.9': dipy has no version 1.12.9 on the package index; " \
           "closest: 1.12.0, 1.12.1 (newest: 1.12.1)" in lines[1]
    assert "image.python_packages[2]: 'coursekit-no-such-package==1.0; python_version >= \"3\"': " \
           "the package index has no package called 'coursekit-no-such-package'" in lines[2]


def test_pins_the_index_has_pass(course_repo, tmp_path, index):
    repo = copy_course(course_repo, tmp_path / "course")
    edit_course(repo, lambda d: d["image"].update(python_packages=["nibabel==5.4.2", "dipy==1.11.0"]))
    result = _validate_online(repo, index)
    assert result.returncode == 0, result.stderr
