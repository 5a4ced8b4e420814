"""The image pipeline on a real Docker engine and a real registry: bake → build → test → publish → pull → run."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_coursekit
from helpers import build, commit, copy_course, git
from services import remove_course_layers

pytestmark = pytest.mark.usefixtures("course_containers")


def _edit(repo: Path, old: str, new: str) -> None:
    path = repo / "course.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


@pytest.fixture
def course(course_repo, tmp_path, registry) -> Path:
    """A private copy of the default bake, published to the loopback registry, committed on main."""
    repo = copy_course(course_repo, tmp_path / "course")
    _edit(repo, 'registry: "docker.io"', f'registry: "{registry}"')
    commit(repo, "course")
    return repo


def test_bake_build_test_publish_pull_run(course, base_image, registry, docker_client):
    sha = git(course, "rev-parse", "--short", "HEAD")
    name = f"{registry}/your-user/intro-to-data-science"

    built = build(course, base_image)
    assert built.returncode == 0, built.stderr
    assert built.stdout.strip() == f"{name}:{sha}"
    assert "Step 1/" in built.stderr  # progress is streamed, not silence
    labels = docker_client.images.get(f"{name}:{sha}").labels
    assert labels["org.coursekit.course"] == "intro-to-data-science" and labels["org.opencontainers.image.revision"] == sha

    tested = run_coursekit(course, "test")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    for check in ("server starts", "credential required", "data verified", "notebook 01-welcome.ipynb", "pip check"):
        assert check in tested.stdout

    published = run_coursekit(course, "publish", env={"REGISTRY_USERNAME": "ci-bot", "REGISTRY_PASSWORD": "s3cr3t-Pa55"})
    assert published.returncode == 0, published.stderr
    assert "s3cr3t-Pa55" not in published.stdout + published.stderr
    pushed = dict(line.split(" ") for line in published.stdout.splitlines())
    date = time.strftime("%Y-%m-%d", time.gmtime())
    assert set(pushed) == {f"{name}:{sha}", f"{name}:{date}", f"{name}:latest"}  # main branch: latest too
    (digest,) = set(pushed.values())

    for tag in (sha, date, "latest"):
        docker_client.images.remove(f"{name}:{tag}")
    pulled = docker_client.images.pull(f"{name}@{digest}")
    assert f"{name}@{digest}" in pulled.attrs["RepoDigests"]
    rerun = run_coursekit(course, "test", "--image", f"{name}@{digest}")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "3 code cells ran" in rerun.stdout  # code cells as Jupyter counts them (the notebook has 5 cells, 3 of code)


def test_latest_only_on_main(course, base_image, registry):
    git(course, "checkout", "-q", "-b", "feature")
    assert build(course, base_image).returncode == 0
    published = run_coursekit(course, "publish")
    assert published.returncode == 0, published.stderr
    assert not any(line.split(" ")[0].endswith(":latest") for line in published.stdout.splitlines())
    assert len(published.stdout.splitlines()) == 2


def test_notebook_only_change_reuses_every_dependency_layer(course, base_image, docker_client, registry):
    assert build(course, base_image).returncode == 0
    before = docker_client.images.get(f"{registry}/your-user/intro-to-data-science:{git(course, 'rev-parse', '--short', 'HEAD')}")
    notebook = course / "notebooks" / "01-welcome.ipynb"
    nb = json.loads(notebook.read_text())
    nb["cells"][0]["source"].append("\nEdited during class.")
    notebook.write_text(json.dumps(nb, indent=1))
    sha = commit(course, "edit a notebook")
    rebuilt = build(course, base_image)
    assert rebuilt.returncode == 0
    after = docker_client.images.get(f"{registry}/your-user/intro-to-data-science:{sha}")
    old, new = before.attrs["RootFS"]["Layers"], after.attrs["RootFS"]["Layers"]
    # Only the last layer (the notebooks and their history) differs.
    assert len(old) == len(new) and old[:-1] == new[:-1] and old[-1] != new[-1]


def test_ci_runner_reuses_the_published_layers(course, base_image, docker_client, registry):
    """A CI runner starts with no layers: --cache-from latest pulls the last published image and reuses its."""
    # Its own image name, and a layer chain no other test shares.
    _edit(course, 'slug: "intro-to-data-science"', 'slug: "ci-runner-course"')
    _edit(course, 'repository: "your-user/intro-to-data-science"', 'repository: "your-user/ci-runner-course"')
    commit(course, "own image")
    name = f"{registry}/your-user/ci-runner-course"
    first = build(course, base_image, "--cache-from", "latest")  # the first push: nothing is published yet
    assert first.returncode == 0, first.stderr
    assert f"cannot pull {name}:latest" in first.stderr and "building without it" in first.stderr
    assert run_coursekit(course, "publish").returncode == 0
    published = docker_client.images.get(f"{name}:latest").attrs["RootFS"]["Layers"]

    # What a fresh runner has: the base image, none of the course's layers.
    remove_course_layers(docker_client, "ci-runner-course")
    notebook = course / "notebooks" / "01-welcome.ipynb"
    nb = json.loads(notebook.read_text())
    nb["cells"][0]["source"].append("\nEdited on a branch.")
    notebook.write_text(json.dumps(nb, indent=1))
    sha = commit(course, "edit a notebook")

    rebuilt = build(course, base_image, "--cache-from", "latest")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"pulling {name}:latest" in rebuilt.stderr
    layers = docker_client.images.get(f"{name}:{sha}").attrs["RootFS"]["Layers"]
    # Re-running pip would make new layers; only the notebooks' layer may differ.
    assert len(layers) == len(published) and layers[:-1] == published[:-1] and layers[-1] != published[-1]


def test_data_over_http_with_retries_and_when_build(course, base_image, data_server):
    url, sha = data_server.add("atlas.csv", b"region,volume\nhippocampus,4100\n")
    baked_url, baked_sha = data_server.add("baked.csv", b"baked,at,build\n")
    data_server.failures["/atlas.csv"] = 2  # the container's fetch must retry through two 503s
    _edit(course, "data:                   # files every student finds in ~/data, verified by sha256\n", (
        "data:\n"
        f"  - {{url: '{url}', sha256: {sha}, path: atlas/atlas.csv}}\n"
        f"  - {{url: '{baked_url}', sha256: {baked_sha}, path: baked.csv, when: build}}\n"
    ))
    commit(course, "remote data")
    built = build(course, base_image, "--network", "host")
    assert built.returncode == 0, built.stderr
    assert data_server.requests.count("/baked.csv") == 1  # fetched once, at build time
    tested = run_coursekit(course, "test", "--network", "host")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "3 file(s) in ~/data match their sha256" in tested.stdout
    assert data_server.requests.count("/atlas.csv") == 3 and data_server.requests.count("/baked.csv") == 1


def test_restart_keeps_verified_data_and_student_notebooks(course, base_image, docker_client, registry):
    assert build(course, base_image).returncode == 0
    image = f"{registry}/your-user/intro-to-data-science:{git(course, 'rev-parse', '--short', 'HEAD')}"
    volume = docker_client.volumes.create()
    options = dict(
        detach=True, volumes={volume.name: {"bind": "/home/jovyan", "mode": "rw"}},
        environment={"JUPYTER_TOKEN": "t" * 32}, labels={"org.coursekit.role": "image-test"},
    )
    try:
        first = docker_client.containers.run(image, **options)
        _wait_for_log(first, "Jupyter Server")
        first.exec_run(["sh", "-c", "echo 'my answer' >> ~/notebooks/01-welcome.ipynb"])
        first.remove(force=True)
        second = docker_client.containers.run(image, **options)
        logs = _wait_for_log(second, "Jupyter Server")
        assert "brain_volumes.csv: present, verified" in logs
        code, output = second.exec_run(["tail", "-1", "/home/jovyan/notebooks/01-welcome.ipynb"])
        assert output.decode().strip() == "my answer"
        second.remove(force=True)
    finally:
        volume.remove(force=True)


def _wait_for_log(container, needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = container.logs().decode()
        if needle in logs:
            return logs
        time.sleep(0.5)
    raise AssertionError(f"{needle!r} never appeared in:\n{container.logs().decode()}")


def test_a_notebook_that_raises_names_notebook_cell_and_error(course, base_image):
    broken = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": "a", "metadata": {}, "outputs": [], "source": ["x = 1"]},
            {"cell_type": "code", "execution_count": None, "id": "b", "metadata": {}, "outputs": [],
             "source": ["raise ValueError('the data looks wrong')"]},
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    (course / "notebooks" / "02-broken.ipynb").write_text(json.dumps(broken))
    commit(course, "broken notebook")
    assert build(course, base_image).returncode == 0
    tested = run_coursekit(course, "test")
    assert tested.returncode == 1
    row = next(line for line in tested.stdout.splitlines() if "02-broken.ipynb" in line)
    assert "FAIL" in row and "cell 2: ValueError: the data looks wrong" in row
    assert "error: 1 check failed: notebook 02-broken.ipynb" in tested.stderr
    assert "Traceback" not in tested.stderr


def test_a_package_that_does_not_exist_fails_the_build_clearly(course, base_image):
    _edit(course, "- nibabel==5.4.2", "- coursekit-no-such-package==1.0")
    commit(course, "bad package")
    built = build(course, base_image)
    assert built.returncode == 1 and "Traceback" not in built.stderr
    # The failing step is the pinned-packages one, named with its number and command.
    assert re.search(r'error: image build failed at Step \d+/\d+ : RUN if \[ -s /tmp/coursekit-requirements.txt \]', built.stderr)
    assert "returned a non-zero code: 1" in built.stderr
    assert "No matching distribution found for coursekit-no-such-package==1.0" in built.stderr


def test_a_failing_dockerfile_step_shows_the_step_and_its_output(course, base_image):
    with (course / "Dockerfile").open("a") as dockerfile:
        dockerfile.write("RUN echo 'preparing the lesson' && ls /no/such/dir\n")
    commit(course, "broken Dockerfile")
    built = build(course, base_image)
    assert built.returncode == 1
    assert "RUN echo 'preparing the lesson' && ls /no/such/dir" in built.stderr
    assert "| preparing the lesson" in built.stderr
    assert "No such file or directory" in built.stderr


def test_a_checksum_mismatch_fails_the_image_test_though_jupyter_starts(course, base_image, data_server):
    url, _ = data_server.add("atlas.csv", b"the real file")
    _edit(course, "data:                   # files every student finds in ~/data, verified by sha256\n",
          f"data:\n  - {{url: '{url}', sha256: {'f' * 64}, path: atlas.csv}}\n")
    commit(course, "wrong checksum")
    assert build(course, base_image).returncode == 0
    tested = run_coursekit(course, "test", "--network", "host")
    assert tested.returncode == 1
    assert "FAIL  data verified" in tested.stdout and "atlas.csv: missing or sha256 mismatch" in tested.stdout
    assert "error: 1 check failed: data verified" in tested.stderr


def test_a_registry_that_refuses_the_push(course, base_image, readonly_registry, registry):
    _edit(course, f'registry: "{registry}"', f'registry: "{readonly_registry}"')
    commit(course, "read-only registry")
    assert build(course, base_image).returncode == 0
    published = run_coursekit(course, "publish")
    assert published.returncode == 1 and "Traceback" not in published.stderr
    assert f"error: the registry refused {readonly_registry}/your-user/intro-to-data-science:" in published.stderr


def test_publish_without_a_build_says_to_build(course):
    published = run_coursekit(course, "publish")
    assert published.returncode == 1
    assert "is not here; build it first with `python -m coursekit build`" in published.stderr


def test_half_set_registry_credentials_are_an_error(course, base_image):
    assert build(course, base_image).returncode == 0
    published = run_coursekit(course, "publish", env={"REGISTRY_USERNAME": "me"})
    assert published.returncode == 1
    assert "REGISTRY_PASSWORD is not set; set both REGISTRY_USERNAME and REGISTRY_PASSWORD" in published.stderr


def test_ctrl_c_during_test_removes_the_container(course, base_image, docker_client):
    assert build(course, base_image).returncode == 0
    process = subprocess.Popen([sys.executable, "-m", "coursekit", "test"], cwd=course, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not docker_client.containers.list(filters={"label": "org.coursekit.role=image-test"}):
        assert time.monotonic() < deadline and process.poll() is None, "the test container never started"
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert docker_client.containers.list(all=True, filters={"label": "org.coursekit.role=image-test"}) == []


def test_no_docker_engine_is_a_clear_error(course):
    result = run_coursekit(course, "build", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: cannot reach the Docker engine")
