"""No command prints a traceback when the Docker engine refuses or is not there: an engine stand-in on
loopback that answers its ping and then refuses everything (HTTP 500), and an address where nothing listens."""
from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import run_coursekit
from helpers import copy_course
from services import free_port
from threadserver import serve, stop

pytestmark = pytest.mark.slow  # every command as its own process

COMMANDS = [
    ("build",), ("test",), ("publish",), ("plan",), ("deploy",), ("status",), ("teardown", "--yes"),
]
ENV = {"COURSEKIT_SECRET": "engine-tests-7Qx2Lm9Kp4Zt"}


@pytest.fixture(scope="module")
def refusing_engine():
    """Answers /_ping and /version like an engine, then 500 with Docker's error body to everything else."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict | str) -> None:
            data = (json.dumps(body) if isinstance(body, dict) else body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if isinstance(body, dict) else "text/plain")
            self.send_header("Api-Version", "1.45")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            path = self.path.split("?")[0]
            if path.endswith("/_ping"):
                return self._send(200, "OK")
            if path.endswith("/version"):
                return self._send(200, {"ApiVersion": "1.45", "Version": "28.2.2", "MinAPIVersion": "1.24"})
            self._send(500, {"message": "engine stand-in: the storage driver failed (injected fault)"})

        do_GET = do_POST = do_DELETE = do_PUT = do_HEAD = _handle

        def log_message(self, *args):
            pass

    server = serve(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
    yield f"tcp://127.0.0.1:{server.server_port}"
    stop(server)


@pytest.fixture(scope="module")
def repo(course_repo, tmp_path_factory):
    return copy_course(course_repo, tmp_path_factory.mktemp("engine") / "course")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_an_engine_that_refuses_gives_a_clear_error(repo, refusing_engine, command):
    result = run_coursekit(repo, *command, env={**ENV, "DOCKER_HOST": refusing_engine})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "\nerror: " in "\n" + result.stderr  # progress lines may come first
    assert "injected fault" in result.stderr or "Docker" in result.stderr
    assert "unexpected" not in result.stderr and "the Docker engine failed: " not in result.stderr  # the adapter said it


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_no_engine_at_all_says_how_to_start_one(repo, command):
    result = run_coursekit(repo, *command, env={**ENV, "DOCKER_HOST": f"tcp://127.0.0.1:{free_port()}"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot reach the Docker engine" in result.stderr and "docker info" in result.stderr


@pytest.fixture(scope="module")
def unreachable_cloud(repo, tmp_path_factory):
    """The course on the openstack provider, with a clouds.yaml whose endpoints answer nothing."""
    import yaml
    from helpers import edit_course

    edit_course(repo, lambda d: d["fleet"].update(provider="openstack"))
    clouds = tmp_path_factory.mktemp("clouds") / "clouds.yaml"
    clouds.write_text(yaml.safe_dump({"clouds": {"openstack": {
        "auth_type": "v3applicationcredential", "region_name": "IU", "identity_api_version": 3,
        "auth": {"auth_url": f"http://127.0.0.1:{free_port()}/identity/v3", "application_credential_id": "x",
                 "application_credential_secret": "y"}}}}))
    yield clouds
    edit_course(repo, lambda d: d["fleet"].update(provider="docker"))


@pytest.mark.parametrize("command", [("plan",), ("deploy", "--image", "x/y:1"), ("status",), ("teardown", "--yes")],
                         ids=lambda c: c[0])
def test_a_cloud_that_cannot_be_reached_gives_a_clear_error(repo, unreachable_cloud, command):
    result = run_coursekit(repo, *command, env={**ENV, "OS_CLIENT_CONFIG_FILE": str(unreachable_cloud)})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "\nerror: " in "\n" + result.stderr
    assert "unexpected" not in result.stderr  # the cloud adapter named what failed; the last-resort handler did not
