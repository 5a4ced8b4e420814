"""The openstack provider against the Jetstream2 emulator, driven as the deploy/teardown workflows drive it."""
from __future__ import annotations

import base64
import csv
import io
import json
import ssl
import tarfile
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import run_coursekit
from helpers import copy_course

SECRET = "openstack-tests-secret-0123456789"
IMAGE = "docker.io/your-user/intro-to-data-science:abc1234"


@pytest.fixture
def course(course_repo, tmp_path, cloud) -> Path:
    """The default bake on the openstack provider with a floating IP per seat, fast polling and a short boot timeout."""
    repo = copy_course(course_repo, tmp_path / "course")
    data = yaml.safe_load((repo / "course.yaml").read_text())
    data["fleet"]["provider"] = "openstack"
    # One floating IP per seat, the mode before the gateway (test_gateway_openstack.py covers the default).
    data["fleet"]["openstack"].update(poll_seconds=0.2, boot_timeout_minutes=0.25, access="floating-ip")
    (repo / "course.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    cloud.clouds_yaml(tmp_path / "clouds.yaml")
    return repo


def _vm(seat: str) -> str:
    """The VM name the provider gives a seat of the default course (the emulator's faults are keyed by it)."""
    import hashlib

    return f"intro-to-data-science-{seat}-{hashlib.sha256(f'intro-to-data-science:{seat}'.encode()).hexdigest()[:6]}"


def coursekit(course: Path, *args: str):
    env = {"COURSEKIT_SECRET": SECRET, "OS_CLIENT_CONFIG_FILE": str(course.parent / "clouds.yaml")}
    return run_coursekit(course, *args, env=env)


def deploy(course: Path, *args: str):
    return coursekit(course, "deploy", "--image", IMAGE, *args)


def roster(course: Path) -> dict[str, dict]:
    result = coursekit(course, "roster")
    assert result.returncode == 0, result.stderr
    return {row["seat"]: row for row in csv.DictReader(io.StringIO(result.stdout))}


def https(url: str, token: str | None, data: bytes | None = None, method: str = "GET"):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    headers = {"Authorization": f"token {token}"} if token else {}
    request = urllib.request.Request(url, data=data, method=method, headers={**headers, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_deploy_five_seats_and_converge(course, cloud):
    result = deploy(course)
    assert result.returncode == 0, result.stdout + result.stderr
    servers = cloud.live_servers()
    assert sorted(s["metadata"]["coursekit-seat"] for s in servers) == ["ada-lovelace", "alice", "bob", "carol", "spare-1"]
    for server in servers:
        assert "coursekit-course-intro-to-data-science" in server["tags"]
        assert server["metadata"]["coursekit-image"] == IMAGE
        assert server["_user_data"].startswith("#cloud-config")  # sent base64-encoded, as Nova requires
    assert all(f["floating_ip_address"].startswith(f"127.{cloud.floating_net}.") and f["port_id"] for f in cloud.floating_ips.values())
    assert len(cloud.floating_ips) == 5
    group = next(iter(cloud.security_groups.values()))
    ingress = sorted(r["port_range_min"] for r in group["security_group_rules"] if r["direction"] == "ingress")
    assert ingress == [80, 443]  # no ssh_cidrs: port 22 stays closed
    seats = roster(course)
    for seat, row in seats.items():
        assert row["url"].startswith(f"https://127.{cloud.floating_net}.")
        assert https(row["url"] + "api/status", row["credential"]) == 200
        assert https(row["url"] + "api/status", None) == 403
        other = seats["alice" if seat != "alice" else "bob"]["credential"]
        assert https(row["url"] + "api/status", other) == 403

    cloud.calls.clear()
    again = deploy(course)
    assert again.returncode == 0 and again.stdout.count(" keep ") == 5
    assert len(cloud.calls) <= 10, cloud.calls  # a no-op re-deploy stays cheap


def test_status_lists_the_course_once_and_asks_each_seat_once(course, cloud):
    """The schedule column is read from the same probe as the row: at 50 seats, status is one listing and one
    answer per seat (it was two of each), the seat's report of its image aside."""
    assert deploy(course).returncode == 0
    stand_ins = list(cloud.stand_ins.values())
    before = [s.token_requests for s in stand_ins]
    cloud.calls.clear()
    shown = coursekit(course, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    assert all(r["schedule"] != "-" for r in json.loads(shown.stdout))  # the default course has a schedule
    assert sorted(c for c in cloud.calls if "servers/detail" in c or "floatingips" in c) == [
        "GET /compute/v2.1/servers/detail", "GET /network/v2.0/floatingips"], cloud.calls
    assert [s.token_requests - b for s, b in zip(stand_ins, before, strict=True)] == [2] * 5  # /api/status, seat.json


def test_a_new_image_updates_each_vm_in_place_and_keeps_the_work(course, cloud):
    assert deploy(course).returncode == 0
    servers = {s["id"] for s in cloud.live_servers()}
    alice = roster(course)["alice"]
    body = json.dumps({"type": "file", "format": "base64", "content": base64.b64encode(b"morning work\n").decode()}).encode()
    assert https(alice["url"] + "api/contents/answer.txt", alice["credential"], body, "PUT") == 201

    newer = IMAGE.replace(":abc1234", ":def5678")
    plan = coursekit(course, "plan", "--image", newer)
    assert plan.stdout.count(" update ") == 5 and "runs an outdated image" in plan.stdout
    cloud.calls.clear()
    result = coursekit(course, "deploy", "--image", newer)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {s["id"] for s in cloud.live_servers()} == servers  # no VM was replaced
    assert not [c for c in cloud.calls if c == "POST /compute/v2.1/servers" or c.startswith("DELETE")]
    assert all(cloud.stand_ins[a].image == newer for a in cloud.stand_ins)  # every VM reports the new image
    address = alice["url"].split("//")[1].rstrip("/")
    assert (cloud.stand_ins[address].home / "answer.txt").read_bytes() == b"morning work\n"
    status = coursekit(course, "status")
    assert status.stdout.count(":def5678") == 5
    assert coursekit(course, "deploy", "--image", newer).stdout.count(" keep ") == 5


def test_a_vm_that_does_not_switch_images_fails_clearly_then_converges(course, cloud):
    assert deploy(course).returncode == 0
    cloud.updates_fail = {_vm("carol")}
    newer = IMAGE.replace(":abc1234", ":def5678")
    result = coursekit(course, "deploy", "--image", newer)
    assert result.returncode == 1
    assert "carol: the VM did not switch to " + newer in result.stderr and "journalctl -u coursekit-update" in result.stderr
    # Nova's metadata already names the new image; what the VM reports still says it is outdated.
    plan = coursekit(course, "plan", "--image", newer)
    assert plan.stdout.count(" update ") == 1 and "carol" in plan.stdout
    cloud.updates_fail = set()
    healed = coursekit(course, "deploy", "--image", newer)
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert all(stand_in.image == newer for stand_in in cloud.stand_ins.values())


def test_a_seat_in_error_is_deleted_and_recreated_once(course, cloud):
    cloud.error_once = {_vm("bob")}
    result = deploy(course)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bob: recreating (No valid host was found" in result.stderr
    assert len(cloud.live_servers()) == 5


def test_stuck_build_fails_the_seat_then_a_rerun_converges(course, cloud):
    cloud.stuck = {_vm("carol")}
    result = deploy(course)
    assert result.returncode == 1
    assert "1 seat failed" in result.stderr and "carol: not answering after 0.25 minutes (VM BUILD)" in result.stderr
    assert roster(course)["alice"]["url"].startswith("https://")  # the others are up
    plan = coursekit(course, "plan", "--image", IMAGE)
    assert "carol" in plan.stdout and "unhealthy: stuck in BUILD for 0." in plan.stdout
    cloud.stuck = set()  # the cloud recovers; carol's VM finally boots
    healed = deploy(course)
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert len(cloud.live_servers()) == 5 and len(cloud.floating_ips) == 5
    carol = roster(course)["carol"]
    assert https(carol["url"] + "api/status", carol["credential"]) == 200


def test_403_quota_on_the_kth_server_is_retried(course, cloud):
    cloud.quota_fail_at = 3
    result = deploy(course)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(cloud.live_servers()) == 5


def test_409_over_quota_on_floating_ips_is_retried(course, cloud):
    cloud.fip_conflicts = 2
    result = deploy(course)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(cloud.floating_ips) == 5


def test_503_that_still_creates_makes_no_duplicate(course, cloud):
    cloud.create_503 = {_vm("alice"), _vm("bob")}
    result = deploy(course)
    assert result.returncode == 0, result.stdout + result.stderr
    names = sorted(s["name"] for s in cloud.live_servers())
    assert len(names) == len(set(names)) == 5


def test_preflight_refuses_before_creating_anything(course, cloud):
    cloud.floating_ip_quota = 3
    cloud.max_cores = 16
    result = deploy(course)
    assert result.returncode == 1
    assert "needs 40 more cores, quota allows 16" in result.stderr
    assert "needs 5 more floating IPs, quota allows 3" in result.stderr
    assert "ask your allocation's support for a raise or use fewer seats" in result.stderr
    assert cloud.live_servers() == [] and cloud.floating_ips == {}


def test_preflight_names_a_missing_flavor(course, cloud):
    text = (course / "course.yaml").read_text().replace("flavor: m3.medium", "flavor: m3.tiny")
    (course / "course.yaml").write_text(text)
    del cloud.images["img-u22"]
    result = deploy(course)
    assert result.returncode == 1
    assert "image 'Featured-Ubuntu22' does not exist in cloud 'openstack'" in result.stderr


def test_teardown_archives_then_leaves_nothing(course, cloud, tmp_path):
    cloud.delete_seconds = 0.5  # slow deletes: the security group goes only after the servers
    assert deploy(course).returncode == 0
    alice = roster(course)["alice"]
    body = json.dumps({"type": "file", "format": "base64", "content": base64.b64encode(b"alice's answer\n").decode()}).encode()
    assert https(alice["url"] + "api/contents/answer.txt", alice["credential"], body, "PUT") == 201
    result = coursekit(course, "teardown", "--yes", "--archive-dir", str(tmp_path / "archives"))
    assert result.returncode == 0, result.stdout + result.stderr
    with tarfile.open(tmp_path / "archives" / "alice.tar.gz") as tar:
        assert tar.extractfile("home/answer.txt").read() == b"alice's answer\n"
        assert "home/notebooks/01-welcome.ipynb" in tar.getnames()
    assert cloud.live_servers() == [] and cloud.floating_ips == {} and cloud.ports == {} and cloud.security_groups == {}
    assert "nothing of 'intro-to-data-science' is left" in result.stdout


def test_a_seat_that_cannot_be_archived_is_left_running(course, cloud, tmp_path):
    assert deploy(course).returncode == 0
    bob_address = roster(course)["bob"]["url"].split("//")[1].rstrip("/")
    cloud.stand_ins[bob_address].broken = True
    result = coursekit(course, "teardown", "--yes", "--archive-dir", str(tmp_path / "archives"))
    assert result.returncode == 1
    assert "bob: cannot read the home folder through its VM" in result.stderr and "the VM is left running" in result.stderr
    assert [s["metadata"]["coursekit-seat"] for s in cloud.live_servers()] == ["bob"]
    assert len(cloud.floating_ips) == 1 and len(cloud.security_groups) == 1


# Work safety: a VM's disk holds the student's work -------------------------------------------------

def _plan_rows(course: Path, *args: str) -> str:
    result = coursekit(course, "plan", "--image", IMAGE, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _today(hour: int) -> str:
    """A moment of today in UTC (the default course's awake window is 08:00-18:00 UTC)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).replace(hour=hour, minute=0, second=0, microsecond=0).isoformat()


def test_a_shut_off_and_a_shelved_seat_are_woken_not_replaced(course, cloud):
    assert deploy(course).returncode == 0
    name = {s["metadata"]["coursekit-seat"]: s["name"] for s in cloud.live_servers()}
    ids = {s["name"]: s["id"] for s in cloud.live_servers()}
    (cloud.home(name["alice"]) / "answer.txt").write_text("alice's answer\n")
    cloud.force(name["alice"], "SHUTOFF")
    cloud.force(name["bob"], "SHELVED_OFFLOADED")  # shelved in Exosphere: a paused seat
    plan = _plan_rows(course, "--at", _today(12))
    assert plan.count(" wake ") == 2 and "replace" not in plan
    night = _plan_rows(course, "--at", _today(20))  # outside the awake hours a paused seat stays paused
    assert night.count(" wake ") == 1 and "paused: `coursekit resume` or the" in night and "replace" not in night
    woken = deploy(course, "--at", _today(12))
    assert woken.returncode == 0, woken.stdout + woken.stderr
    assert {s["name"]: s["id"] for s in cloud.live_servers()} == ids  # the same VMs: nothing was deleted
    assert {s["status"] for s in cloud.live_servers()} == {"ACTIVE"}
    alice = roster(course)["alice"]
    assert https(alice["url"] + "api/contents/answer.txt", alice["credential"]) == 200
    assert "POST /compute/v2.1/servers/" + ids[name["alice"]] + "/action" in cloud.calls


def test_teardown_wakes_a_shelved_seat_and_archives_its_hidden_files(course, cloud, tmp_path):
    assert deploy(course).returncode == 0
    name = {s["metadata"]["coursekit-seat"]: s["name"] for s in cloud.live_servers()}
    home = cloud.home(name["carol"])
    (home / "work" / "project" / ".git").mkdir(parents=True)
    (home / "work" / "project" / ".git" / "HEAD").write_bytes(b"ref: refs/heads/main\n")
    (home / ".config").mkdir()
    (home / ".config" / "settings.json").write_bytes(b"{}")
    (home / "r\xe9sum\xe9.txt".encode("latin-1").decode("utf-8", "surrogateescape")).write_bytes(b"not utf-8 name")
    (home / "link").symlink_to("/etc/passwd")
    (home / "hard").hardlink_to(home / ".config" / "settings.json")
    cloud.force(name["carol"], "SHELVED_OFFLOADED")
    torn = coursekit(course, "teardown", "--yes", "--archive-dir", str(tmp_path / "arch"))
    assert torn.returncode == 0, torn.stdout + torn.stderr
    with tarfile.open(tmp_path / "arch" / "carol.tar.gz", errors="surrogateescape") as tar:
        names = tar.getnames()
        assert tar.extractfile("home/work/project/.git/HEAD").read() == b"ref: refs/heads/main\n"
        assert tar.getmember("home/link").issym() and tar.getmember("home/link").linkname == "/etc/passwd"
        assert tar.extractfile("home/hard").read() == b"{}"
        assert "home/r\udce9sum\udce9.txt" in names
    assert cloud.live_servers() == []


def test_a_broken_vm_that_served_is_left_in_place_until_discarded(course, cloud, tmp_path):
    assert deploy(course).returncode == 0
    name = {s["metadata"]["coursekit-seat"]: s["name"] for s in cloud.live_servers()}
    before = cloud.server_named(name["bob"])["id"]
    cloud.force(name["bob"], "ERROR", fault="host failure")
    blocked = deploy(course)
    assert blocked.returncode == 1
    assert "bob: VM in ERROR: host failure; its disk holds the student's work, so it is left in place" in blocked.stderr
    assert "deploy --discard bob" in blocked.stderr
    assert cloud.server_named(name["bob"])["id"] == before
    torn = coursekit(course, "teardown", "--yes", "--archive-dir", str(tmp_path / "arch"))
    assert torn.returncode == 1 and "bob: VM ERROR: its disk holds the student's work and cannot be read" in torn.stderr
    assert [s["metadata"]["coursekit-seat"] for s in cloud.live_servers()] == ["bob"]
    # The instructor has read what is lost and says so.
    discarded = deploy(course, "--discard", "bob")
    assert discarded.returncode == 0, discarded.stdout + discarded.stderr
    assert cloud.server_named(name["bob"])["id"] != before


def test_a_vm_with_the_wrong_certificate_never_sees_the_token(course, cloud):
    cloud.wrong_cert.add(_vm("carol"))
    result = deploy(course)
    assert result.returncode == 1
    assert "seat carol: https://" in result.stderr and "presents a certificate that is not this seat's" in result.stderr
    address = next(f["floating_ip_address"] for f in cloud.floating_ips.values()
                   if "coursekit-seat-carol" in f["tags"])
    assert cloud.stand_ins[address].token_requests == 0
    others = [a for a in cloud.stand_ins if a != address]
    assert others and all(cloud.stand_ins[a].token_requests > 0 for a in others)


def test_preflight_names_the_largest_flavor_that_fits(course, cloud):
    # A default Education allocation: 200 cores, 780 GB; the paper's class is 48 seats of m3.medium (384 cores).
    data = yaml.safe_load((course / "course.yaml").read_text())
    data["seats"] = {"students": [{"id": f"s{n:02d}", "name": f"S {n}"} for n in range(40)],
                     "instructors": [{"id": f"i{n}", "name": f"I {n}"} for n in range(5)], "spares": 3}
    (course / "course.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    cloud.max_cores, cloud.max_ram_mb, cloud.floating_ip_quota = 200, 780 * 1024, 100
    result = deploy(course)
    assert result.returncode == 1
    assert "needs 384 more cores, quota allows 200" in result.stderr
    assert "48 seats × m3.medium need 384 cores and 1440 GB; m3.quad fits (192 cores, 720 GB: set fleet.openstack.flavor)" \
        in result.stderr
    assert cloud.live_servers() == []
