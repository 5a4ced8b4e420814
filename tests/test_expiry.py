"""Expiry end to end on the Jetstream2 emulator: the schedule archives every seat to the emulated object
store, reads each archive back and compares it before anything is deleted; a failed upload keeps the seat."""
from __future__ import annotations

import io
import json
import tarfile
from datetime import datetime, timedelta, timezone

import pytest
from conftest import run_coursekit
from helpers import edit_course, make_course

SECRET = "expiry-tests-secret-5Hq8Zr2Nw7Kc"
IMAGE = "docker.io/your-user/expiry:abc1234"
SLUG = "expiry"
STUDENTS = ["ann", "ben", "cy"]
pytestmark = pytest.mark.cloud


@pytest.fixture
def course(course_repo, tmp_path, cloud):
    """A class that ended today, kept one day, archiving to swift://course-archives."""
    today = datetime.now(timezone.utc).date()
    repo = make_course(course_repo, tmp_path / "course", SLUG, STUDENTS)
    edit_course(repo, lambda d: (
        d["course"].update(start=f"{today}T00:00:00+00:00", end=f"{today}T00:30:00+00:00", keep_days=1),
        d["schedule"].update(awake=[], idle_pause_hours=0, expire=True),
        d["archive"].update(target="swift://course-archives"),
        d["fleet"].update(provider="openstack"),
        d["fleet"]["openstack"].update(poll_seconds=0.2, boot_timeout_minutes=0.25),
    ))
    cloud.clouds_yaml(tmp_path / "clouds.yaml")
    return repo


def coursekit(course, *args: str):
    env = {"COURSEKIT_SECRET": SECRET, "OS_CLIENT_CONFIG_FILE": str(course.parent / "clouds.yaml")}
    return run_coursekit(course, *args, env=env)


def _expires() -> datetime:
    return datetime.combine(datetime.now(timezone.utc).date(), datetime.min.time(), timezone.utc) + timedelta(days=1, minutes=30)


def _stored(cloud, seat: str) -> tarfile.TarFile:
    return tarfile.open(fileobj=io.BytesIO(cloud.containers["course-archives"][f"{SLUG}/{seat}.tar.gz"]["data"]))


