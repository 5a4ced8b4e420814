"""`coursekit check`: every seat through its student's door, as its student: a healthy fleet passes; a seat whose
kernel a student broke, one whose data file changed and one whose credential is no longer the roster's are each
named, the others still pass. Both front doors of a Docker host."""
from __future__ import annotations

import time

import pytest
from conftest import run_coursekit
from helpers import build, edit_course
from services import ensure_rootfs, free_port

SECRET = "check-secret-Lm4Qp8Zr2Wx6Tn"
ENV = {"COURSEKIT_SECRET": SECRET}
# A student's kernel configuration that kills every kernel as it starts (as a broken package import would).
BROKEN_KERNEL = ("mkdir -p ~/.ipython/profile_default && echo 'c.IPKernelApp.exec_lines = [\"import os; os._exit(3)\"]' "
                 "> ~/.ipython/profile_default/ipython_kernel_config.py")
OTHER_TOKEN = """mkdir -p ~/.jupyter && echo 'c.IdentityProvider.token = "not-the-rosters-credential-0123456789"' \
>> ~/.jupyter/jupyter_server_config.py"""


@pytest.fixture(params=["ports", "gateway"])
def fleet(request, fleet_factory, base_image, docker_client):
    access, slug = request.param, f"check-{request.param}"
    repo = fleet_factory(slug, students=["ann", "ben", "cy", "dan"])
    edit_course(repo, lambda d: (
        d["fleet"]["docker"].update(access=access, **({"https_port": free_port(), "http_port": free_port(),
                                                        "gateway_base": ensure_rootfs(docker_client)}
                                                       if access == "gateway" else {"port_base": free_port()})),
        d["schedule"].update(awake=[]),
    ))
    assert build(repo, base_image).returncode == 0
    deployed = run_coursekit(repo, "deploy", env=ENV)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    yield repo, slug
    for container in docker_client.containers.list(all=True, filters={"label": f"org.coursekit.course={slug}"}):
        container.remove(force=True)  # the gateway too


def _rows(output: str) -> dict[str, str]:
    """seat → its table row's text (rich may wrap a row's cells over several lines)."""
    rows: dict[str, str] = {}
    seat = None
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) >= 2 and cells[0] in ("ann", "ben", "cy", "dan"):
            seat = cells[0]
        if seat and len(cells) >= 2:
            rows[seat] = rows.get(seat, "") + " " + " ".join(cells)
    return rows


def test_check_passes_a_healthy_fleet_and_names_each_broken_seat(fleet, docker_client):
    repo, slug = fleet
    started = time.monotonic()
    healthy = run_coursekit(repo, "check", env=ENV)
    took = time.monotonic() - started
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "4 of 4 seats passed" in healthy.stderr and healthy.stdout.count(" ok ") >= 4, healthy.stdout

    def seat(name: str):
        return docker_client.containers.get(f"coursekit-{slug}.{name}")

    assert seat("ann").exec_run(["bash", "-c", BROKEN_KERNEL], user="jovyan").exit_code == 0
    assert seat("ben").exec_run(["bash", "-c", "echo tampered >> ~/data/brain_volumes.csv"], user="jovyan").exit_code == 0
    assert seat("cy").exec_run(["bash", "-c", OTHER_TOKEN], user="jovyan").exit_code == 0
    seat("cy").restart(timeout=5)
    time.sleep(3)
    broken = run_coursekit(repo, "check", env=ENV)
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    rows = _rows(broken.stdout)
    assert "FAILED" in rows["ann"] and "kernel" in rows["ann"], broken.stdout
    assert "FAILED" in rows["ben"] and "brain_volumes.csv" in rows["ben"], broken.stdout
    assert "FAILED" in rows["cy"] and "credential does not open it" in rows["cy"], broken.stdout
    assert "FAILED" not in rows["dan"] and "1 of 4 seats passed" in broken.stderr, broken.stdout
    print(f"\ncheck, {slug}: 4 healthy seats in {took:.1f} s")
