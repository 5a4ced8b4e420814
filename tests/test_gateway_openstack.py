"""The Jetstream2 gateway end to end on the emulator: one floating IP for the whole class, seats without public
addresses that admit only the gateway's security group, each seat reachable only with its own credential,
faults that converge, a gateway that heals keeping its address, and nothing left after teardown."""
from __future__ import annotations

import csv
import io
import json

import pytest
from conftest import run_coursekit
from helpers import edit_course, http, insecure_tls, make_course

SECRET = "gateway-openstack-secret-Hs8Qw2Lz5Xn3"
IMAGE = "docker.io/your-user/gw-cloud:abc1234"
SLUG = "gw-cloud"
pytestmark = pytest.mark.cloud


def _course(course_repo, tmp_path, cloud, students: list[str], **openstack):
    repo = make_course(course_repo, tmp_path / "course", SLUG, students)
    edit_course(repo, lambda d: (
        d["fleet"].update(provider="openstack"),
        d["fleet"]["openstack"].update(poll_seconds=0.2, boot_timeout_minutes=0.25, **openstack),
        d["schedule"].update(awake=[]),
    ))
    cloud.clouds_yaml(tmp_path / "clouds.yaml")
    return repo


def coursekit(repo, *args: str):
    return run_coursekit(repo, *args, env={"COURSEKIT_SECRET": SECRET, "OS_CLIENT_CONFIG_FILE": str(repo.parent / "clouds.yaml")})


def roster(repo) -> dict[str, dict]:
    result = coursekit(repo, "roster")
    assert result.returncode == 0, result.stderr
    return {row["seat"]: row for row in csv.DictReader(io.StringIO(result.stdout))}


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    return http(url, token, context=insecure_tls())


def seat_servers(cloud) -> list[dict]:
    return [s for s in cloud.live_servers() if "coursekit-seat" in s["metadata"]]


def test_thirty_seats_through_one_address_with_faults_that_converge(course_repo, tmp_path, cloud):
    students = [f"s{n:02d}" for n in range(1, 31)]
    repo = _course(course_repo, tmp_path, cloud, students)
    cloud.floating_ip_quota = 5
    vm = {s: f"{SLUG}-{s}-" for s in students}  # instance names start with slug-seat-
    cloud.error_once.add(next(n for n in _names(repo, ["s03"])))
    cloud.create_503.add(next(n for n in _names(repo, ["s07"])))
    cloud.stuck.add(next(n for n in _names(repo, ["s11"])))
    first = coursekit(repo, "deploy", "--image", IMAGE)
    assert first.returncode == 1 and "s11: not answering after 0.25 minutes (VM BUILD)" in first.stderr, first.stderr
    cloud.stuck.clear()
    second = coursekit(repo, "deploy", "--image", IMAGE)
    assert second.returncode == 0, second.stdout + second.stderr
    assert len(cloud.floating_ips) == 1
    gateway_fip = next(iter(cloud.floating_ips.values()))
    gateway = next(s for s in cloud.live_servers() if s["metadata"].get("coursekit-role") == "gateway")
    assert cloud._server_of_port(gateway_fip["port_id"]) is gateway  # the one address is the gateway's
    assert len(seat_servers(cloud)) == 30 and all(vm[s["metadata"]["coursekit-seat"]] in s["name"] for s in seat_servers(cloud))

    links = roster(repo)
    front = f"https://{gateway_fip['floating_ip_address']}/"
    assert {row["url"] for row in links.values()} == {f"{front}{s}/" for s in students}
    assert links["s05"]["link"] == f"{front}s05/?token={links['s05']['credential']}"
    for seat in ("s01", "s03", "s07", "s11", "s30"):
        assert get(f"{front}{seat}/api/status", links[seat]["credential"])[0] == 200
    assert get(f"{front}s01/api/status", links["s02"]["credential"])[0] == 403  # another seat's credential
    assert get(f"{front}s01/api/status", None)[0] == 403
    assert get(f"{front}nobody/", None)[0] == 404

    groups = {g["name"]: g for g in cloud.security_groups.values()}
    seats_group, gateway_group = groups[f"coursekit-{SLUG}"], groups[f"coursekit-{SLUG}-gateway"]
    inbound = [(r["port_range_min"], r.get("remote_ip_prefix"), r.get("remote_group_id"))
               for r in seats_group["security_group_rules"] if r["direction"] == "ingress"]
    assert inbound == [(8080, None, gateway_group["id"])]  # the seats' one port, from the gateway only
    to_gateway = sorted((r["port_range_min"], r.get("remote_ip_prefix"), r.get("remote_group_id"))
                        for r in gateway_group["security_group_rules"] if r["direction"] == "ingress")
    assert to_gateway == [(80, "0.0.0.0/0", None), (443, "0.0.0.0/0", None), (5000, None, seats_group["id"])]
    # Seats pull the course image through the gateway's cache, on its private address.
    gateway_fixed = gateway["addresses"]["auto_allocated_network"][0]["addr"]
    assert {cloud._env(s, "seat.env")["MIRROR"] for s in seat_servers(cloud)} == {f"{gateway_fixed}:5000"}
    assert cloud._env(gateway, "gateway.env")["REGISTRY_UPSTREAM"] == "https://registry-1.docker.io"
    assert all(g.get("name") == seats_group["name"] for s in seat_servers(cloud) for g in s["security_groups"])

    status = {r["seat"]: r for r in json.loads(coursekit(repo, "status", "--json").stdout)}
    assert status["gateway"]["health"] == "ok" and {status[s]["health"] for s in students} == {"ok"}
    calls = len(cloud.calls)
    again = coursekit(repo, "deploy", "--image", IMAGE)
    assert again.returncode == 0 and again.stdout.count(" keep ") == 30
    assert len(cloud.calls) - calls <= 10, cloud.calls[calls:]  # a no-op re-deploy of the class

    torn = coursekit(repo, "teardown", "--yes", "--archive-dir", str(tmp_path / "arch"))
    assert torn.returncode == 0, torn.stdout + torn.stderr
    assert cloud.live_servers() == [] and cloud.floating_ips == {} and cloud.security_groups == {}
    assert len(list((tmp_path / "arch").glob("*.tar.gz"))) == 30


