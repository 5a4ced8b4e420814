"""Seat containers on a Docker host: created with every limit and hardening option, started, replaced safely (the old
one returns when the new one does not answer), woken, paused and removed; one port each, kept for good."""
from __future__ import annotations

import socket
from contextlib import suppress

from coursekit import labels
from coursekit.engine import Container, Engine
from coursekit.errors import CoursekitError
from coursekit.fleet.docker.doors import Ports
from coursekit.fleet.docker.homes import HOME, Homes
from coursekit.fleet.docker.section import MAX_PORT, DockerSettings
from coursekit.fleet.plan import Action
from coursekit.parallel import Stop
from coursekit.seatclient import SeatClient
from coursekit.seats import SeatTokens

TMP_SIZE = "1g"  # /tmp is memory-backed and counted in the seat's memory limit
RESTART = "unless-stopped"  # a paused seat's container has "no" instead


class Seats:
    """One course's seat containers."""

    def __init__(self, docker: Engine, slug: str, settings: DockerSettings, doors: Ports, homes: Homes, tokens: SeatTokens,
                 ready_timeout: float):
        self.docker, self.slug, self.settings, self.doors, self.homes, self.tokens = docker, slug, settings, doors, homes, tokens
        self.ready_timeout = ready_timeout
        self.network = f"coursekit-{slug}"
        self.stop = Stop()

    def name(self, seat: str) -> str:
        return f"coursekit-{self.slug}.{seat}"

    def jupyter(self, container: Container) -> SeatClient:
        """The seat's Jupyter on this host, with its token (as coursekit asks it; students come by their link)."""
        seat, port, bind = container.labels[labels.SEAT], int(container.labels[labels.PORT]), self.doors.listen_host()
        host = "127.0.0.1" if bind in ("0.0.0.0", "127.0.0.1", "::") else bind
        return SeatClient(seat, f"http://{host if ':' not in host else f'[{host}]'}:{port}{self.doors.base_url(seat)}",
                          self.tokens.token(seat))

    def status(self, container: Container) -> tuple[int, dict | None]:
        """(status, body) of the seat's /api/status, within 3 s."""
        client = self.jupyter(container)
        try:
            return client.get("/api/status", timeout=3)
        finally:
            client.close()

    def ensure_network(self) -> None:
        if not self.docker.networks(labels.course_filter(self.slug), [self.network]):
            # No inter-container traffic: one student's environment cannot reach another's.
            self.docker.create_network(self.network, {labels.COURSE: self.slug, labels.ROLE: "seat"},
                                       {"com.docker.network.bridge.enable_icc": "false"})

    def allocate_ports(self, actions: list[Action], containers: list[Container]) -> dict[str, int]:
        """Every acting seat's port: its container's, else its volume's, else the lowest free one."""
        ports = self.homes.ports()
        ports.update({c.labels[labels.SEAT]: int(c.labels[labels.PORT]) for c in containers if labels.PORT in c.labels})
        taken = set(ports.values())
        port = self.settings.port_base
        for action in actions:
            if action.seat not in ports:
                while port <= MAX_PORT and (port in taken or not _bindable(self.settings.bind, port)):
                    port += 1
                if port > MAX_PORT:
                    raise CoursekitError(
                        f"no free port left for seat {action.seat} between fleet.docker.port_base "
                        f"({self.settings.port_base}) and {MAX_PORT}; lower port_base in course.yaml or free some ports"
                    )
                ports[action.seat] = port
                taken.add(port)
        return ports

    def create(self, seat: str, image: str, port: int, name: str, fingerprint: str) -> Container:
        """A seat container, created but not started: the engine checks every setting here, before anything stops."""
        s = self.settings
        volume = self.homes.ensure(seat, port)
        return self.docker.create(
            image, f"creating the container of {seat}", name=name, hostname=seat,
            # Jupyter's runtime files in /tmp: a student who filled their home can still log in and clean up.
            environment={"JUPYTER_TOKEN": self.tokens.token(seat), "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",
                         **self.doors.environment(image, seat)},
            labels={labels.COURSE: self.slug, labels.ROLE: "seat", labels.SEAT: seat, labels.SETTINGS: fingerprint,
                    labels.PORT: str(port)},
            volumes={volume: {"bind": HOME, "mode": "rw"}},
            ports={"8888/tcp": (self.doors.listen_host(), port)}, network=self.network,
            nano_cpus=int(s.cpus * 1e9), mem_limit=s.memory, memswap_limit=s.memory, pids_limit=2048,
            restart_policy={"Name": RESTART},
            # Jupyter runs as the notebook user and needs no capability; /tmp is a capped tmpfs. The root
            # filesystem stays writable: students `pip install` into the image's environment during class.
            cap_drop=["ALL"], security_opt=["no-new-privileges"], tmpfs={"/tmp": f"size={TMP_SIZE},mode=1777"},
        )

    def wait_ready(self, container: Container) -> None:
        """Until the seat's Jupyter answers its token (TimeoutError, or RuntimeError when the container stops)."""
        self.jupyter(container).wait_ready(self.ready_timeout, lambda: self.stop.reason() or self.docker.stopped_reason(container))

    def start_new(self, seat: str, image: str, port: int, fingerprint: str) -> None:
        container = self.create(seat, image, port, self.name(seat), fingerprint)
        self.docker.start(container, f"starting the container of {seat}")
        self.wait_ready(container)

    def replace(self, seat: str, old: Container, image: str, port: int, fingerprint: str) -> None:
        """Replace old by a new container; the old one stops only once the new one exists, and comes back if the new one
        does not answer. The home volume is the same either way."""
        new = self.create(seat, image, port, f"{self.name(seat)}.next", fingerprint)
        try:
            self.docker.stop(old, f"stopping the old container of {seat}")
            self.docker.start(new, f"starting the new container of {seat}")
            self.wait_ready(new)
        except (CoursekitError, TimeoutError, RuntimeError) as exc:
            with suppress(CoursekitError):
                self.docker.remove(new, f"removing the new container of {seat}")
            with suppress(CoursekitError, TimeoutError, RuntimeError):
                self.docker.start(old, f"starting the old container of {seat} again")
                self.jupyter(old).wait_ready(self.ready_timeout, lambda: self.docker.stopped_reason(old))
            raise CoursekitError(f"the new container did not start ({exc}); the old one is back, with its home") from None
        self.docker.remove(old, f"retiring the old container of {seat}")
        self.docker.rename(new, self.name(seat))

    def wake(self, container: Container, seat: str, port: int) -> None:
        """Start a paused or stopped container again (same container, same home) and wait until it answers."""
        self.homes.ensure(seat, port)
        self.docker.set_restart(container, RESTART, f"starting the container of {seat}")
        self.docker.start(container, f"starting the container of {seat}")
        self.wait_ready(container)

    def pause(self, container: Container, seat: str) -> None:
        """Stop it, marked by the restart policy "no" so the engine never restarts it."""
        self.docker.set_restart(container, "no", f"pausing the container of {seat}")
        self.docker.stop(container, f"pausing the container of {seat}")

    def remove(self, seat: str, containers: list[Container], keep_home: bool = False) -> None:
        """Remove the seat's containers, then (unless kept) its home: only once its work is archived."""
        for container in containers:
            self.docker.remove(container, f"removing the seat {seat}")
        if not keep_home:
            self.homes.remove(seat)


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False
