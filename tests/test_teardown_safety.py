"""Teardown survives any home and any archive folder: a sparse 1 TiB file, a student's files named like the
archive's own, a truncated older archive and a dangling link beside it; seats go a few at once, and
--keep-volumes keeps bounded homes with their disk files."""
from __future__ import annotations

import os
import tarfile
import time
from pathlib import Path

import pytest
from conftest import run_coursekit
from helpers import archive_file, build, edit_course

pytestmark = pytest.mark.docker

ENV = {"COURSEKIT_SECRET": "teardown-safety-5Rt8Yu2Io4Pa"}
SLUG = "safe-teardown"


def test_teardown_goes_on_past_a_sparse_home_and_a_damaged_folder_and_keeps_what_it_is_asked_to(
        fleet_factory, base_image, docker_client, tmp_path):
    repo = fleet_factory(SLUG, students=["kim", "lee", "max"])
    edit_course(repo, lambda d: d["fleet"]["docker"].update(disk="128m"))
    assert build(repo, base_image).returncode == 0
    deployed = run_coursekit(repo, "deploy", env=ENV)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    kim, lee = (docker_client.containers.get(f"coursekit-{SLUG}.{seat}") for seat in ("kim", "lee"))
    assert kim.exec_run(["truncate", "-s", "1T", "/home/jovyan/huge.bin"]).exit_code == 0
    lee_files = {"MANIFEST.sha256": b"the student's own manifest\n", "MANIFEST.json": b"{}", "home/notes.txt": b"n",
                 "work/answer.txt": b"lee's answer"}
    for rel, content in lee_files.items():
        assert lee.put_archive("/home/jovyan", _tar_of(rel, content))
    arch = tmp_path / "arch"
    arch.mkdir(mode=0o700)
    damaged = _truncated_archive()
    (arch / "lee.tar.gz").write_bytes(damaged)
    (arch / "max.tar.gz").symlink_to(tmp_path / "gone.tar.gz")

    started = time.monotonic()
    torn = run_coursekit(repo, "teardown", "--yes", "--keep-volumes", "--archive-dir", str(arch), env=ENV)
    took = time.monotonic() - started
    assert torn.returncode == 1 and "Traceback" not in torn.stderr, torn.stdout + torn.stderr
    assert "'huge.bin' is 1,024 GiB (a sparse file" in torn.stdout + torn.stderr
    assert took < 120, took
    assert (arch / "lee.tar.gz").read_bytes() == damaged  # the damaged file is left as it was
    for rel, content in lee_files.items():
        assert archive_file(arch / "lee.2.tar.gz", rel) == content, rel
    with tarfile.open(arch / "lee.2.tar.gz") as tar:
        assert [m.name for m in tar.getmembers()[:3]] == ["MANIFEST.sha256", "MANIFEST.json", "home"]
    assert (arch / "max.2.tar.gz").is_file() and os.path.islink(arch / "max.tar.gz")
    listed = run_coursekit(repo, "archives", "--archive-dir", str(arch), env=ENV)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert docker_client.containers.get(f"coursekit-{SLUG}.kim").status == "running"  # left in place, work and all

    # The sparse file gone, teardown finishes, and --keep-volumes keeps every home and its disk file.
    assert kim.exec_run(["rm", "/home/jovyan/huge.bin"]).exit_code == 0
    again = run_coursekit(repo, "teardown", "--yes", "--keep-volumes", "--archive-dir", str(arch), env=ENV)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "but its volumes (--keep-volumes)" in again.stdout
    volumes = docker_client.volumes.list(filters={"label": f"org.coursekit.course={SLUG}"})
    assert len(volumes) == 3
    assert len(list(Path("/var/lib/coursekit/homes").glob(f"coursekit-{SLUG}.*.img"))) == 3
    assert (arch / "kim.tar.gz").is_file()


def _tar_of(rel: str, content: bytes) -> bytes:
    import io

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(rel)
        info.size, info.uid, info.gid, info.mode = len(content), 1000, 100, 0o644
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _truncated_archive() -> bytes:
    import io

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = os.urandom(200_000)
        info = tarfile.TarInfo("home/old.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()[:50_000]
