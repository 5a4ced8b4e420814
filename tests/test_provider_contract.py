"""The provider contract, run unchanged over every registered provider: docker on the real engine and on the fake
engine (tests/fake_engine.py, in the fast lane), openstack on the Jetstream2 emulator. A provider without a rig here
fails the suite: a new provider brings one."""
from __future__ import annotations

import ast
import csv
import io
import json
import tarfile
from pathlib import Path

import pytest
from conftest import run_coursekit
from helpers import build, edit_course, make_course
from os_emulator import Emulator

SECRET = "contract-tests-7Qx2Lm9Kp4Zt"
STUDENTS = ["ann", "ben", "cy"]


class DockerRig:
    """Seats as containers on this machine's engine."""

    marks = [pytest.mark.docker]

    def __init__(self, request, tmp_path):
        self.docker = request.getfixturevalue("docker_client")
        self.repo = request.getfixturevalue("fleet_factory")("contract-docker", students=STUDENTS)
        built = build(self.repo, request.getfixturevalue("base_image"))
        assert built.returncode == 0, built.stderr
        self.env = {"COURSEKIT_SECRET": SECRET}
        self.deploy_args: list[str] = []

    def write(self, seat: str, path: str, content: bytes) -> None:
        """Put a file into the seat's home as the student would (any path, hidden ones too)."""
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w") as tar:
            info = tarfile.TarInfo(path)
            info.size, info.uid, info.gid = len(content), 1000, 100
            tar.addfile(info, io.BytesIO(content))
        assert self.docker.containers.get(f"coursekit-contract-docker.{seat}").put_archive("/home/jovyan", data.getvalue())

    def read(self, seat: str, path: str) -> bytes:
        """A file of the seat's home, read from its volume (the container may be stopped)."""
        stream, _ = self.docker.containers.get(f"coursekit-contract-docker.{seat}").get_archive(f"/home/jovyan/{path}")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            return tar.extractfile(tar.getmembers()[0]).read()

    def stop(self) -> None:
        pass


class FakeDockerRig:
    """The docker provider's own logic on a fake engine in this process (the fast lane's): coursekit's CLI, planner
    and provider for real, the engine in memory, each seat's Jupyter an HTTP stand-in on its published port."""

    marks: list = []
    suffix = "-fake"

    def __init__(self, request, tmp_path):
        import os
        import random

        from fake_engine import FakeEngine

        request.getfixturevalue("coursekit")
        from coursekit.engine import Engine

        self.engine = FakeEngine(tmp_path / "engine")
        (tmp_path / "engine").mkdir()
        worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
        port_base = 20000 + 3000 * worker + random.randrange(0, 2900, 10)  # workers side by side never share a port
        self.repo = make_course(request.getfixturevalue("course_repo"), tmp_path / "course", "contract-fake", STUDENTS)
        edit_course(self.repo, lambda d: d["fleet"]["docker"].update(disk=None, bind="127.0.0.1", port_base=port_base))
        image = "docker.io/your-user/contract:fake1"
        self.engine.add_image(image)
        request.getfixturevalue("monkeypatch").setattr(Engine, "connect", classmethod(lambda cls: self.engine))
        self.env = {"COURSEKIT_SECRET": SECRET}
        self.deploy_args = ["--image", image]

    def _home(self, seat: str) -> Path:
        volume = next(name for name, v in self.engine.volumes_.items() if v["labels"].get("org.coursekit.seat") == seat)
        return self.engine.home(volume)

    def write(self, seat: str, path: str, content: bytes) -> None:
        target = self._home(seat) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)

    def read(self, seat: str, path: str) -> bytes:
        return (self._home(seat) / path).read_bytes()

    def stop(self) -> None:
        self.engine.stop_all()


