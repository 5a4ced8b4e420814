"""image.conda_packages: installed with mamba (in the stand-in base, a py-rattler implementation of mamba's
install and clean) from a conda channel made and served in the test, before the Python packages."""
from __future__ import annotations

from pathlib import Path

import pytest
from condachannel import conda_package, index_channel
from helpers import build, commit, copy_course, edit_course

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("course_containers")]

SHARED = "share/coursekit-hello/hello.txt"


@pytest.fixture
def course(course_repo, tmp_path, data_server) -> Path:
    channel = data_server.root / "channel"
    for version in ("1.0", "2.0"):
        conda_package(channel, "coursekit-hello", version, {SHARED: f"hello {version}\n".encode()})
    index_channel(channel)
    repo = copy_course(course_repo, tmp_path / "course")
    edit_course(repo, lambda d: d["image"].update(
        conda_packages=["coursekit-hello==1.0"], conda_channels=[f"{data_server.url}/channel"]))
    commit(repo, "course")
    return repo


def _read(docker_client, image: str, path: str) -> str:
    return docker_client.containers.run(image, ["cat", path], remove=True).decode()


def test_conda_packages_are_installed_cleaned_and_owned_by_the_user(course, base_image, docker_client, data_server):
    built = build(course, base_image, "--network", "host")
    assert built.returncode == 0, built.stderr
    image = built.stdout.strip()
    assert _read(docker_client, image, f"/opt/conda/{SHARED}") == "hello 1.0\n"
    checks = docker_client.containers.run(
        image, ["sh", "-c", "test ! -e /opt/conda/pkgs && echo cleaned; stat -c '%u:%g' /opt/conda/share; ls /opt/conda/conda-meta"],
        remove=True).decode().split()
    assert checks[:2] == ["cleaned", "1000:100"] and "coursekit-hello-1.0-0.json" in checks[2:]
    assert "/channel/noarch/coursekit-hello-1.0-0.tar.bz2" in data_server.requests

    edit_course(course, lambda d: d["image"].update(conda_packages=["coursekit-hello==2.0"]))
    commit(course, "conda pin")
    rebuilt = build(course, base_image, "--network", "host")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert _read(docker_client, rebuilt.stdout.strip(), f"/opt/conda/{SHARED}") == "hello 2.0\n"


def test_a_conda_pin_that_does_not_exist_fails_the_build_naming_it(course, base_image):
    edit_course(course, lambda d: d["image"].update(conda_packages=["coursekit-hello==9.9"]))
    commit(course, "missing pin")
    failed = build(course, base_image, "--network", "host")
    assert failed.returncode == 1
    assert "coursekit-hello ==9.9" in failed.stderr or "coursekit-hello==9.9" in failed.stderr, failed.stderr
