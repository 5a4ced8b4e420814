"""The docker provider: one container per seat on one Docker host, found by the course's labels."""
from __future__ import annotations

import hashlib
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container

from coursekit import archive, engine, probe
from coursekit.config import Course
from coursekit.errors import CoursekitError, DockerError
from coursekit.fleet.plan import Action, Desired, Kind, Observed, Outcome, SeatStatus
from coursekit.fleet.progress import SeatProgress
from coursekit.image import COURSE_LABEL
from coursekit.seats import credential, seats, status_order

SEAT_LABEL = "org.coursekit.seat"
ROLE_LABEL = "org.coursekit.role"
SETTINGS_LABEL = "org.coursekit.settings"
PORT_LABEL = "org.coursekit.port"
HOME = "/home/jovyan"
MAX_PORT = 65535
START_GRACE = 120  # seconds a new container may take before a failing probe counts as unhealthy


class DockerHost:
    """Reconciles the course's seats on the local Docker engine."""

    def __init__(self, client: docker.DockerClient, course: Course, secret: str, ready_timeout: float = 180):
        self.client, self.course, self.secret = client, course, secret
        self.slug = course.course.slug
        self.settings = course.fleet.docker
        self.ready_timeout = ready_timeout
        self.network = f"coursekit-{self.slug}"

    # Names, labels and addresses -------------------------------------------------------------

    def container_name(self, seat: str) -> str:
        return f"coursekit-{self.slug}-{seat}"

    def volume_name(self, seat: str) -> str:
        return f"coursekit-{self.slug}-{seat}-home"

    def labels(self, seat: str | None = None, **extra: str) -> dict[str, str]:
        base = {COURSE_LABEL: self.slug, ROLE_LABEL: "seat"}
        return {**base, **({SEAT_LABEL: seat} if seat else {}), **extra}

    def _filters(self) -> dict:
        return {"label": [f"{COURSE_LABEL}={self.slug}", f"{ROLE_LABEL}=seat"]}

    def fingerprint(self) -> str:
        """What a container's settings hash to; a change means replace."""
        s = self.settings
        text = json.dumps({"cpus": s.cpus, "memory": s.memory, "bind": s.bind, "network": self.network}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def url(self, port: int) -> str:
        return f"http://{self.settings.public_host}:{port}/"

    def _probe_url(self, port: int) -> str:
        host = "127.0.0.1" if self.settings.bind in ("0.0.0.0", "127.0.0.1") else self.settings.bind
        return f"http://{host}:{port}/api/status"

    def token(self, seat: str) -> str:
        return credential(self.secret, self.slug, seat)

    # Observing ---------------------------------------------------------------------------------

    def containers(self) -> list[Container]:
        """Every seat container of this course, running or not."""
        try:
            return self.client.containers.list(all=True, filters=self._filters())
        except docker.errors.APIError as exc:
            raise DockerError(f"cannot list containers: {exc.explanation or exc}") from None

    def _observe(self, container: Container) -> Observed:
        seat = container.labels[SEAT_LABEL]
        state, detail = container.status, ""
        if state == "running":
            status, _ = probe.get(self._probe_url(int(container.labels[PORT_LABEL])), self.token(seat), timeout=3)
            started = datetime.fromisoformat(container.attrs["State"]["StartedAt"][:26].rstrip("Z") + "+00:00")
            age = (datetime.now(timezone.utc) - started).total_seconds()
            if status == 200:
                state = "running"
            elif age < START_GRACE:
                state = "starting"
            else:
                state, detail = "failed", f"Jupyter does not answer (HTTP {status or 'no answer'})"
        else:
            code = container.attrs["State"].get("ExitCode")
            state, detail = "stopped", f"container {container.status}, exit code {code}"
        return Observed(seat, container.name, container.image.id, container.labels.get(SETTINGS_LABEL, ""), state, detail)

    def observe(self) -> list[Observed]:
        """The course's seats as they are."""
        return [self._observe(c) for c in self.containers()]

    def resolve_image(self, ref: str) -> str:
        """The local image id of ref, pulled first if it is not here."""
        try:
            return self.client.images.get(ref).id
        except docker.errors.ImageNotFound:
            pass
        try:
            return engine.pull(self.client, ref)
        except DockerError as exc:
            raise CoursekitError(f"image {ref} is not here and {exc}; build it with `python -m coursekit build` or pass --image") from None

    def preflight(self) -> None:
        """Refuse settings this host cannot honour before anything is created or removed."""
        s = self.settings
        if s.bind not in ("0.0.0.0", "::"):
            family = socket.AF_INET6 if ":" in s.bind else socket.AF_INET
            with socket.socket(family) as sock:
                try:
                    sock.bind((s.bind, 0))
                except OSError as exc:
                    raise CoursekitError(
                        f"course.yaml: fleet.docker.bind: {s.bind} is not an address of this host ({exc.strerror}); "
                        "use 127.0.0.1, 0.0.0.0 or one of the addresses `ip -brief address` lists"
                    ) from None
        try:
            host_cpus = self.client.info()["NCPU"]
        except (docker.errors.DockerException, KeyError) as exc:
            raise DockerError(f"cannot read the Docker engine's resources: {exc}") from None
        if s.cpus > host_cpus:
            raise CoursekitError(
                f"course.yaml: fleet.docker.cpus: {s.cpus:g} CPUs per seat, but the Docker host has {host_cpus}; "
                f"give {host_cpus} or fewer (seats share the host's CPUs)"
            )

    def desired(self, image_id: str) -> list[Desired]:
        """The course's seats as course.yaml wants them (after checking the host can run them)."""
        self.preflight()
        return [Desired(s.id, image_id, self.fingerprint()) for s in seats(self.course)]

    # Applying ----------------------------------------------------------------------------------

    def _ensure_network(self) -> None:
        if not self.client.networks.list(names=[self.network], filters={"label": f"{COURSE_LABEL}={self.slug}"}):
            # No inter-container traffic: one student's environment cannot reach another's.
            self.client.networks.create(
                self.network, driver="bridge", labels=self.labels(), options={"com.docker.network.bridge.enable_icc": "false"}
            )

    def _volume_ports(self) -> dict[str, int]:
        """seat → the port its home volume was created with: a healed seat keeps its link."""
        volumes = self.client.volumes.list(filters={"label": f"{COURSE_LABEL}={self.slug}"})
        return {v.attrs["Labels"][SEAT_LABEL]: int(v.attrs["Labels"][PORT_LABEL]) for v in volumes
                if PORT_LABEL in (v.attrs["Labels"] or {})}

    def _allocate_ports(self, actions: list[Action]) -> dict[str, int]:
        """Every acting seat's port: its container's, else its volume's, else the lowest free one."""
        ports = self._volume_ports()
        ports.update({c.labels[SEAT_LABEL]: int(c.labels[PORT_LABEL]) for c in self.containers() if PORT_LABEL in c.labels})
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

    def _start(self, seat: str, image: str, port: int) -> None:
        volume = self.volume_name(seat)
        if not self.client.volumes.list(filters={"name": volume}):
            self.client.volumes.create(volume, labels=self.labels(seat, **{PORT_LABEL: str(port)}))
        s = self.settings
        self.client.containers.run(
            image, detach=True, name=self.container_name(seat), hostname=seat,
            environment={"JUPYTER_TOKEN": self.token(seat)},
            labels=self.labels(seat, **{SETTINGS_LABEL: self.fingerprint(), PORT_LABEL: str(port)}),
            volumes={volume: {"bind": HOME, "mode": "rw"}},
            ports={"8888/tcp": (s.bind, port)}, network=self.network,
            nano_cpus=int(s.cpus * 1e9), mem_limit=s.memory, pids_limit=2048,
            restart_policy={"Name": "unless-stopped"}, security_opt=["no-new-privileges"],
        )

    def _wait_ready(self, seat: str, port: int) -> None:
        container = self.client.containers.get(self.container_name(seat))
        probe.wait_ready(self._probe_url(port), self.token(seat), self.ready_timeout, lambda: engine.stopped_reason(container))

    def _remove_container(self, name: str) -> None:
        with suppress(docker.errors.NotFound):
            self.client.containers.get(name).remove(force=True)

    def _tar_source(self, seat: str) -> archive.TarSource:
        def stream():
            try:
                chunks, _ = self.client.containers.get(self.container_name(seat)).get_archive(HOME)
                yield from chunks
            except docker.errors.DockerException as exc:
                raise archive.ArchiveError(f"cannot read the home folder: {exc}") from None
        return stream

    def archive(self, seat: str, archive_dir: Path) -> archive.Archived:
        """Archive one seat's home and verify it."""
        return archive.archive_seat(seat, self._tar_source(seat), archive_dir, archive.course_checksums(self.course.data))

    def _apply_one(self, action: Action, image: str, port: int | None, archive_dir: Path, progress: SeatProgress) -> Outcome:
        started = time.monotonic()
        seat = action.seat
        try:
            if action.kind is Kind.REMOVE:
                if action.reason == "duplicate instance":
                    self._remove_container(action.observed.name)
                    return Outcome(seat, "remove", True, "duplicate removed", time.monotonic() - started)
                progress.update(seat, "archiving")
                done = self.archive(seat, archive_dir)
                self._remove_container(action.observed.name)
                self._remove_volume(seat)
                progress.update(seat, "removed", f"archived {done.files} files to {done.path}")
                return Outcome(seat, "remove", True, f"archived to {done.path}, then removed", time.monotonic() - started)
            if action.kind in (Kind.REPLACE, Kind.UPDATE):  # the home volume stays either way
                progress.update(seat, "updating" if action.kind is Kind.UPDATE else "replacing", action.reason)
                self._remove_container(action.observed.name)
            if action.kind in (Kind.CREATE, Kind.REPLACE, Kind.UPDATE):
                progress.update(seat, "starting", f"port {port}")
                self._start(seat, image, port)
            if action.kind is not Kind.KEEP or action.observed.state == "starting":
                self._wait_ready(seat, port)
            progress.update(seat, "ready", self.url(port))
            return Outcome(seat, action.kind.value, True, self.url(port), time.monotonic() - started)
        except (CoursekitError, docker.errors.DockerException, TimeoutError, RuntimeError) as exc:
            detail = str(getattr(exc, "explanation", None) or exc)
            progress.update(seat, "FAILED", detail.splitlines()[0][:120])
            return Outcome(seat, action.kind.value, False, detail, time.monotonic() - started)

    def _remove_volume(self, seat: str) -> None:
        with suppress(docker.errors.NotFound):
            self.client.volumes.get(self.volume_name(seat)).remove(force=True)

    def apply(self, actions: list[Action], image: str, archive_dir: Path) -> list[Outcome]:
        """Carry out the plan with bounded concurrency; one seat's failure does not stop the others."""
        ports = self._allocate_ports(actions)  # before anything is created: a port shortage leaves nothing behind
        self._ensure_network()
        with SeatProgress([a.seat for a in actions], f"deploy {self.slug}") as progress, \
                ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
            futures = [pool.submit(self._apply_one, a, image, ports.get(a.seat), archive_dir, progress) for a in actions]
            return [f.result() for f in futures]

    # Reading and removing -----------------------------------------------------------------------

    def urls(self) -> dict[str, str]:
        """seat → URL for every seat that has a container."""
        return {c.labels[SEAT_LABEL]: self.url(int(c.labels[PORT_LABEL])) for c in self.containers()}

    def status(self) -> list[SeatStatus]:
        """Per seat: state, URL, image, health and last activity."""
        found = {c.labels[SEAT_LABEL]: c for c in self.containers()}
        rows = []
        for seat in status_order(self.course, found):
            container = found.get(seat)
            if container is None:
                rows.append(SeatStatus(seat, "missing", "", "", "-", "-"))
                continue
            port = int(container.labels[PORT_LABEL])
            code, body = probe.get(self._probe_url(port), self.token(seat), timeout=3) if container.status == "running" else (0, None)
            health = "ok" if code == 200 else (f"HTTP {code}" if code else "no answer")
            image = (container.image.tags or [container.image.id[:19]])[0]
            rows.append(SeatStatus(seat, container.status, self.url(port), image, health, (body or {}).get("last_activity", "-")))
        return rows

    def teardown(self, archive_dir: Path, keep_volumes: bool) -> list[Outcome]:
        """Archive every seat, verify, then remove what the course created; seats that fail to archive stay."""
        outcomes = []
        by_seat = {c.labels[SEAT_LABEL]: c for c in self.containers()}
        volumes = self.client.volumes.list(filters={"label": f"{COURSE_LABEL}={self.slug}"})
        for seat in sorted(set(by_seat) | {v.attrs["Labels"].get(SEAT_LABEL, "") for v in volumes} - {""}):
            if seat not in by_seat:
                outcomes.append(Outcome(seat, "teardown", False, "its volume has no container to read it through; left in place"))
                continue
            try:
                done = self.archive(seat, archive_dir)
            except archive.ArchiveError as exc:
                outcomes.append(Outcome(seat, "teardown", False, f"{exc}; the seat is left running"))
                continue
            self._remove_container(by_seat[seat].name)
            if not keep_volumes:
                self._remove_volume(seat)
            outcomes.append(Outcome(seat, "teardown", True, f"archived {done.files} files ({done.size:,} bytes) to {done.path}"))
        if all(o.ok for o in outcomes):
            for network in self.client.networks.list(filters={"label": f"{COURSE_LABEL}={self.slug}"}):
                network.remove()
        return outcomes

    def leftovers(self) -> list[str]:
        """Everything still labelled with this course (for teardown's final check)."""
        label = {"label": f"{COURSE_LABEL}={self.slug}"}
        found = [f"container {c.name}" for c in self.client.containers.list(all=True, filters=label)]
        found += [f"volume {v.name}" for v in self.client.volumes.list(filters=label)]
        found += [f"network {n.name}" for n in self.client.networks.list(filters=label)]
        return found


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False
