"""`coursekit lock` resolves every package against the base image and pins it with hashes; build installs
from the lock and refuses a file whose hash differs; validate says when the lock no longer matches."""
from __future__ import annotations

import re
import time
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
    assert pins and all(re.fullmatch(r"[A-Za-z0-9._-]+==[^ ]+(?: --hash=sha256:[0-9a-f]{64})+", line) for line in pins)
    assert not any(line.lower().startswith("pandas==") for line in pins)  # the base has it: not reinstalled
    assert run_coursekit(course, "validate").returncode == 0
    # Nothing changed: lock returns at once, without a container, and leaves the file as it was.
    started = time.monotonic()
    again = run_coursekit(course, "lock", "--base-image", base_image, "--ca-bundle", str(SYSTEM_CA))
    assert again.returncode == 0 and "is up to date" in again.stdout and time.monotonic() - started < 5
    assert (course / "requirements.lock").read_text().splitlines() == lines

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


def _step(docker_client, built, marker: str) -> str:
    """The id of the image layer whose build step's command contains marker."""
    history = docker_client.images.get(built.stdout.strip()).history()
    return next(step["Id"] for step in history if marker in step["CreatedBy"])


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

    # Bump one pin: the settled block stays, the difference gets a layer of its own.
    edit_course(course, lambda d: d["image"].update(python_packages=["nibabel==5.4.0", "six==1.16.0"]))
    _lock(course, base_image)
    text = (course / "requirements.lock").read_text()
    settled, changed = text.split("# coursekit lock: changed since the lines above were settled\n")
    assert "nibabel==5.4.2 " in settled and "six==1.16.0 " in settled
    assert [line.split(" ")[0] for line in changed.splitlines() if not line.startswith("#")] == ["nibabel==5.4.0"]
    assert run_coursekit(course, "validate").returncode == 0
    commit(course, "bump nibabel")
    second = build(course, base_image)
    assert second.returncode == 0, second.stderr
    installed = _packages(docker_client, second.stdout.strip())
    assert installed["nibabel"] == "5.4.0" and installed["six"] == "1.16.0"
    # The settled packages' layer is the first build's own; only the changes' step ran again.
    settled_step, changes_step = "-r /tmp/coursekit-requirements.txt", "-r /tmp/coursekit-changes.txt"
    assert _step(docker_client, first, settled_step) == _step(docker_client, second, settled_step)
    assert _step(docker_client, first, changes_step) != _step(docker_client, second, changes_step)

    # six leaves the course: the base image's own six must come back, so the lock is one block again.
    base_six = _packages(docker_client, base_image)["six"]
    edit_course(course, lambda d: d["image"].update(python_packages=["nibabel==5.4.0"]))
    _lock(course, base_image)
    assert "changed since" not in (course / "requirements.lock").read_text()
    commit(course, "drop six")
    third = build(course, base_image)
    assert third.returncode == 0, third.stderr
    installed = _packages(docker_client, third.stdout.strip())
    assert installed["nibabel"] == "5.4.0" and installed["six"] == base_six != "1.16.0"


def test_a_lock_keeps_its_settled_block_until_the_base_image_changes(coursekit):
    from coursekit import lock

    a, b1, b2, c = ("a==1 --hash=sha256:" + "1" * 64, "b==1 --hash=sha256:" + "2" * 64,
                    "b==2 --hash=sha256:" + "3" * 64, "c==1 --hash=sha256:" + "4" * 64)
    first = lock.updated(None, "base:1", [a, b1, c])
    assert first == lock.Lock("base:1", (a, b1, c))
    second = lock.updated(first, "base:1", [a, b2, c])
    assert second == lock.Lock("base:1", (a, b1, c), changed=(b2,))
    assert lock.parse(lock.render(_course(coursekit), second)) == second
    assert lock.updated(second, "base:1", [a, b2]) == lock.Lock("base:1", (a, b2))  # c left: one block
    assert lock.updated(second, "base:2", [a, b2, c]) == lock.Lock("base:2", (a, b2, c))
    assert lock.updated(second, "base:1", [a, b2, c], settle=True) == lock.Lock("base:1", (a, b2, c))
    assert lock.parse("") == lock.Lock("", ())


def _course(coursekit):
    from coursekit.config import load_course

    return load_course(Path(coursekit.__file__).parents[1] / "course.yaml")
