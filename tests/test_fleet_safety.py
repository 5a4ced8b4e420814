"""Student work on a Docker host is never lost, mixed up or exposed: colliding names, lost containers,
failed replacements, interrupts, file modes, limits."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import docker.errors
import pytest
from conftest import run_coursekit
from helpers import archive_file, build, edit_course, http_status, put_file, read_contents

pytestmark = pytest.mark.docker

ENV = {"COURSEKIT_SECRET": "safety-tests-7Qx2Lm9Kp4Zt"}


def _roster(repo: Path) -> dict[str, dict]:
    result = run_coursekit(repo, "roster", env=ENV)
    assert result.returncode == 0, result.stderr
    return {row["seat"]: row for row in csv.DictReader(io.StringIO(result.stdout))}


def _seats(docker_client, slug: str, running: bool = False) -> list:
    """The course's seat containers, listed without inspecting each (a build's intermediate containers carry
    the course label too, and vanish between a list and an inspect)."""
    wanted = {"label": [f"org.coursekit.course={slug}", "org.coursekit.role=seat"]}
    return docker_client.containers.list(all=not running, sparse=True, filters=wanted)


def _ready(repo: Path, base_image: str) -> None:
    built = build(repo, base_image)
    assert built.returncode == 0, built.stderr
    deployed = run_coursekit(repo, "deploy", env=ENV)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr


def test_courses_whose_names_collide_share_nothing(fleet_factory, base_image, docker_client, tmp_path):
    # Once, slug a-b with seat c and slug a with seat b-c got the same container and home volume.
    one = fleet_factory("safe-a-b", students=["c"])
    two = fleet_factory("safe-a", students=["b-c"])
    edit_course(two, lambda d: d["fleet"]["docker"].update(port_base=9400))
    _ready(one, base_image)
    _ready(two, base_image)
    seat_one, seat_two = _roster(one)["c"], _roster(two)["b-c"]
    assert seat_one["url"] != seat_two["url"]
    put_file(seat_one["url"], seat_one["credential"], "mine.txt", b"course a-b, seat c")
    assert http_status(f"{seat_two['url']}api/contents/mine.txt", seat_two["credential"]) == 404

    torn = run_coursekit(two, "teardown", "--yes", "--archive-dir", str(tmp_path / "two"), env=ENV)
    assert torn.returncode == 0, torn.stdout + torn.stderr
    with tarfile.open(tmp_path / "two" / "b-c.tar.gz") as tar:
        assert "home/mine.txt" not in tar.getnames() and "home" in tar.getnames()
    assert read_contents(seat_one["url"], seat_one["credential"], "mine.txt")["content"] == "course a-b, seat c"
    names = {v.name for v in docker_client.volumes.list(filters={"label": "org.coursekit.course=safe-a-b"})}
    assert names == {"coursekit-safe-a-b.c.home"}


def test_a_seat_whose_container_is_gone_is_archived_from_its_volume(fleet_factory, base_image, docker_client, tmp_path):
    repo = fleet_factory("safe-gone", students=["dana", "eli"])
    _ready(repo, base_image)
    dana = _roster(repo)["dana"]
    put_file(dana["url"], dana["credential"], "answer.txt", b"dana's answer")
    container = docker_client.containers.get("coursekit-safe-gone.dana")
    assert container.exec_run(["sh", "-c", "mkdir -p ~/work/.git && echo ref > ~/work/.git/HEAD"]).exit_code == 0
    container.remove(force=True)

    shown = json.loads(run_coursekit(repo, "status", "--json", env=ENV).stdout)
    assert [(r["seat"], r["state"]) for r in shown] == [("dana", "home only"), ("eli", "running")]
    assert all(r["home"].endswith("MiB of 5g") for r in shown), [r["home"] for r in shown]

    torn = run_coursekit(repo, "teardown", "--yes", "--archive-dir", str(tmp_path / "arch"), env=ENV)
    assert torn.returncode == 0, torn.stdout + torn.stderr
    assert archive_file(tmp_path / "arch" / "dana.tar.gz", "answer.txt") == b"dana's answer"
    assert archive_file(tmp_path / "arch" / "dana.tar.gz", "work/.git/HEAD") == b"ref\n"
    assert stat.S_IMODE(os.stat(tmp_path / "arch").st_mode) == 0o700
    assert {stat.S_IMODE(os.stat(p).st_mode) for p in (tmp_path / "arch").iterdir()} == {0o600}
    assert docker_client.volumes.list(filters={"label": "org.coursekit.course=safe-gone"}) == []
    assert docker_client.containers.list(all=True, filters={"label": "org.coursekit.course=safe-gone"}) == []


def test_a_replacement_that_cannot_start_leaves_the_old_seat_serving(fleet_factory, base_image, docker_client):
    repo = fleet_factory("safe-swap", students=["fay"])
    _ready(repo, base_image)
    fay = _roster(repo)["fay"]
    put_file(fay["url"], fay["credential"], "draft.txt", b"fay's draft")
    before = docker_client.containers.get("coursekit-safe-swap.fay").id
    # The engine accepts 7m, but Jupyter cannot start in it: the new container dies, the old one must come back.
    edit_course(repo, lambda d: d["fleet"]["docker"].update(memory="7m"))
    changed = run_coursekit(repo, "deploy", env=ENV)
    assert changed.returncode == 1
    assert "the old one is back, with its home" in changed.stderr
    assert docker_client.containers.get("coursekit-safe-swap.fay").id == before
    assert read_contents(fay["url"], fay["credential"], "draft.txt")["content"] == "fay's draft"
    assert [c.name for c in docker_client.containers.list(all=True, filters={"label": "org.coursekit.course=safe-swap"})] \
        == ["coursekit-safe-swap.fay"]


def test_settings_the_engine_refuses_are_refused_before_anything_stops(fleet_factory, base_image, docker_client):
    repo = fleet_factory("safe-cpus", students=["gus"])
    _ready(repo, base_image)
    edit_course(repo, lambda d: d["fleet"]["docker"].update(cpus=os.cpu_count() + 8))
    refused = run_coursekit(repo, "deploy", env=ENV)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"fleet.docker.cpus: {os.cpu_count() + 8} CPUs per seat, but the Docker host has" in refused.stderr
    assert docker_client.containers.get("coursekit-safe-cpus.gus").status == "running"


def test_sigint_stops_deploy_within_seconds_and_a_rerun_converges(fleet_factory, base_image, docker_client):
    repo = fleet_factory("safe-sigint", students=["ann", "ben", "cat", "dov"])
    edit_course(repo, lambda d: d["fleet"]["docker"].update(concurrency=1))
    built = build(repo, base_image)
    assert built.returncode == 0, built.stderr
    env = {**{k: v for k, v in os.environ.items() if k != "CI"}, **ENV}
    process = subprocess.Popen([sys.executable, "-m", "coursekit", "deploy"], cwd=repo, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _seats(docker_client, "safe-sigint"):
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, err = process.communicate(timeout=60)
    assert time.monotonic() - started < 8, f"deploy took {time.monotonic() - started:.1f} s to stop:\n{err}"
    assert process.returncode == 130 and "interrupted" in err, err
    assert len(_seats(docker_client, "safe-sigint")) < 4, err  # the queued seats never started
    again = run_coursekit(repo, "deploy", env=ENV)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(_seats(docker_client, "safe-sigint", running=True)) == 4


def test_a_seat_runs_without_capabilities_and_with_a_capped_tmp(fleet_factory, base_image, docker_client):
    repo = fleet_factory("safe-caps", students=["ida"])
    _ready(repo, base_image)
    container = docker_client.containers.get("coursekit-safe-caps.ida")
    host = container.attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"][0]
    assert host["Tmpfs"] == {"/tmp": "size=1g,mode=1777"}
    code, out = container.exec_run(["df", "-B1", "--output=size", "/tmp"])
    assert code == 0 and int(out.split()[-1]) == 2**30


def test_sigint_stops_teardown_within_seconds_and_nothing_unarchived_is_lost(fleet_factory, base_image, docker_client, tmp_path):
    repo = fleet_factory("safe-sigint-down", students=["eva", "fin", "gil", "hal"])
    _ready(repo, base_image)
    for seat in ("eva", "fin", "gil", "hal"):  # enough work that each archive takes a moment
        container = docker_client.containers.get(f"coursekit-safe-sigint-down.{seat}")
        assert container.exec_run(["sh", "-c", "head -c 150000000 /dev/urandom > ~/work/big.bin"]).exit_code == 0
    env = {**{k: v for k, v in os.environ.items() if k != "CI"}, **ENV}
    archives = tmp_path / "arch"
    process = subprocess.Popen([sys.executable, "-m", "coursekit", "teardown", "--yes", "--archive-dir", str(archives)],
                               cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(archives.glob("*.tar.gz")):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    process.communicate(timeout=60)
    assert time.monotonic() - started < 8, "teardown took too long to stop"
    assert process.returncode == 130
    done = {p.name.removesuffix(".tar.gz") for p in archives.glob("*.tar.gz")}
    assert not list(archives.glob(".*.part"))  # no half-written archive
    left = {c.labels["org.coursekit.seat"] for c in docker_client.containers.list(
        all=True, filters={"label": "org.coursekit.course=safe-sigint-down"})}
    volumes = {v.attrs["Labels"]["org.coursekit.seat"] for v in docker_client.volumes.list(
        filters={"label": "org.coursekit.course=safe-sigint-down"})}
    assert {"eva", "fin", "gil", "hal"} - done <= left & volumes  # every seat not archived is still there, whole
    again = run_coursekit(repo, "teardown", "--yes", "--archive-dir", str(archives), env=ENV)
    assert again.returncode == 0, again.stdout + again.stderr
    assert {p.name for p in archives.glob("*.tar.gz")} == {f"{s}.tar.gz" for s in ("eva", "fin", "gil", "hal")}


def test_a_full_home_says_no_space_and_touches_nobody_else(fleet_factory, base_image, docker_client, tmp_path):
    repo = fleet_factory("safe-disk", students=["kim", "lee"])
    edit_course(repo, lambda d: d["fleet"]["docker"].update(disk="64m"))
    _ready(repo, base_image)
    kim, lee = (docker_client.containers.get(f"coursekit-safe-disk.{seat}") for seat in ("kim", "lee"))
    code, out = kim.exec_run(["sh", "-c", "head -c 100000000 /dev/zero > ~/work/fill.bin"])
    assert code != 0 and b"No space left on device" in out
    code, out = lee.exec_run(["sh", "-c", "head -c 30000000 /dev/urandom > ~/work/mine.bin && df -B1 --output=size ~ | tail -1"])
    assert code == 0 and 50 * 2**20 < int(out) <= 64 * 2**20  # lee's home is a 64m disk of its own, untouched
    disk_file = Path("/var/lib/coursekit/homes/coursekit-safe-disk.kim.home.img")
    assert disk_file.stat().st_mode & 0o777 == 0o600 and disk_file.stat().st_blocks * 512 <= 70 * 2**20
    listing = kim.exec_run(["ls", "-A", "/home/jovyan"]).output.decode().split()
    assert "lost+found" not in listing and "work" in listing

    # A reboot empties /run and detaches every loop device: the seat cannot start on some other disk,
    # and the next run attaches its own file again, work intact.
    assert run_coursekit(repo, "pause", env=ENV).returncode == 0
    device = subprocess.run(["losetup", "--associated", str(disk_file), "--output", "NAME", "--noheadings"],
                            capture_output=True, text=True, check=True).stdout.split()
    subprocess.run(["losetup", "--detach", *device], check=True)
    Path("/run/coursekit/homes/coursekit-safe-disk.kim.home").unlink()
    with pytest.raises(docker.errors.APIError):
        kim.start()
    resumed = run_coursekit(repo, "resume", env=ENV)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    kim = docker_client.containers.get("coursekit-safe-disk.kim")
    code, out = kim.exec_run(["stat", "-c", "%s", "/home/jovyan/work/fill.bin"])
    assert code == 0 and int(out) > 50 * 2**20  # work intact, and Jupyter answers although the home is full
    status = run_coursekit(repo, "status", "--json", env=ENV)
    homes = {row["seat"]: row["home"] for row in json.loads(status.stdout)}
    assert homes["kim"].startswith(("5", "6")) and homes["kim"].endswith("MiB of 64m"), homes
    assert kim.exec_run(["sh", "-c", "rm ~/work/fill.bin && echo room > ~/work/note.txt"]).exit_code == 0

    torn = run_coursekit(repo, "teardown", "--yes", "--archive-dir", str(tmp_path / "arch"), env=ENV)
    assert torn.returncode == 0, torn.stdout + torn.stderr
    assert len(archive_file(tmp_path / "arch" / "lee.tar.gz", "work/mine.bin")) == 30000000
    assert not disk_file.exists() and not list(Path("/var/lib/coursekit/homes").glob("coursekit-safe-disk.*"))
    assert subprocess.run(["losetup", "--associated", str(disk_file), "--noheadings"], capture_output=True, text=True).stdout == ""


def test_homes_are_bounded_only_where_the_engine_s_own_machine_attaches_them(coursekit):
    from coursekit.fleet.docker import homedisk

    assert "another machine" in homedisk.unavailable("tcp://10.0.0.5:2376")
    assert homedisk.unavailable("http+docker://localhost") is None  # the tests run as root next to the engine
