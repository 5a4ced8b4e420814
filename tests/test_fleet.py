"""The docker fleet on a real engine: deploy, credentials, heal, update, remove, teardown."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import run_coursekit
from helpers import archive_file, build, commit, http_status, put_file, read_contents

SECRET = "fleet-tests-secret-0123456789"
ENV = {"COURSEKIT_SECRET": SECRET}
STUDENT_FILE = "My answer: the hippocampus shrinks ~9 mm³ a year.\n".encode() * 3


@pytest.fixture
def fleet_course(fleet_factory, request):
    """A 3-seat course with a slug of its own; whatever the test leaves is torn down afterwards."""
    return fleet_factory("fleet-" + hashlib.sha256(request.node.name.encode()).hexdigest()[:8])


def _build(repo: Path, base_image: str) -> str:
    result = build(repo, base_image)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _deploy(repo: Path, *args: str):
    return run_coursekit(repo, "deploy", *args, env=ENV)


def _roster(repo: Path) -> dict[str, dict]:
    result = run_coursekit(repo, "roster", "--format", "csv", env=ENV)
    assert result.returncode == 0, result.stderr
    return {row["seat"]: row for row in csv.DictReader(io.StringIO(result.stdout))}


def test_three_seats_each_with_its_own_credential(fleet_course, base_image):
    _build(fleet_course, base_image)
    deployed = _deploy(fleet_course)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    roster = _roster(fleet_course)
    assert sorted(roster) == ["alice", "bob", "carol"]
    assert len({row["url"] for row in roster.values()}) == 3
    for seat, row in roster.items():
        status = f"{row['url']}api/status"
        assert http_status(status, row["credential"]) == 200, seat
        assert http_status(status, None) == 403
        for other, other_row in roster.items():
            if other != seat:
                assert http_status(status, other_row["credential"]) == 403, f"{other}'s credential opened {seat}"
        assert http_status(f"{status}?token={row['credential']}", None) == 200  # the roster's login link works
    status = run_coursekit(fleet_course, "status", "--json", env=ENV)
    rows = json.loads(status.stdout)
    assert [(r["seat"], r["state"], r["health"]) for r in rows] == [(s, "running", "ok") for s in ("alice", "bob", "carol")]
    again = _deploy(fleet_course)
    assert again.returncode == 0 and again.stdout.count(" keep ") == 3  # idempotent


def test_work_survives_a_new_image_and_reaches_the_archive_byte_identical(fleet_course, base_image, tmp_path):
    first = _build(fleet_course, base_image)
    assert _deploy(fleet_course).returncode == 0
    alice = _roster(fleet_course)["alice"]
    put_file(alice["url"], alice["credential"], "answer.txt", STUDENT_FILE)
    # The student edits a course notebook; the course changes another and adds a third.
    welcome = read_contents(alice["url"], alice["credential"], "notebooks/01-welcome.ipynb")["content"]
    welcome["cells"][0]["source"] = "# Alice's own notes\n"
    body = json.dumps({"type": "notebook", "content": welcome}).encode()
    request = urllib.request.Request(f"{alice['url']}api/contents/notebooks/01-welcome.ipynb", data=body, method="PUT",
                                     headers={"Authorization": f"token {alice['credential']}", "Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).close()
    (fleet_course / "notebooks" / "02-new.ipynb").write_text(json.dumps({
        "cells": [{"cell_type": "markdown", "id": "n", "metadata": {}, "source": ["Added during class."]}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }))
    commit(fleet_course, "a new notebook")
    second = _build(fleet_course, base_image)
    assert second != first
    plan = run_coursekit(fleet_course, "plan", env=ENV)
    assert plan.stdout.count("runs an outdated image") == 3
    redeployed = _deploy(fleet_course)
    assert redeployed.returncode == 0, redeployed.stdout + redeployed.stderr
    alice_after = _roster(fleet_course)["alice"]
    assert alice_after["url"] == alice["url"]  # same seat, same link
    saved = read_contents(alice["url"], alice["credential"], "answer.txt")
    assert saved["content"] == STUDENT_FILE.decode()
    notebook = read_contents(alice["url"], alice["credential"], "notebooks/01-welcome.ipynb")["content"]
    assert "".join(notebook["cells"][0]["source"]) == "# Alice's own notes\n"  # the student's edit wins
    assert read_contents(alice["url"], alice["credential"], "notebooks/02-new.ipynb")["type"] == "notebook"  # update arrived

    torn = run_coursekit(fleet_course, "teardown", "--yes", "--archive-dir", str(tmp_path / "archives"), env=ENV)
    assert torn.returncode == 0, torn.stdout + torn.stderr
    archive = tmp_path / "archives" / "alice.tar.gz"
    assert archive_file(archive, "answer.txt") == STUDENT_FILE
    manifest = archive_file(archive, "MANIFEST.sha256", top=True).decode()
    assert f"{hashlib.sha256(STUDENT_FILE).hexdigest()}  home/answer.txt" in manifest.splitlines()
    assert "brain_volumes.csv" not in manifest  # unchanged course data is not the student's work
    assert "nothing of" in torn.stdout


def test_a_killed_or_stopped_seat_is_healed(fleet_course, base_image, docker_client):
    _build(fleet_course, base_image)
    assert _deploy(fleet_course).returncode == 0
    slug = yaml.safe_load((fleet_course / "course.yaml").read_text())["course"]["slug"]
    bob = _roster(fleet_course)["bob"]
    put_file(bob["url"], bob["credential"], "keep.txt", b"bob's work")
    docker_client.containers.get(f"coursekit-{slug}.bob").remove(force=True)
    docker_client.containers.get(f"coursekit-{slug}.carol").stop(timeout=2)
    plan = run_coursekit(fleet_course, "plan", env=ENV).stdout
    assert "bob" in plan and "new seat" in plan and "unhealthy: container exited" in plan
    healed = _deploy(fleet_course)
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert read_contents(bob["url"], bob["credential"], "keep.txt")["content"] == "bob's work"
    assert http_status(f"{_roster(fleet_course)['carol']['url']}api/status", _roster(fleet_course)["carol"]["credential"]) == 200


def test_a_student_leaving_the_roster_is_archived_before_removal(fleet_course, base_image, docker_client, tmp_path):
    _build(fleet_course, base_image)
    assert _deploy(fleet_course).returncode == 0
    carol = _roster(fleet_course)["carol"]
    put_file(carol["url"], carol["credential"], "thesis.txt", b"carol's thesis draft")
    data = yaml.safe_load((fleet_course / "course.yaml").read_text())
    data["seats"]["students"] = [s for s in data["seats"]["students"] if s["id"] != "carol"]
    (fleet_course / "course.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    slug = data["course"]["slug"]

    refused = _deploy(fleet_course, "--archive-dir", str(tmp_path / "a"))
    assert refused.returncode == 1 and "would remove 1 seat (carol)" in refused.stderr
    assert docker_client.containers.get(f"coursekit-{slug}.carol").status == "running"

    removed = _deploy(fleet_course, "--yes", "--archive-dir", str(tmp_path / "a"))
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert archive_file(tmp_path / "a" / "carol.tar.gz", "thesis.txt") == b"carol's thesis draft"
    assert not docker_client.containers.list(all=True, filters={"name": f"coursekit-{slug}.carol"})
    assert not docker_client.volumes.list(filters={"name": f"coursekit-{slug}.carol.home"})


def test_one_failing_seat_does_not_stop_the_others(fleet_course, base_image, docker_client):
    image = _build(fleet_course, base_image)
    slug = yaml.safe_load((fleet_course / "course.yaml").read_text())["course"]["slug"]
    squatter = docker_client.containers.create(image, name=f"coursekit-{slug}.bob")  # not ours: no labels
    try:
        deployed = _deploy(fleet_course)
        assert deployed.returncode == 1
        assert "1 seat failed" in deployed.stderr and "bob:" in deployed.stderr and "Conflict" in deployed.stderr
        roster = _roster(fleet_course)
        assert http_status(f"{roster['alice']['url']}api/status", roster["alice"]["credential"]) == 200
        assert http_status(f"{roster['carol']['url']}api/status", roster["carol"]["credential"]) == 200
    finally:
        squatter.remove(force=True)
    healed = _deploy(fleet_course)
    assert healed.returncode == 0, healed.stdout + healed.stderr


def test_teardown_needs_yes_and_leaves_nothing(fleet_course, base_image, docker_client, tmp_path):
    _build(fleet_course, base_image)
    assert _deploy(fleet_course).returncode == 0
    slug = yaml.safe_load((fleet_course / "course.yaml").read_text())["course"]["slug"]
    refused = run_coursekit(fleet_course, "teardown", env=ENV)
    assert refused.returncode == 1 and "run it again with --yes" in refused.stderr
    torn = run_coursekit(fleet_course, "teardown", "--yes", "--archive-dir", str(tmp_path / "arch"), env=ENV)
    assert torn.returncode == 0, torn.stdout + torn.stderr
    label = {"label": f"org.coursekit.course={slug}"}
    assert docker_client.containers.list(all=True, filters=label) == []
    assert docker_client.volumes.list(filters=label) == []
    assert docker_client.networks.list(filters=label) == []
    assert sorted(p.name for p in (tmp_path / "arch").iterdir()) == ["alice.tar.gz", "bob.tar.gz", "carol.tar.gz"]
