"""How students reach a seat on a Docker host, chosen once per command from fleet.docker.access: each seat's own port
(`ports`), or the course's one Caddy gateway (`gateway`), which serves every seat under /<seat>/ from ports on this
host's loopback. A door owns where seats listen, their links, what Jupyter must be told, the gateway's routes and
status row, and its part of teardown; the provider never asks which door it has."""
from __future__ import annotations

import time

from coursekit import labels
from coursekit.config import Course
from coursekit.engine import Container, Engine
from coursekit.errors import CoursekitError
from coursekit.fleet.docker.gateway import DockerGateway
from coursekit.fleet.gateway import Route
from coursekit.fleet.plan import Outcome, SeatStatus
from coursekit.schedule import now_utc, schedule_of


class Ports:
    """Each seat on its own port of fleet.docker.bind, its link on fleet.docker.public_host (the door a Gateway
    changes where it must)."""

    def __init__(self, docker: Engine, course: Course):
        self.docker, self.course = docker, course
        self.slug, self.settings = course.course.slug, course.fleet.docker

    def listen_host(self) -> str:
        """Where a seat's port listens."""
        return self.settings.bind

    def url(self, seat: str, port: int) -> str:
        """The link students open."""
        host = self.settings.public_host
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"  # an IPv6 address goes in brackets

    def base_url(self, seat: str) -> str:
        """The path Jupyter serves under."""
        return "/"

    def fingerprint(self) -> dict:
        """What the door adds to a seat's settings hash."""
        return {}

    def environment(self, image: str, seat: str) -> dict[str, str]:
        """What the seat's Jupyter must be told to serve behind this door."""
        return {}

    def ca_pem(self) -> str | None:
        """The certificate authority a student's browser trusts for this door (None: the public ones, or no TLS)."""
        return None

    def preflight(self) -> None:
        """Refuse, before anything changes, what this door cannot have."""
        return None

    def sync(self) -> list[Outcome]:
        """Bring what serves the seats in line with their containers (one outcome of its own, or none)."""
        return []

    def status_rows(self) -> list[SeatStatus]:
        return []

    def close(self, everything_removed: bool) -> None:
        """Teardown's part of the door."""
        return None


def paused(container: Container) -> bool:
    """Stopped by `coursekit pause` (restart policy "no"), not crashed or stopped by hand."""
    return container.status == "exited" and container.restart_policy == "no"


class Gateway(Ports):
    """Every seat at https://<public_host>/<seat>/ through one Caddy container; seats listen on loopback only."""

    def __init__(self, docker: Engine, course: Course):
        super().__init__(docker, course)
        self.gateway = DockerGateway(docker, self.slug, self.settings, course.course.name)

    def listen_host(self) -> str:
        return "127.0.0.1"

    def url(self, seat: str, port: int) -> str:
        return self.gateway.seat_url(seat)

    def base_url(self, seat: str) -> str:
        return f"/{seat}/"

    def fingerprint(self) -> dict:
        return {"base_url": "NOTEBOOK_ARGS"}

    def environment(self, image: str, seat: str) -> dict[str, str]:
        """Jupyter serves under /<seat>/, the path students' links carry: passed as docker-stacks documents, in
        NOTEBOOK_ARGS after the image's own, so the image's own command starts it."""
        return {"NOTEBOOK_ARGS": notebook_args(self.docker.image_env(image), self.base_url(seat))}

    def ca_pem(self) -> str | None:
        return self.gateway.ca_pem()

    def preflight(self) -> None:
        self.gateway.preflight()

    def routes(self) -> list[Route]:
        """One route per seat container: its loopback port, or its paused page (until the schedule wakes it)."""
        containers = self.docker.containers(labels.course_filter(self.slug, "seat"), "listing the course's containers")
        wakes_at = schedule_of(self.course).wakes_at(now_utc())
        return [Route(c.labels[labels.SEAT], paused_until=wakes_at) if paused(c)
                else Route(c.labels[labels.SEAT], f"127.0.0.1:{c.labels[labels.PORT]}")
                for c in sorted(containers, key=lambda c: c.labels[labels.SEAT])]

    def sync(self) -> list[Outcome]:
        """Routes follow the fleet; a gateway failure is reported as its own outcome."""
        started = time.monotonic()
        try:
            self.gateway.sync(self.routes())
        except CoursekitError as exc:
            return [Outcome("gateway", "routes", False, str(exc), time.monotonic() - started)]
        return [Outcome("gateway", "routes", True, self.gateway.seat_url("<seat>"), time.monotonic() - started)]

    def status_rows(self) -> list[SeatStatus]:
        container = self.gateway.container()
        if container is None:
            return [SeatStatus("gateway", "missing", "", "", "-", "-")]
        code = self.gateway.answer() if container.status == "running" else 0
        health = "ok" if code == 200 else (f"HTTP {code}" if code else "no answer")  # its own front page at /
        return [SeatStatus("gateway", container.status, self.gateway.url, self.docker.image_name(container.image_id), health, "-")]

    def close(self, everything_removed: bool) -> None:
        if everything_removed:
            self.gateway.remove()
        else:
            self.sync()


def notebook_args(image_env: dict[str, str], base_url: str) -> str:
    """NOTEBOOK_ARGS for a seat served under base_url: the image's own arguments, then the base URL (pure)."""
    return " ".join(part for part in (image_env.get("NOTEBOOK_ARGS", "").strip(), f"--ServerApp.base_url={base_url}") if part)


DOORS: dict[str, type[Ports]] = {"ports": Ports, "gateway": Gateway}  # fleet.docker.access → its door