def _names(repo, seats: list[str]) -> list[str]:
    """Instance names coursekit gives these seats (the emulator's faults are keyed by name)."""
    import hashlib

    return [f"{SLUG}-{s}-{hashlib.sha256(f'{SLUG}:{s}'.encode()).hexdigest()[:6]}" for s in seats]


def test_a_deleted_gateway_comes_back_with_the_same_address_and_pages_for_paused_and_starting_seats(course_repo, tmp_path, cloud):
    repo = _course(course_repo, tmp_path, cloud, ["ann", "ben"])
    assert coursekit(repo, "deploy", "--image", IMAGE).returncode == 0
    links = roster(repo)
    gateway = next(s for s in cloud.live_servers() if s["metadata"].get("coursekit-role") == "gateway")
    with cloud._lock:
        gateway.update(_deleted_at=0)  # gone behind coursekit's back
    status = {r["seat"]: r for r in json.loads(coursekit(repo, "status", "--json").stdout)}
    assert status["gateway"]["state"] == "missing"
    healed = coursekit(repo, "deploy", "--image", IMAGE)
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert roster(repo) == links  # the same floating IP: every link still works
    assert get(f"{links['ann']['url']}api/status", links["ann"]["credential"])[0] == 200

    assert coursekit(repo, "pause", "--seat", "ann").returncode == 0
    code, body = get(links["ann"]["url"])
    assert code == 503 and b"paused" in body and b"ask your instructor" in body
    cloud.force(_names(repo, ["ben"])[0], "SHUTOFF")  # powered off by hand: the gateway cannot reach it
    code, body = get(links["ben"]["url"])
    assert code == 503 and b"starting" in body
    assert coursekit(repo, "resume").returncode == 0
    assert all(get(f"{links[s]['url']}api/status", links[s]["credential"])[0] == 200 for s in ("ann", "ben"))


def test_the_papers_class_fits_a_default_education_allocation(course_repo, tmp_path, cloud):
    """48 seats of m3.quad (40 students, 5 instructors, 3 spares) on 200 cores, 780 GB and 25 floating IPs."""
    students = [f"st{n:02d}" for n in range(1, 46)]
    repo = _course(course_repo, tmp_path, cloud, students[:40], flavor="m3.quad")
    edit_course(repo, lambda d: d["seats"].update(instructors=[{"id": s, "name": s} for s in students[40:]], spares=3))
    cloud.max_instances, cloud.max_cores, cloud.max_ram_mb, cloud.floating_ip_quota = 100, 200, 780 * 1024, 25
    too_big = _course(course_repo, tmp_path / "big", cloud, students[:40])  # m3.medium: 8 cores a seat
    edit_course(too_big, lambda d: d["seats"].update(instructors=[{"id": s, "name": s} for s in students[40:]], spares=3))
    refused = coursekit(too_big, "deploy", "--image", IMAGE)
    assert refused.returncode == 1
    assert ("48 seats × m3.medium and the gateway need 386 cores and 1446 GB; m3.quad fits (192 cores, 720 GB: "
            "set fleet.openstack.flavor)") in refused.stderr
    deployed = coursekit(repo, "deploy", "--image", IMAGE)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert len(cloud.floating_ips) == 1 and len(seat_servers(cloud)) == 48


def test_an_image_update_reaches_every_seat_in_place_through_the_gateway(course_repo, tmp_path, cloud):
    repo = _course(course_repo, tmp_path, cloud, ["ann", "ben"])
    assert coursekit(repo, "deploy", "--image", IMAGE).returncode == 0
    ids = {s["id"] for s in seat_servers(cloud)}
    links = roster(repo)
    (cloud.home(_names(repo, ["ann"])[0]) / "answer.txt").write_text("kept\n")
    newer = IMAGE.replace("abc1234", "def5678")
    updated = coursekit(repo, "deploy", "--image", newer)
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert updated.stdout.count(" update ") == 2
    assert {s["id"] for s in seat_servers(cloud)} == ids  # the same VMs: updated in place, homes kept
    for seat in ("ann", "ben"):
        code, body = get(f"{links[seat]['url']}coursekit/seat.json", links[seat]["credential"])
        assert code == 200 and json.loads(body)["image"] == newer
    assert (cloud.home(_names(repo, ["ann"])[0]) / "answer.txt").read_text() == "kept\n"