def test_expiry_archives_to_the_object_store_and_keeps_a_seat_whose_upload_failed(course, cloud, tmp_path):
    assert coursekit(course, "deploy", "--image", IMAGE).returncode == 0
    for seat in STUDENTS:
        server = next(s for s in cloud.live_servers() if s["metadata"].get("coursekit-seat") == seat)
        (server["_home"] / "project" / ".git").mkdir(parents=True)
        (server["_home"] / "project" / ".git" / "HEAD").write_text(f"{seat}'s branch\n")

    notice = coursekit(course, "schedule", "--at", (_expires() - timedelta(hours=12)).isoformat())
    assert notice.returncode == 0 and "nothing to do" in notice.stdout
    assert "warning: the course expires at" in notice.stderr
    status = coursekit(course, "status", "--at", (_expires() - timedelta(hours=1)).isoformat())
    assert "warning: the course expires at" in status.stderr

    cloud.swift_put_fail.add(f"{SLUG}/ann.tar.gz")
    cloud.swift_corrupt.add(f"{SLUG}/cy.tar.gz")
    expired = coursekit(course, "schedule", "--at", (_expires() + timedelta(minutes=1)).isoformat())
    assert expired.returncode == 1, expired.stdout + expired.stderr
    assert "the course expired at" in expired.stderr
    assert "ann: uploading to swift://course-archives/expiry/ann.tar.gz failed" in expired.stderr
    assert "cy: swift://course-archives/expiry/cy.tar.gz reads back with another checksum" in expired.stderr
    left = {s["metadata"].get("coursekit-seat", "(gateway)") for s in cloud.live_servers()}
    assert left == {"ann", "cy", "(gateway)"}  # their work is only on their VMs: kept, and reached through the gateway
    with _stored(cloud, "ben") as tar:
        assert tar.extractfile("home/project/.git/HEAD").read() == b"ben's branch\n"

    cloud.swift_put_fail.clear()
    cloud.swift_corrupt.clear()
    again = coursekit(course, "schedule", "--at", (_expires() + timedelta(minutes=16)).isoformat())
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"nothing of '{SLUG}' is left" in again.stdout
    assert cloud.live_servers() == [] and cloud.floating_ips == {} and cloud.security_groups == {}
    for seat in STUDENTS:
        with _stored(cloud, seat) as tar:
            assert tar.extractfile("home/project/.git/HEAD").read() == f"{seat}'s branch\n".encode()

    listed = coursekit(course, "archives")
    assert listed.returncode == 0 and "3 archives" in listed.stdout
    fetched = coursekit(course, "archives", "--fetch", "cy", "--to", str(tmp_path / "got"))
    assert fetched.returncode == 0, fetched.stderr
    with tarfile.open(tmp_path / "got" / "cy.tar.gz") as tar:
        assert tar.extractfile("home/project/.git/HEAD").read() == b"cy's branch\n"
    # Fetched again: a new name beside the first, which is never written over.
    first = (tmp_path / "got" / "cy.tar.gz").read_bytes()
    (tmp_path / "got" / "cy.tar.gz").write_bytes(b"the instructor's own notes, kept under this name")
    again = coursekit(course, "archives", "--fetch", "cy", "--to", str(tmp_path / "got"))
    assert again.returncode == 0 and "cy.2.tar.gz" in again.stdout, again.stderr
    assert (tmp_path / "got" / "cy.tar.gz").read_bytes() == b"the instructor's own notes, kept under this name"
    assert (tmp_path / "got" / "cy.2.tar.gz").read_bytes() == first
    assert sorted(p.name for p in (tmp_path / "got").iterdir()) == ["cy.2.tar.gz", "cy.tar.gz"]
    to_a_file = coursekit(course, "archives", "--fetch", "cy", "--to", "/dev/null")
    assert to_a_file.returncode == 1 and "--to /dev/null: that is a file, not a folder" in to_a_file.stderr
    missing = coursekit(course, "archives", "--fetch", "zed", "--to", str(tmp_path / "got"))
    assert missing.returncode == 1 and "no archive of seat 'zed' at swift://course-archives/expiry/zed.tar.gz" in missing.stderr


def test_expiry_in_ci_refuses_a_folder_that_would_vanish_with_the_runner(course, cloud):
    edit_course(course, lambda d: d["archive"].update(target="archives"))
    assert coursekit(course, "deploy", "--image", IMAGE).returncode == 0
    env = {"COURSEKIT_SECRET": SECRET, "OS_CLIENT_CONFIG_FILE": str(course.parent / "clouds.yaml"), "CI": "true"}
    result = run_coursekit(course, "schedule", "--at", (_expires() + timedelta(minutes=1)).isoformat(), env=env)
    assert result.returncode == 1
    assert "archive.target is the folder 'archives', which on a CI runner vanishes with the job" in result.stderr
    assert len(cloud.live_servers()) == len(STUDENTS) + 1  # and the gateway


def test_a_paused_seat_is_woken_archived_then_removed_at_expiry(course, cloud):
    assert coursekit(course, "deploy", "--image", IMAGE).returncode == 0
    assert coursekit(course, "pause").returncode == 0
    assert {s["status"] for s in cloud.live_servers() if "coursekit-seat" in s["metadata"]} == {"SHELVED_OFFLOADED"}
    status = json.loads(coursekit(course, "status", "--json").stdout)
    assert {r["seat"]: r["state"] for r in status} == {**{s: "paused" for s in STUDENTS}, "gateway": "active"}
    expired = coursekit(course, "schedule", "--at", (_expires() + timedelta(minutes=1)).isoformat())
    assert expired.returncode == 0, expired.stdout + expired.stderr
    assert sorted(name for name in cloud.containers["course-archives"]) == [f"{SLUG}/{s}.tar.gz" for s in STUDENTS]
    assert cloud.live_servers() == []
