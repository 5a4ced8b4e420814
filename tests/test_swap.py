"""`coursekit swap SEAT --to SPARE` on a Docker host: the student's work moves onto the spare (from the seat, or from
its newest archive when the seat is gone), the spare takes their name and a new link, seating.yaml records it, and a
later deploy, roster, status, teardown and takehome all follow it: the old seat is archived and removed, never made
anew, and nothing is lost."""
from __future__ import annotations

import csv
import io
import json

from conftest import run_coursekit
from helpers import archive_file, build, commit, edit_course
from services import free_port

SECRET = "swap-secret-Hy6Tr3Qw9Zx2Lp"
ENV = {"COURSEKIT_SECRET": SECRET}
SLUG = "swap-docker"


def _roster(repo) -> dict[str, dict]:
    return {r["seat"]: r for r in csv.DictReader(io.StringIO(run_coursekit(repo, "roster", env=ENV).stdout))}


def test_swap_moves_a_student_and_every_later_command_follows(fleet_factory, base_image, docker_client, tmp_path, coursekit):
    repo = fleet_factory(SLUG, students=["ann", "ben"], spares=2)
    edit_course(repo, lambda d: (d["fleet"]["docker"].update(port_base=free_port()), d["schedule"].update(awake=[])))
    built = build(repo, base_image)
    assert built.returncode == 0
    assert run_coursekit(repo, "deploy", env=ENV).returncode == 0

    def container(seat: str):
        return docker_client.containers.get(f"coursekit-{SLUG}.{seat}")

    work = "echo mine > ~/work.txt && mkdir -p ~/.hidden && echo kept > ~/.hidden/notes"
    assert container("ann").exec_run(["bash", "-c", work], user="jovyan").exit_code == 0
    asked = run_coursekit(repo, "swap", "ann", "--to", "spare-1", env=ENV)
    assert asked.returncode == 1 and "--yes" in asked.stderr
    assert run_coursekit(repo, "swap", "ann", "--to", "ben", "--yes", env=ENV).returncode == 1  # not a spare

    moved = run_coursekit(repo, "swap", "ann", "--to", "spare-1", "--yes", env=ENV)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    roster = _roster(repo)
    assert "ann" not in roster and roster["spare-1"]["name"] == "Ann" and roster["spare-1"]["role"] == "student"
    assert roster["spare-1"]["link"] in moved.stdout and "copied from ann's home" in moved.stderr
    assert container("spare-1").exec_run(["cat", "/home/jovyan/work.txt", "/home/jovyan/.hidden/notes"]).output == b"mine\nkept\n"
    container("ann").reload()
    assert container("ann").status == "exited"  # paused, its home kept
    assert (repo / "seating.yaml").read_text().endswith("ann: spare-1\n")
    commit(repo, "ann moved to spare-1")

    # The seat is gone (its host died) but an archive of it exists: the work comes from the archive.
    assert container("ben").exec_run(["bash", "-c", "echo his > ~/his.txt"], user="jovyan").exit_code == 0
    assert run_coursekit(repo, "reset", "ben", "--yes", "--archive-dir", str(tmp_path / "arch"), env=ENV).returncode == 0
    container("ben").remove(force=True)
    docker_client.volumes.get(f"coursekit-{SLUG}.ben.home").remove(force=True)
    from coursekit.fleet.docker import homedisk

    homedisk.release(f"coursekit-{SLUG}.ben.home")  # its bounded home's disk file goes with the host
    from_archive = run_coursekit(repo, "swap", "ben", "--to", "spare-2", "--yes", "--archive-dir", str(tmp_path / "arch"), env=ENV)
    assert from_archive.returncode == 0, from_archive.stdout + from_archive.stderr
    assert "newest archive, ben.reset-" in from_archive.stderr
    assert container("spare-2").exec_run(["cat", "/home/jovyan/his.txt"]).output == b"his\n"

    # A later deploy archives and removes ann's old seat, keeps the spare and creates nothing for ann or ben.
    spare = container("spare-1").id
    again = run_coursekit(repo, "deploy", "--yes", "--image", built.stdout.strip(), "--archive-dir", str(tmp_path / "arch"), env=ENV)
    assert again.returncode == 0, again.stdout + again.stderr
    seats = {c.labels["org.coursekit.seat"] for c in docker_client.containers.list(all=True, filters={"label": f"org.coursekit.course={SLUG}"})
             if c.labels.get("org.coursekit.role") == "seat"}
    assert seats == {"spare-1", "spare-2"} and container("spare-1").id == spare
    assert archive_file(next((tmp_path / "arch").glob("ann.tar.gz")), "work.txt") == b"mine\n"
    status = {r["seat"] for r in json.loads(run_coursekit(repo, "status", "--json", env=ENV).stdout)}
    assert status == {"spare-1", "spare-2"}

    torn = run_coursekit(repo, "teardown", "--yes", "--archive-dir", str(tmp_path / "arch"), env=ENV)
    assert torn.returncode == 0, torn.stdout + torn.stderr
    home = run_coursekit(repo, "takehome", "--archive-dir", str(tmp_path / "arch"), "--to", str(tmp_path / "home"))
    assert home.returncode == 0, home.stdout + home.stderr
    assert (tmp_path / "home" / "ann" / "work" / "work.txt").read_text() == "mine\n"
    assert (tmp_path / "home" / "ben" / "work" / "his.txt").read_text() == "his\n"
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == ["ann", "ben"]


def test_seating_yaml_is_checked_line_by_line(course_repo, tmp_path, coursekit):
    from helpers import copy_course

    repo = copy_course(course_repo, tmp_path / "course")
    edit_course(repo, lambda d: d["seats"].update(spares=2))
    (repo / "seating.yaml").write_text("alice: spare-1\nzed: spare-2\nbob: spare-9\n")
    result = run_coursekit(repo, "validate")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "seating.yaml:2: zed: 'zed' is no student or instructor in course.yaml" in result.stderr, result.stderr
    assert "seating.yaml:3: bob: 'spare-9' is not one of the course's spares (spare-1 to spare-2)" in result.stderr
    (repo / "seating.yaml").write_text("alice: spare-1\n")
    assert run_coursekit(repo, "validate").returncode == 0
    roster = _roster(repo)
    assert "alice" not in roster and roster["spare-1"]["name"] == "Alice Example" and "spare-2" in roster
