"""Real services for the tests: the Docker engine, a test base image, a registry, a data server."""
from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import docker
import docker.errors
import docker.models.images
import pytest

sys.path.insert(0, str(Path(__file__).parent / "baseimage"))
from standin import SYSTEM_CA, ensure_base_image, ensure_rootfs  # noqa: E402,F401  (SYSTEM_CA is re-exported to the tests)
from threadserver import serve, stop


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    """The engine; a missing engine fails the tests that need it (never a skip). The course images this
    session built (helpers.BUILT) are removed after it, and nothing else: another run's stay."""
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"no Docker engine ({exc}): scripts/setup installs and starts one", pytrace=False)
    yield client
    from helpers import BUILT

    ours = [t for image in client.images.list() for t in image.tags if t.startswith(tuple(f"{h}/" for h in REGISTRIES))]
    for reference in [*BUILT, *ours]:  # tags, not image ids: an identical image of another run keeps its own tag
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(reference, force=True)
    client.close()


def remove_course_layers(client: docker.DockerClient, slug: str) -> None:
    """Leave the engine as a fresh CI runner finds it: no image or build layer labelled for the course."""
    chain = client.images.list(all=True, filters={"label": f"org.coursekit.course={slug}"})
    for image in sorted(chain, key=lambda i: i.attrs["Created"], reverse=True):  # children before parents
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(image.id, force=True)



@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    """A docker-stacks-like base image, built from nothing once and cached by its recipe's hash."""
    return ensure_base_image(docker_client)


class Registry:
    """Debian's docker-registry (the real distribution registry) on 127.0.0.1."""

    def __init__(self, root: Path, readonly: bool = False):
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: warn}\n"
            f"storage:\n  filesystem: {{rootdirectory: {root / 'data'}}}\n"
            f"  maintenance: {{readonly: {{enabled: {str(readonly).lower()}}}}}\n"
            f"http: {{addr: '{self.host}'}}\n"
        )
        with open(root / "registry.log", "w") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"docker-registry did not start: {(root / 'registry.log').read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


# Registries for the tests come from pytest-docker (tests/compose/compose.yml): Debian's docker-registry in
# images built here on the stand-in's rootfs. The data server below stays in this process: tests switch its
# faults (503s, redirects) while it serves. Registry (above) runs the same registry for the benchmarks.

@pytest.fixture(scope="session")
def docker_compose_command() -> str:
    return "docker-compose"  # Debian's docker-compose; the engine's compose plugin is not in Debian's docker.io


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(Path(__file__).parent / "compose" / "compose.yml")


@pytest.fixture(scope="session")
def docker_setup(docker_client) -> list[str]:
    """Build the services' images on the stand-in's rootfs (no registry to pull from), then start them."""
    os.environ["COURSEKIT_ROOTFS"] = ensure_rootfs(docker_client)
    return ["up --build -d"]


REGISTRIES: list[str] = []  # this session's registries: images tagged for them are this session's


def _service_address(docker_services, service: str) -> str:
    host = f"127.0.0.1:{docker_services.port_for(service, 5000)}"
    REGISTRIES.append(host)

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://{host}/v2/", timeout=2):
                return True
        except OSError:
            return False

    docker_services.wait_until_responsive(check=answers, timeout=60.0, pause=0.2)
    return host


@pytest.fixture(scope="session")
def registry(docker_services) -> str:
    """host:port of a writable registry on 127.0.0.1."""
    return _service_address(docker_services, "registry")


@pytest.fixture(scope="session")
def readonly_registry(docker_services) -> str:
    """host:port of a registry in read-only maintenance mode: it refuses every push."""
    return _service_address(docker_services, "registry-readonly")


class DataServer:
    """Serves a folder over HTTP on 127.0.0.1, with switchable faults."""

    def __init__(self, root: Path):
        self.root = root
        self.failures: dict[str, int] = {}  # path -> how many more requests get a 503
        self.redirects: dict[str, str] = {}  # path -> where a 302 sends the client
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(server.root), **kwargs)

            def do_GET(self):
                server.requests.append(self.path)
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.end_headers()
                    return
                if server.failures.get(self.path, 0) > 0:
                    server.failures[self.path] -= 1
                    self.send_error(503, "try again")
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        serve(self.httpd)

    def add(self, name: str, content: bytes) -> tuple[str, str]:
        """Serve content at /name; returns (url, sha256)."""
        (self.root / name).write_bytes(content)
        return f"{self.url}/{name}", hashlib.sha256(content).hexdigest()


@pytest.fixture
def data_server(tmp_path) -> DataServer:
    root = tmp_path / "served"
    root.mkdir()
    server = DataServer(root)
    yield server
    stop(server.httpd)


@pytest.fixture
def course_containers(docker_client):
    """Checks after the test that it left no image-test container behind (another run's are not its concern),
    and cleans up if it did."""
    label = {"label": "org.coursekit.role=image-test"}
    before = {c.id for c in docker_client.containers.list(all=True, filters=label)}
    yield
    leftovers = [c for c in docker_client.containers.list(all=True, filters=label) if c.id not in before]
    for container in leftovers:
        container.remove(force=True, v=True)
    assert not leftovers, f"containers left behind: {[c.name for c in leftovers]}"
