"""The front door of a Docker-host fleet (`fleet.docker.access: gateway`): one Caddy container for the course.

Its image is built on this machine from Debian's caddy package (no registry needed beyond the Debian base).
It runs in the host's network namespace and proxies https://<public_host>/<seat>/ to each seat's Jupyter,
which listens only on this host's loopback: other containers (students) cannot reach any seat but their
own, as on the course network without inter-container traffic. Routes are rewritten and reloaded in place
whenever the fleet changes; the internal CA lives in a volume, so a recreated gateway keeps its certificate.
"""
from __future__ import annotations

import hashlib
import io
import socket
import ssl
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import suppress
from pathlib import Path

from coursekit import labels
from coursekit.engine import Container, Engine
from coursekit.errors import CoursekitError
from coursekit.fleet.docker.section import DockerSettings
from coursekit.fleet.gateway import Route, caddyfile, is_address, seat_host

DOCKERFILE = """\
ARG BASE
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends caddy ca-certificates && rm -rf /var/lib/apt/lists/*
CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
"""
ADMIN = "unix//run/caddy-admin.sock"  # not a TCP port: two courses' gateways share the host's network
CADDY_DATA = "/root/.local/share/caddy"  # the internal CA and certificates


class DockerGateway:
    """Build, run, re-route and remove one course's gateway container."""

    def __init__(self, docker: Engine, slug: str, settings: DockerSettings, title: str = ""):
        self.docker, self.slug, self.settings, self.title = docker, slug, settings, title  # title: the course's name
        self.name = f"coursekit-{slug}.gateway"
        self.labels = {labels.COURSE: slug, labels.ROLE: "gateway"}

    def _origin(self, host: str) -> str:
        """https://<host>[:port], an IPv6 address in brackets."""
        port = self.settings.https_port
        return f"https://{f'[{host}]' if ':' in host else host}{'' if port == 443 else f':{port}'}"

    @property
    def url(self) -> str:
        """https://<public_host>[:port]/, the front door every link starts with."""
        return f"{self._origin(self.settings.public_host)}/"

    def seat_url(self, seat: str) -> str:
        """Where a seat is served: https://<public_host>/<seat>/, or on its own origin with subdomains."""
        host = self.settings.public_host
        return f"{self._origin(seat_host(seat, host) if self.settings.subdomains else host)}/{seat}/"

    def ca_pem(self) -> str | None:
        """The root certificate of Caddy's internal CA, which signs the gateway's certificate for an address or
        localhost (None for a DNS name, whose certificate the public CAs sign)."""
        if not is_address(self.settings.public_host):
            return None
        container = self.container()
        if container is None:
            return None
        chunks = self.docker.get_archive(container, f"{CADDY_DATA}/pki/authorities/local/root.crt",
                                         "reading the gateway's certificate authority")
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            member = tar.next()
            return tar.extractfile(member).read().decode() if member else None

    def answer(self) -> int:
        """The HTTP status the front door gives (0: none). No credential is sent, so its certificate is not checked."""
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            with urllib.request.urlopen(self.url, timeout=5, context=context) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, OSError):
            return 0

    def image(self) -> str:
        """The Caddy image for settings.gateway_base, built here once."""
        tag = f"coursekit-gateway:{hashlib.sha256((DOCKERFILE + self.settings.gateway_base).encode()).hexdigest()[:12]}"
        if self.docker.image_id(tag):
            return tag
        with tempfile.TemporaryDirectory() as context:
            Path(context, "Dockerfile").write_text(DOCKERFILE)
            try:
                self.docker.build(Path(context), tag, {"BASE": self.settings.gateway_base}, {labels.ROLE: "gateway-image"})
            except CoursekitError as exc:
                raise CoursekitError(f"building the gateway's Caddy image on {self.settings.gateway_base} failed: {exc}; "
                                     "set fleet.docker.gateway_base to a Debian image this host can pull") from None
        return tag

    def container(self) -> Container | None:
        found = self.docker.containers(labels.course_filter(self.slug, "gateway"), "looking for the gateway")
        return found[0] if found else None

    def preflight(self) -> None:
        """Refuse ports another program already serves (the course's own running gateway may hold them)."""
        current = self.container()
        if current is not None and current.status == "running":
            return
        host = "127.0.0.1" if self.settings.bind in ("0.0.0.0", "127.0.0.1", "::") else self.settings.bind
        for key in ("https_port", "http_port"):
            port = getattr(self.settings, key)
            with suppress(OSError), socket.create_connection((host, port), timeout=1):
                raise CoursekitError(f"course.yaml: fleet.docker.{key}: port {port} is already in use on this host; "
                                     "stop what serves it or choose another port")

    def config(self, routes: list[Route]) -> str:
        s = self.settings
        bind = "" if s.bind in ("0.0.0.0", "::") else s.bind
        return caddyfile(s.public_host, s.https_port, s.http_port, routes, bind=bind, admin=ADMIN, title=self.title,
                         subdomains=s.subdomains)

    def sync(self, routes: list[Route]) -> None:
        """Make the gateway serve exactly these routes: created when missing or broken, else reloaded in place."""
        text = self.config(routes)
        current = self.container()
        if current is not None and current.status != "running":
            self.docker.remove(current, "removing the stopped gateway")
            current = None
        if current is None:
            self._create(text)
            return
        self._put(current, text)
        code, output = self.docker.exec_run(current, ["caddy", "reload", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"], 60)
        if code != 0:
            raise CoursekitError(f"the gateway refused its new routes: {output.strip()[-400:]}")

    def _create(self, text: str) -> None:
        image = self.image()
        volume = self.docker.create_volume(f"{self.name}.data", self.labels, what="creating the gateway")  # found by teardown
        container = self.docker.create(
            image, "creating the gateway", name=self.name, labels=self.labels, network_mode="host",
            volumes={volume: {"bind": CADDY_DATA, "mode": "rw"}},
            restart_policy={"Name": "unless-stopped"}, cap_drop=["ALL"], cap_add=["NET_BIND_SERVICE"],
            security_opt=["no-new-privileges"],
        )
        self._put(container, text)
        self.docker.start(container, "starting the gateway")
        self._wait_listening(container)

    def _wait_listening(self, container: Container, timeout: float = 20) -> None:
        """Until Caddy accepts connections on the HTTPS port; its log when it exits instead."""
        host = "127.0.0.1" if self.settings.bind in ("0.0.0.0", "127.0.0.1") else self.settings.bind
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.docker.container(container).status in ("exited", "dead", "restarting"):
                raise CoursekitError(f"the gateway stopped:\n{self.docker.logs_tail(container)}")
            with suppress(OSError), socket.create_connection((host, self.settings.https_port), timeout=1):
                return
            time.sleep(0.2)
        raise CoursekitError(f"the gateway does not listen on {host}:{self.settings.https_port} after {timeout:g} s")

    def _put(self, container: Container, text: str) -> None:
        data = text.encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo("Caddyfile")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        self.docker.put_archive(container, "/etc/caddy", buffer.getvalue(), "writing the gateway's routes")

    def remove(self) -> None:
        """Remove the gateway and its certificate volume."""
        mine = labels.course_filter(self.slug, "gateway")
        for container in self.docker.containers(mine, "looking for the gateway"):
            self.docker.remove(container, "removing the gateway")
        for volume in self.docker.volumes(mine, "looking for the gateway's volume"):
            self.docker.remove_volume(volume.name, "removing the gateway's volume")
