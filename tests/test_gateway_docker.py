"""One front door on a Docker host (fleet.docker.access: gateway): real Caddy, built here from Debian's
package, routing https://127.0.0.1:<port>/<seat>/ to seats that listen only on loopback, the seat's own
credential checked by Jupyter end to end, routes following the fleet without recreating the gateway."""
from __future__ import annotations

import csv
import io
import json

import pytest
from conftest import run_coursekit
from helpers import build, edit_course, http, insecure_tls
from services import ensure_rootfs, free_port

SECRET = "gateway-docker-secret-Pw3Kx9Lq2Vz7"
SLUG = "gw-docker"


@pytest.fixture
def course(fleet_factory, base_image, docker_client):
    repo = fleet_factory(SLUG, students=["ann", "ben"])
    https_port, http_port = free_port(), free_port()
    edit_course(repo, lambda d: (
        d["fleet"]["docker"].update(access="gateway", https_port=https_port, http_port=http_port,
                                    gateway_base=ensure_rootfs(docker_client)),
        d["schedule"].update(awake=[]),
    ))
    assert build(repo, base_image).returncode == 0
    yield repo
    for container in docker_client.containers.list(all=True, filters={"label": f"org.coursekit.course={SLUG}"}):
        container.remove(force=True)  # the gateway too (fleet_factory removes seats, volumes and networks)


def coursekit(repo, *args: str):
    return run_coursekit(repo, *args, env={"COURSEKIT_SECRET": SECRET})


def get(url: str, token: str | None) -> tuple[int, bytes]:
    return http(url, token, context=insecure_tls())  # the gateway's internal CA


def links(repo) -> dict[str, str]:
    result = coursekit(repo, "roster")
    assert result.returncode == 0, result.stderr
    return {row["seat"]: row for row in csv.DictReader(io.StringIO(result.stdout))}


def test_one_front_door_routes_each_seat_and_follows_the_fleet(course, docker_client):
    deployed = coursekit(course, "deploy")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    roster = links(course)
    front = roster["ann"]["url"].removesuffix("ann/")
    assert front.startswith("https://127.0.0.1:") and roster["ben"]["url"] == f"{front}ben/"
    assert roster["ann"]["link"] == f"{front}ann/?token={roster['ann']['credential']}"
    for seat in ("ann", "ben"):
        container = docker_client.containers.get(f"coursekit-{SLUG}.{seat}")
        assert {b["HostIp"] for binds in container.attrs["HostConfig"]["PortBindings"].values() for b in binds} == {"127.0.0.1"}
    ann, ben = roster["ann"]["credential"], roster["ben"]["credential"]
    # Jupyter behind the gateway checks the seat's own credential, end to end.
    assert get(f"{front}ann/api/status", ann)[0] == 200
    assert get(f"{front}ann/api/status", ben)[0] == 403
    assert get(f"{front}ann/api/status", None)[0] == 403
    assert get(f"{front}nobody/", None)[0] == 404
    # Encoded separators, dots and empty segments are refused before routing: never a way from ann's path to ben's.
    for crossing in ("ann/..%2fben/api/status", "ann/%2e%2e/ben/api/status", "ann/..%5cben/api/status",
                     "ann//api/status", "ann/./api/status", "ann/..%2Fben/api/status", "ann/%2E%2E%2Fben/api/status"):
        code, body = get(f"{front}{crossing}", ben)
        assert code == 400 and b"Bad address" in body, crossing
    assert get(f"{front}ann/api/status?next=%2Fben%2F%2E%2E", ann)[0] == 200  # the query is Jupyter's own business
    gateway = docker_client.containers.get(f"coursekit-{SLUG}.gateway")
    status = {r["seat"]: r for r in json.loads(coursekit(course, "status", "--json").stdout)}
    assert status["gateway"]["health"] == "ok" and status["ann"]["url"] == f"{front}ann/"

    # A seat added and one removed: routes follow, the gateway stays the same container.
    edit_course(course, lambda d: d["seats"].update(students=[{"id": "ann", "name": "Ann"}, {"id": "cy", "name": "Cy"}]))
    changed = coursekit(course, "deploy", "--yes")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    cy = links(course)["cy"]["credential"]
    assert get(f"{front}cy/api/status", cy)[0] == 200
    assert get(f"{front}ben/api/status", ben)[0] == 404
    assert docker_client.containers.get(f"coursekit-{SLUG}.gateway").id == gateway.id

    # A paused seat shows a page saying so; a seat that is down shows that it is starting, not a 502.
    assert coursekit(course, "pause", "--seat", "ann").returncode == 0
    code, body = get(f"{front}ann/", None)
    assert code == 503 and b"paused" in body
    docker_client.containers.get(f"coursekit-{SLUG}.cy").stop(timeout=5)
    code, body = get(f"{front}cy/", None)
    assert code == 503 and b"starting" in body
    assert coursekit(course, "resume", "--seat", "ann").returncode == 0
    assert get(f"{front}ann/api/status", ann)[0] == 200

    torn = coursekit(course, "teardown", "--yes", "--archive-dir", str(course.parent / "arch"))
    assert torn.returncode == 0, torn.stdout + torn.stderr
    assert docker_client.containers.list(all=True, filters={"label": f"org.coursekit.course={SLUG}"}) == []
    assert docker_client.volumes.list(filters={"label": f"org.coursekit.course={SLUG}"}) == []
