"""`coursekit lock` resolves every package against the base image and pins it with hashes; build installs
from the lock and refuses a file whose hash differs; validate says when the lock no longer matches."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import run_coursekit
from helpers import SYSTEM_CA, build, commit, copy_course, edit_course

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("course_containers")]


@pytest.fixture
def course(course_repo, tmp_path) -> Path:
    repo = copy_course(course_repo, tmp_path / "course")
    edit_course(repo, lambda d: d["course"].update(slug="lock-course"))
    commit(repo, "course")
    return repo


def test_lock_pins_everything_with_hashes_and_build_installs_exactly_that(course, base_image, docker_client):
    locked = run_coursekit(course, "lock", "--base-image", base_image, "--ca-bundle", str(SYSTEM_CA))
    assert locked.returncode == 0, locked.stdout + locked.stderr
    lines = (course / "requirements.lock").read_text().splitlines()
    assert lines[0].startswith("# coursekit lock ") and f"resolved on {base_image}" in lines[0]
    pins = lines[1:]
    assert any(line.startswith("nibabel==5.4.2 --hash=sha256:") for line in pins)
    assert pins and all(re.fullmatch(r"[A-Za-z0-9._-]+==[^ ]+ --hash=sha256:[0-9a-f]{64}", line) for line in pins)
    assert not any(line.lower().startswith("pandas==") for line in pins)  # the base has it: not reinstalled
    assert run_coursekit(course, "validate").returncode == 0

    commit(course, "lock")
    built = build(course, base_image)
    assert built.returncode == 0, built.stderr
    image = built.stdout.strip()
    shown = docker_client.containers.run(image, ["pip", "show", "nibabel"], remove=True).decode()
    assert "Version: 5.4.2" in shown

    # A file that is not the one locked is refused, not installed.
    tampered = [re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, line) if line.startswith("nibabel==") else line
                for line in lines]
    (course / "requirements.lock").write_text("\n".join(tampered) + "\n")
    commit(course, "tampered lock")
    refused = build(course, base_image)
    assert refused.returncode == 1
    assert "DO NOT MATCH THE HASHES" in refused.stderr


def test_a_lock_made_from_other_packages_is_stale(course):
    (course / "requirements.lock").write_text("# coursekit lock 0123456789abcdef: made by hand\nnibabel==5.4.2 --hash=sha256:" + "1" * 64 + "\n")
    result = run_coursekit(course, "validate")
    assert result.returncode == 1
    assert "image.python_packages: requirements.lock was made from other packages than these; " \
           "run `python -m coursekit lock` again (or delete it)" in result.stderr