class OpenStackRig:
    """Seats as VMs on the emulated Jetstream2."""

    marks = [pytest.mark.cloud]
    boot_seconds, poll_seconds = 0.3, 0.2

    def __init__(self, request, tmp_path):
        self.cloud = Emulator()
        self.cloud.boot_seconds = self.boot_seconds
        if self.poll_seconds < 0.1:  # VMs that power off, shelve and update at once, too
            self.cloud.power_seconds = self.cloud.shelve_seconds = self.cloud.update_seconds = self.boot_seconds
        self.cloud.start()
        self.repo = make_course(request.getfixturevalue("course_repo"), tmp_path / "course", "contract-openstack", STUDENTS)
        edit_course(self.repo, lambda d: (d["fleet"].update(provider="openstack"),
                                          d["fleet"]["openstack"].update(poll_seconds=self.poll_seconds, boot_timeout_minutes=0.25)))
        self.env = {"COURSEKIT_SECRET": SECRET, "OS_CLIENT_CONFIG_FILE": str(self.cloud.clouds_yaml(tmp_path / "clouds.yaml"))}
        self.deploy_args = ["--image", "docker.io/your-user/contract:abc1234"]

    def write(self, seat: str, path: str, content: bytes) -> None:
        server = next(s for s in self.cloud.live_servers() if s["metadata"].get("coursekit-seat") == seat)
        target = server["_home"] / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)

    def read(self, seat: str, path: str) -> bytes:
        server = next(s for s in self.cloud.live_servers() if s["metadata"].get("coursekit-seat") == seat)
        return (server["_home"] / path).read_bytes()

    def stop(self) -> None:
        self.cloud.stop()


class QuickOpenStackRig(OpenStackRig):
    """The same emulated cloud with instant boots and coursekit in this process: the fast lane's openstack rig."""

    marks: list = []
    suffix = "-quick"
    boot_seconds, poll_seconds = 0.02, 0.02


RIGS = {"docker": [DockerRig, FakeDockerRig], "openstack": [OpenStackRig, QuickOpenStackRig]}  # a provider's rigs: the real thing first


def _registered() -> list[str]:
    """The registry's names, read from the template's source without importing it (collection must not put
    the unrendered package on sys.path)."""
    source = (Path(__file__).resolve().parents[1] / "{{cookiecutter.course_slug}}" / "coursekit" / "fleet" / "registry.py")
    tree = ast.parse(source.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "PROVIDERS")
    return sorted(ast.literal_eval(node.value))


PARAMS = [pytest.param((name, rig), marks=getattr(rig, "marks", []), id=name + getattr(rig, "suffix", ""))
          for name in _registered() for rig in RIGS.get(name, [None])]


@pytest.fixture(params=PARAMS)
def rig(request, tmp_path):
    name, kind = request.param
    assert kind is not None, f"provider {name!r} is registered but has no rig in the contract suite"
    made = kind(request, tmp_path)
    yield made
    made.stop()


def _run(rig, *args: str):
    return run_coursekit(rig.repo, *args, env=rig.env)


def _seat_rows(rig) -> list[dict]:
    """`status --json` without the row of what serves the seats (a gateway), which some providers add."""
    return [r for r in json.loads(_run(rig, "status", "--json").stdout) if r["seat"] != "gateway"]


