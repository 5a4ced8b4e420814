"""`coursekit lock` resolves every package against the base image and pins it with hashes; build installs
from the lock and refuses a file whose hash differs; validate says when the lock no longer matches."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import run_coursekit
from helpers import SYSTEM_CA, build, commit, copy_course, edit_course


@pytest.fixture
def course(course_repo, tmp_path) -> Path:
    repo = copy_course(course_repo, tmp_path / "course")
    edit_course(repo, lambda d: d["course"].update(slug="lock-course"))
    commit(repo, "course")
    return repo


@pytest.mark.docker
@pytest.mark.usefixtures("course_containers")
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


def _lock(course: Path, base_image: str, *extra: str) -> None:
    locked = run_coursekit(course, "lock", "--base-image", base_image, "--ca-bundle", str(SYSTEM_CA), *extra)
    assert locked.returncode == 0, locked.stdout + locked.stderr


def _layers(docker_client, image: str) -> list[str]:
    return docker_client.images.get(image).attrs["RootFS"]["Layers"]


def _packages(docker_client, image: str) -> dict[str, str]:
    listing = docker_client.containers.run(image, ["pip", "list", "--format", "freeze"], remove=True).decode()
    return dict(line.lower().split("==", 1) for line in listing.split())


@pytest.mark.docker
@pytest.mark.usefixtures("course_containers")
def test_a_pin_change_reinstalls_only_what_changed_and_settle_folds_it_in(course, base_image, docker_client):
    edit_course(course, lambda d: d["image"].update(python_packages=["nibabel==5.4.2", "six==1.16.0"]))
    _lock(course, base_image)
    commit(course, "lock")
    first = build(course, base_image)
    assert first.returncode == 0, first.stderr

    # Bump one pin and drop another: the settled block stays, the difference gets a layer of its own.
    edit_course(course, lambda d: d["image"].update(python_packages=["nibabel==5.4.0"]))
    _lock(course, base_image)
    text = (course / "requirements.lock").read_text()
    settled, changed = text.split("# coursekit lock: changed since the lines above were settled\n")
    assert "nibabel==5.4.2 " in settled and "six==1.16.0 " in settled
    assert re.search(r"^nibabel==5\.4\.0 --hash=sha256:[0-9a-f]{64}$", changed, re.M)
    assert "# coursekit lock: removed six\n" in changed
    assert run_coursekit(course, "validate").returncode == 0
    commit(course, "bump nibabel, drop six")
    second = build(course, base_image)
    assert second.returncode == 0, second.stderr
    installed = _packages(docker_client, second.stdout.strip())
    assert installed["nibabel"] == "5.4.0" and "six" not in installed
    # The base's layers, then CA bundle, apt, conda, requirements and the settled packages: all reused.
    reused = len(_layers(docker_client, base_image)) + 5
    before, after = _layers(docker_client, first.stdout.strip()), _layers(docker_client, second.stdout.strip())
    assert after[:reused] == before[:reused] and after != before

    _lock(course, base_image, "--settle")
    assert "changed since" not in (course / "requirements.lock").read_text()
    commit(course, "settle")
    third = build(course, base_image)
    assert third.returncode == 0, third.stderr
    installed = _packages(docker_client, third.stdout.strip())
    assert installed["nibabel"] == "5.4.0" and "six" not in installed


def test_a_lock_keeps_its_settled_block_until_the_base_image_changes(coursekit):
    from coursekit import lock

    a, b1, b2, c = ("a==1 --hash=sha256:" + "1" * 64, "b==1 --hash=sha256:" + "2" * 64,
                    "b==2 --hash=sha256:" + "3" * 64, "c==1 --hash=sha256:" + "4" * 64)
    first = lock.updated(None, "base:1", [a, b1, c])
    assert first == lock.Lock("base:1", (a, b1, c))
    second = lock.updated(first, "base:1", [a, b2])
    assert second == lock.Lock("base:1", (a, b1, c), changed=(b2,), removed=("c",))
    assert lock.updated(second, "base:1", [a, b2, c]) == lock.Lock("base:1", (a, b1, c), changed=(b2,))
    assert lock.updated(second, "base:2", [a, b2]) == lock.Lock("base:2", (a, b2))
    assert lock.updated(second, "base:1", [a, b2], settle=True) == lock.Lock("base:1", (a, b2))
    assert lock.parse("") == lock.Lock("", ())
