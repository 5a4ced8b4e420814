"""`coursekit reset SEAT` on a Docker host: the student's home is archived and verified first (kept as
<seat>.reset-<time>), then the seat starts again from the image with a fresh home, at the same link with the same
credential; other seats are untouched; without --yes nothing happens; a seat that is not deployed is a clear error."""
from __future__ import annotations

import csv
import io

from conftest import run_coursekit
from helpers import archive_file, build, edit_course, http
from services import free_port

SECRET = "reset-secret-Qw5Er8Ty2Ui4Op"
ENV = {"COURSEKIT_SECRET": SECRET}
SLUG = "reset-docker"


def _roster(repo) -> dict[str, dict]:
    return {r["seat"]: r for r in csv.DictReader(io.StringIO(run_coursekit(repo, "roster", env=ENV).stdout))}


def test_reset_archives_the_home_then_starts_the_seat_fresh_at_the_same_link(fleet_factory, base_image, docker_client, tmp_path):
    repo = fleet_factory(SLUG, students=["ann", "ben"])
    edit_course(repo, lambda d: (d["fleet"]["docker"].update(port_base=free_port()), d["schedule"].update(awake=[])))
    assert build(repo, base_image).returncode == 0
    assert run_coursekit(repo, "deploy", env=ENV).returncode == 0
    before = _roster(repo)

    def seat(name: str):
        return docker_client.containers.get(f"coursekit-{SLUG}.{name}")

    broke = "echo mine > ~/work.txt && mkdir -p ~/.hidden && echo kept > ~/.hidden/notes && rm ~/notebooks/01-welcome.ipynb"
    assert seat("ann").exec_run(["bash", "-c", broke], user="jovyan").exit_code == 0
    assert seat("ben").exec_run(["bash", "-c", "echo bens > ~/ben.txt"], user="jovyan").exit_code == 0

    asked = run_coursekit(repo, "reset", "ann", env=ENV)
    assert asked.returncode == 1 and "--yes" in asked.stderr
    assert seat("ann").exec_run(["cat", "/home/jovyan/work.txt"]).exit_code == 0  # nothing happened
    missing = run_coursekit(repo, "reset", "zed", "--yes", env=ENV)
    assert missing.returncode == 1 and "'zed' is not deployed" in missing.stderr and "Traceback" not in missing.stderr

    done = run_coursekit(repo, "reset", "ann", "--yes", "--archive-dir", str(tmp_path / "arch"), env=ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    (archive,) = (tmp_path / "arch").glob("ann.reset-*.tar.gz")
    assert archive_file(archive, "work.txt") == b"mine\n" and archive_file(archive, ".hidden/notes") == b"kept\n"
    fresh = seat("ann").exec_run(["bash", "-c", "ls -A ~ ~/notebooks"], user="jovyan").output.decode().split()
    assert "01-welcome.ipynb" in fresh and "work.txt" not in fresh and ".hidden" not in fresh, fresh
    after = _roster(repo)
    assert after["ann"]["link"] == before["ann"]["link"]
    assert http(f"{after['ann']['url']}api/status", after["ann"]["credential"])[0] == 200
    assert seat("ben").exec_run(["cat", "/home/jovyan/ben.txt"]).output == b"bens\n"