def _deploy(rig, *args: str):
    result = _run(rig, "deploy", *rig.deploy_args, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_deploy_converges_and_every_seat_answers_only_its_own_credential(rig):
    _deploy(rig)
    status = _seat_rows(rig)
    assert [(r["seat"], r["health"]) for r in status] == [(s, "ok") for s in STUDENTS]
    roster = {r["seat"]: r for r in csv.DictReader(io.StringIO(_run(rig, "roster").stdout))}
    assert sorted(roster) == STUDENTS and len({r["url"] for r in roster.values()}) == len(STUDENTS)
    assert all(r["url"] == next(s["url"] for s in status if s["seat"] == seat) for seat, r in roster.items())
    plan = _run(rig, "plan", *rig.deploy_args)
    assert plan.returncode == 0 and plan.stdout.count(" keep ") == len(STUDENTS)
    again = _deploy(rig)
    assert again.stdout.count(" keep ") == len(STUDENTS)


def test_a_seat_leaving_the_roster_is_archived_before_it_goes(rig, tmp_path):
    _deploy(rig)
    rig.write("cy", "work/.git/HEAD", b"ref: refs/heads/main\n")
    edit_course(rig.repo, lambda d: d["seats"].update(students=[s for s in d["seats"]["students"] if s["id"] != "cy"]))
    _deploy(rig, "--yes", "--archive-dir", str(tmp_path / "left"))
    with tarfile.open(tmp_path / "left" / "cy.tar.gz") as tar:
        assert tar.extractfile("home/work/.git/HEAD").read() == b"ref: refs/heads/main\n"
    status = _seat_rows(rig)
    assert [r["seat"] for r in status] == ["ann", "ben"]


def test_teardown_archives_every_seat_and_leaves_nothing(rig, tmp_path):
    _deploy(rig)
    for seat in STUDENTS:
        rig.write(seat, ".config/notes.txt", f"{seat}'s hidden notes".encode())
    torn = _run(rig, "teardown", "--yes", "--archive-dir", str(tmp_path / "arch"))
    assert torn.returncode == 0, torn.stdout + torn.stderr
    assert "nothing of" in torn.stdout and "is left" in torn.stdout
    for seat in STUDENTS:
        with tarfile.open(tmp_path / "arch" / f"{seat}.tar.gz") as tar:
            assert tar.extractfile("home/.config/notes.txt").read() == f"{seat}'s hidden notes".encode()
    assert _seat_rows(rig) == [
        {"seat": s, "state": "missing", "url": "", "image": "", "health": "-", "last_activity": "-", "home": "-", "schedule": "-"} for s in STUDENTS
    ]


def _status(rig) -> dict[str, dict]:
    return {r["seat"]: r for r in _seat_rows(rig)}


def _roster_urls(rig) -> dict[str, str]:
    return {r["seat"]: r["url"] for r in csv.DictReader(io.StringIO(_run(rig, "roster").stdout))}


def test_pause_and_resume_keep_every_home_and_link(rig):
    edit_course(rig.repo, lambda d: d["schedule"].update(awake=[]))  # the test's hour of day must not matter
    _deploy(rig)
    rig.write("ann", "work/.notes/today.txt", b"ann's notes")
    links = _roster_urls(rig)
    paused = _run(rig, "pause")
    assert paused.returncode == 0, paused.stdout + paused.stderr
    assert {seat: row["state"] for seat, row in _status(rig).items()} == {s: "paused" for s in STUDENTS}
    again = _run(rig, "pause")
    assert again.returncode == 0 and again.stdout.count("already paused") == len(STUDENTS)
    plan = _run(rig, "plan", *rig.deploy_args)
    assert plan.returncode == 0 and plan.stdout.count("paused: `coursekit resume` or the") == len(STUDENTS), plan.stdout
    one = _run(rig, "resume", "--seat", "ann")
    assert one.returncode == 0, one.stdout + one.stderr
    assert {seat: row["state"] == "paused" for seat, row in _status(rig).items()} == {"ann": False, "ben": True, "cy": True}
    rest = _run(rig, "resume")
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert "already running" in rest.stdout
    assert [row["health"] for row in _status(rig).values()] == ["ok"] * len(STUDENTS)
    assert _roster_urls(rig) == links
    assert rig.read("ann", "work/.notes/today.txt") == b"ann's notes"
    unknown = _run(rig, "pause", "--seat", "zed")
    assert unknown.returncode == 1 and "no deployed seat called zed" in unknown.stderr


def test_the_schedule_pauses_seats_idle_by_jupyters_own_clock(rig):
    from datetime import datetime, timedelta, timezone

    edit_course(rig.repo, lambda d: d["schedule"].update(awake=[], idle_pause_hours=2))
    _deploy(rig)
    now = datetime.now(timezone.utc)
    fresh = _run(rig, "schedule")
    assert fresh.returncode == 0 and "nothing to do" in fresh.stdout, fresh.stdout + fresh.stderr
    later = _run(rig, "schedule", "--at", (now + timedelta(hours=3)).isoformat())
    assert later.returncode == 0, later.stdout + later.stderr
    assert later.stdout.count("idle for 3.0 hours") == len(STUDENTS), later.stdout
    assert {row["state"] for row in _status(rig).values()} == {"paused"}
    again = _run(rig, "schedule", "--at", (now + timedelta(hours=3, minutes=15)).isoformat())
    assert again.returncode == 0 and "nothing to do" in again.stdout


def _gone(rig, seat: str, path: str) -> bool:
    """The file is not in the seat's home (each rig reads its own way and raises its own error when it is not)."""
    try:
        rig.read(seat, path)
    except Exception:
        return True
    return False


def test_reset_archives_the_home_and_starts_the_seat_fresh_at_the_same_link(rig, tmp_path):
    _deploy(rig)
    rig.write("ann", "work/.cache/state", b"ann's old state")
    rig.write("ben", "work/mine.txt", b"ben's")
    links = _roster_urls(rig)
    done = _run(rig, "reset", "ann", "--yes", "--archive-dir", str(tmp_path / "arch"))
    assert done.returncode == 0, done.stdout + done.stderr
    (archived,) = (tmp_path / "arch").glob("ann.reset-*.tar.gz")
    with tarfile.open(archived) as tar:
        assert tar.extractfile("home/work/.cache/state").read() == b"ann's old state"
    assert _gone(rig, "ann", "work/.cache/state") and rig.read("ben", "work/mine.txt") == b"ben's"
    assert _roster_urls(rig) == links and _status(rig)["ann"]["health"] == "ok"


def test_swap_copies_the_students_work_onto_a_spare_and_the_roster_follows(rig):
    edit_course(rig.repo, lambda d: (d["seats"].update(spares=1), d["schedule"].update(awake=[])))
    _deploy(rig)
    rig.write("ann", "work/.hidden/notes", b"ann's notes")
    moved = _run(rig, "swap", "ann", "--to", "spare-1", "--yes")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert rig.read("spare-1", "work/.hidden/notes") == b"ann's notes"
    roster = {r["seat"]: r for r in csv.DictReader(io.StringIO(_run(rig, "roster").stdout))}
    assert "ann" not in roster and roster["spare-1"]["name"] == "Ann"
    assert _status(rig)["ann"]["state"] == "paused" and _status(rig)["spare-1"]["health"] == "ok"


@pytest.fixture
def fake(request, tmp_path):
    made = FakeDockerRig(request, tmp_path)
    yield made
    made.stop()


def test_an_image_that_cannot_start_leaves_every_old_seat_serving(fake):
    """A replaced container stops only once its successor exists, and comes back when the successor does not answer."""
    _deploy(fake)
    fake.write("ann", "work/.draft/essay.md", b"ann's draft")
    before = {seat: row["image"] for seat, row in _status(fake).items()}
    broken = "docker.io/your-user/contract:broken"
    fake.engine.add_image(broken)
    fake.engine.broken_images.add(broken)
    update = _run(fake, "deploy", "--image", broken)
    assert update.returncode == 1
    assert update.stdout.count("the new container did not start") == len(STUDENTS), update.stdout
    assert "this image cannot start Jupyter" in update.stdout
    assert {seat: (row["health"], row["image"]) for seat, row in _status(fake).items()} == {s: ("ok", before[s]) for s in STUDENTS}
    assert fake.read("ann", "work/.draft/essay.md") == b"ann's draft"
    assert sorted(b.name for b in fake.engine.boxes.values()) == [f"coursekit-contract-fake.{s}" for s in STUDENTS]


def test_a_create_the_engine_refuses_fails_that_seat_alone_and_the_next_deploy_converges(fake):
    fake.engine.fail_creates = 1
    first = _run(fake, "deploy", *fake.deploy_args)
    assert first.returncode == 1 and first.stdout.count("FAILED") >= 1
    assert "the engine refused the container's options" in first.stdout + first.stderr
    assert sum(row["health"] == "ok" for row in _status(fake).values()) == len(STUDENTS) - 1
    _deploy(fake)
    assert [row["health"] for row in _status(fake).values()] == ["ok"] * len(STUDENTS)


def test_a_docker_course_archives_to_swift_through_the_clouds_own_section(fake, tmp_path):
    """archive.target swift:// on a Docker host: the object store comes from the registry (fleet.openstack.cloud),
    and every home is in Swift, read back and compared, before its seat goes."""
    cloud = Emulator()
    cloud.start()
    try:
        edit_course(fake.repo, lambda d: d["archive"].update(target="swift://course-archives"))
        _deploy(fake)
        fake.write("ann", "work/.ideas/next.md", b"ann's next idea")
        env = {**fake.env, "OS_CLIENT_CONFIG_FILE": str(cloud.clouds_yaml(tmp_path / "clouds.yaml"))}
        torn = run_coursekit(fake.repo, "teardown", "--yes", env=env)
        assert torn.returncode == 0, torn.stdout + torn.stderr
        assert sorted(cloud.containers["course-archives"]) == [f"contract-fake/{s}.tar.gz" for s in STUDENTS]
        fetched = run_coursekit(fake.repo, "archives", "--fetch", "ann", "--to", str(tmp_path / "back"), env=env)
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        with tarfile.open(tmp_path / "back" / "ann.tar.gz") as tar:
            assert tar.extractfile("home/work/.ideas/next.md").read() == b"ann's next idea"
        assert fake.engine.boxes == {} and fake.engine.volumes_ == {}
    finally:
        cloud.stop()
