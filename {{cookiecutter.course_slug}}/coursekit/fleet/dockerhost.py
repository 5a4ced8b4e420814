"""The docker provider: one container per seat on one Docker host, found by the course's labels.

Names are `coursekit-<slug>.<seat>` (container) and `coursekit-<slug>.<seat>.home` (volume): '.' occurs in
neither a slug nor a seat id, so two courses never share a name. Lookups go by exact label values, so a
fleet made by an earlier release (named `coursekit-<slug>-<seat>`) is still found, and its volume reused.
"""
from __future__ import annotations

import functools
import hashlib
import json
import socket
import tempfile
import threading
import time
from collections.abc import Iterable
from contextlib import suppress
from datetime import datetime, timezone

import docker
import docker.errors
from docker.models.containers import Container
from docker.models.volumes import Volume

from coursekit import archive, engine, labels
from coursekit.archivestore import ArchiveStore, archive_to
from coursekit.config import Course
from coursekit.errors import CoursekitError, DockerError
from coursekit.fleet import homedisk
from coursekit.fleet.dockergateway import DockerGateway
from coursekit.fleet.gateway import Route
from coursekit.fleet.plan import Action, Kind, Observed, Outcome, SeatState, SeatStatus
from coursekit.fleet.progress import SeatProgress
from coursekit.fleet.provider import Provider, spool_work
from coursekit.parallel import Interrupted, Stop, each, run_all
from coursekit.schedule import activity_text, jupyter_clocks, parse_time
from coursekit.seatclient import SeatClient
from coursekit.seats import SeatTokens
from coursekit.ui import warn
from coursekit.validate import memory_bytes

HOME = "/home/jovyan"
MAX_PORT = 65535
START_GRACE = 120  # seconds a new container may take before a failing probe counts as unhealthy
HARDENING = 3  # bump when the container options below change, so deploy replaces older seats (safely)
TMP_SIZE = "1g"  # /tmp is memory-backed and counted in the seat's memory limit
RESTART = {"Name": "unless-stopped"}  # a paused seat's container has "no" instead


class DockerProvider(Provider):
    """Reconciles the course's seats on the local Docker engine."""

    name = "docker"

    def __init__(self, client: docker.DockerClient, course: Course, tokens: SeatTokens, ready_timeout: float = 180):
        super().__init__(course, tokens)
        self.client = client
        self.settings = course.fleet.docker
        self.ready_timeout = ready_timeout
        self.network = f"coursekit-{self.slug}"
        self.stop = Stop()
        self.gateway = DockerGateway(client, self.slug, self.settings, course.course.name) if self.settings.access == "gateway" else None
        self._warned, self._warned_lock = False, threading.Lock()

    @classmethod
    def connect(cls, course: Course, tokens: SeatTokens) -> DockerProvider:
        return cls(engine.connect(), course, tokens)

    # Names, labels and addresses -------------------------------------------------------------

    def container_name(self, seat: str) -> str:
        return f"coursekit-{self.slug}.{seat}"

    def volume_name(self, seat: str) -> str:
        return f"coursekit-{self.slug}.{seat}.home"

    def labels(self, seat: str | None = None, **extra: str) -> dict[str, str]:
        base = {labels.COURSE: self.slug, labels.ROLE: "seat"}
        return {**base, **({labels.SEAT: seat} if seat else {}), **extra}

    def fingerprint(self) -> str:
        """What a container's settings hash to; a change means replace."""
        s = self.settings
        text = json.dumps({"cpus": s.cpus, "memory": s.memory, "bind": self._listen_host(), "network": self.network,
                           "hardening": HARDENING, **({"base_url": "NOTEBOOK_ARGS"} if self.gateway else {})}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def url(self, seat: str, port: int) -> str:
        """The link students open: the seat's own port, or its path behind the gateway."""
        if self.gateway:
            return self.gateway.seat_url(seat)
        host = self.settings.public_host
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"  # an IPv6 address goes in brackets

    def _listen_host(self) -> str:
        """Where a seat's port listens: behind a gateway only on loopback, else on fleet.docker.bind."""
        return "127.0.0.1" if self.gateway else self.settings.bind

    def _jupyter(self, seat: str, port: int) -> SeatClient:
        """The seat's Jupyter on this host, with its token (as coursekit asks it; students come by their link)."""
        bind = self._listen_host()
        host = "127.0.0.1" if bind in ("0.0.0.0", "127.0.0.1", "::") else bind
        return SeatClient(seat, f"http://{host if ':' not in host else f'[{host}]'}:{port}{self._base_url(seat)}", self.token(seat))

    def _status(self, seat: str, port: int) -> tuple[int, dict | None]:
        """(status, body) of the seat's /api/status, within 3 s."""
        client = self._jupyter(seat, port)
        try:
            return client.get("/api/status", timeout=3)
        finally:
            client.close()

    def _base_url(self, seat: str) -> str:
        return f"/{seat}/" if self.gateway else "/"

    # Observing ---------------------------------------------------------------------------------

    def containers(self) -> list[Container]:
        """Every seat container of this course, running or not."""
        with engine.guarded("listing the course's containers"):
            return self.client.containers.list(all=True, filters=labels.course_filter(self.slug, "seat"))

    def _seat_volumes(self) -> dict[str, Volume]:
        """seat → its home volume, found by exact labels."""
        with engine.guarded("listing the course's volumes"):
            found = self.client.volumes.list(filters=labels.course_filter(self.slug, "seat"))
        return {v.attrs["Labels"][labels.SEAT]: v for v in found if labels.SEAT in (v.attrs["Labels"] or {})}

    def _volumes(self) -> dict[str, str]:
        """seat → name of its home volume."""
        return {seat: volume.name for seat, volume in self._seat_volumes().items()}

    def _observe(self, container: Container) -> Observed:
        seat = container.labels[labels.SEAT]
        detail, clocks, paused_at = "", {}, None
        if container.status == "running":
            status, body = self._status(seat, int(container.labels[labels.PORT]))
            started = datetime.fromisoformat(container.attrs["State"]["StartedAt"][:26].rstrip("Z") + "+00:00")
            age = (datetime.now(timezone.utc) - started).total_seconds()
            if status == 200:
                state, clocks = SeatState.RUNNING, jupyter_clocks(body)
            elif age < START_GRACE:
                state = SeatState.STARTING
            else:
                state, detail = SeatState.FAILED, f"Jupyter does not answer (HTTP {status or 'no answer'})"
        elif _paused(container):
            state, detail = SeatState.PAUSED, "paused (container stopped, home kept)"
            paused_at = parse_time(container.attrs["State"].get("FinishedAt", ""))
        else:
            code = container.attrs["State"].get("ExitCode")
            state, detail = SeatState.STOPPED, f"container {container.status}, exit code {code}"
        return Observed(seat, container.name, container.image.id, container.labels.get(labels.SETTINGS, ""), state, detail,
                        paused_at=paused_at, **clocks)

    def observe(self) -> list[Observed]:
        """The course's seats as they are."""
        with engine.guarded("reading the course's containers"):
            return each(self._observe, self.containers())

    def resolve_image(self, ref: str) -> str:
        """The local image id of ref, pulled first if it is not here."""
        try:
            return self.client.images.get(ref).id
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.DockerException as exc:
            raise DockerError(f"cannot look up image {ref}: {exc}") from None
        try:
            return engine.pull(self.client, ref)
        except DockerError as exc:
            raise CoursekitError(f"image {ref} is not here and {exc}; build it with `python -m coursekit build` or pass --image") from None

    def preflight(self) -> None:
        """Refuse settings this host cannot honour before anything is created or removed."""
        s = self.settings
        if s.bind not in ("0.0.0.0", "::"):
            with socket.socket(socket.AF_INET6 if ":" in s.bind else socket.AF_INET) as sock:
                try:
                    sock.bind((s.bind, 0))
                except OSError as exc:
                    raise CoursekitError(
                        f"course.yaml: fleet.docker.bind: {s.bind} is not an address of this host ({exc.strerror}); "
                        "use 127.0.0.1, 0.0.0.0 or one of the addresses `ip -brief address` lists"
                    ) from None
        if self.gateway:
            self.gateway.preflight()
        with engine.guarded("reading the Docker engine's resources"):
            host_cpus = self.client.info()["NCPU"]
        if s.cpus > host_cpus:
            raise CoursekitError(
                f"course.yaml: fleet.docker.cpus: {s.cpus:g} CPUs per seat, but the Docker host has {host_cpus}; "
                f"give {host_cpus} or fewer (seats share the host's CPUs)"
            )

    # Applying ----------------------------------------------------------------------------------

    def _ensure_network(self) -> None:
        with engine.guarded(f"creating network {self.network}"):
            if not self.client.networks.list(names=[self.network], filters=labels.course_filter(self.slug)):
                # No inter-container traffic: one student's environment cannot reach another's.
                self.client.networks.create(
                    self.network, driver="bridge", labels=self.labels(),
                    options={"com.docker.network.bridge.enable_icc": "false"},
                )

    def _volume_ports(self) -> dict[str, int]:
        """seat → the port its home volume was created with: a healed seat keeps its link."""
        with engine.guarded("listing the course's volumes"):
            volumes = self.client.volumes.list(filters=labels.course_filter(self.slug))
        return {v.attrs["Labels"][labels.SEAT]: int(v.attrs["Labels"][labels.PORT]) for v in volumes
                if labels.PORT in (v.attrs["Labels"] or {}) and labels.SEAT in v.attrs["Labels"]}

    def _allocate_ports(self, actions: list[Action]) -> dict[str, int]:
        """Every acting seat's port: its container's, else its volume's, else the lowest free one."""
        ports = self._volume_ports()
        ports.update({c.labels[labels.SEAT]: int(c.labels[labels.PORT]) for c in self.containers() if labels.PORT in c.labels})
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

    def _home_volume(self, seat: str, port: int) -> str:
        """The seat's home volume (found by its labels, its disk attached), created when it has none."""
        existing = self._volumes().get(seat)
        if existing:
            self._attach_home(existing)
            return existing
        name, volume_labels = self.volume_name(seat), self.labels(seat, **{labels.PORT: str(port)})
        disk = self.settings.disk
        if disk is None or self._unbounded_warning(disk):
            with engine.guarded(f"creating the home volume of {seat}"):
                return self.client.volumes.create(name, labels=volume_labels).name
        homedisk.create(name, memory_bytes(disk))
        try:
            with engine.guarded(f"creating the home volume of {seat}"):
                self.client.volumes.create(name, driver_opts=homedisk.driver_opts(name), labels={**volume_labels, labels.DISK: disk})
        except CoursekitError:
            homedisk.release(name)  # new and empty: nothing of a student's is in it
            raise
        homedisk.attach(name)
        return name

    @functools.cached_property
    def _unbounded_why(self) -> str | None:
        """Why homes cannot be bounded from this process (None: they can); the same for its whole run."""
        return homedisk.unavailable(self.client.api.base_url)

    def _unbounded_warning(self, disk: str) -> bool:
        """True (after one warning) when this host cannot bound homes to fleet.docker.disk."""
        why = self._unbounded_why
        with self._warned_lock:
            if why and not self._warned:
                self._warned = True
                warn(f"new homes are not bounded to fleet.docker.disk ({disk}): {why}. "
                     "Set fleet.docker.disk: null in course.yaml to accept unbounded homes")
        return why is not None

    def _bounded(self, volume: str) -> bool:
        """True when the volume is a bounded home (a disk file of its own)."""
        with engine.guarded(f"reading volume {volume}"):
            return homedisk.bounded(self.client.volumes.get(volume).attrs.get("Options"))

    def _attach_home(self, volume: str) -> None:
        """Attach a bounded home's disk file, which its seat (or the archive helper) needs to mount it."""
        if self._bounded(volume):
            if why := self._unbounded_why:
                raise CoursekitError(f"its home {volume} is a bounded disk file, and {why}")
            homedisk.attach(volume)

    def _create(self, seat: str, image: str, port: int, name: str) -> Container:
        """A seat container, created but not started: the engine checks every setting here, before anything stops."""
        s = self.settings
        volume = self._home_volume(seat, port)
        with engine.guarded(f"creating the container of {seat}"):
            return self.client.containers.create(
                image, name=name, hostname=seat,
                # Jupyter's runtime files in /tmp: a student who filled their home can still log in and clean up.
                environment={"JUPYTER_TOKEN": self.token(seat), "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",
                             **self._base_url_setting(image, seat)},
                labels=self.labels(seat, **{labels.SETTINGS: self.fingerprint(), labels.PORT: str(port)}),
                volumes={volume: {"bind": HOME, "mode": "rw"}},
                ports={"8888/tcp": (self._listen_host(), port)}, network=self.network,
                nano_cpus=int(s.cpus * 1e9), mem_limit=s.memory, memswap_limit=s.memory, pids_limit=2048,
                restart_policy=RESTART,
                # Jupyter runs as the notebook user and needs no capability; /tmp is a capped tmpfs. The root
                # filesystem stays writable: students `pip install` into the image's environment during class.
                cap_drop=["ALL"], security_opt=["no-new-privileges"], tmpfs={"/tmp": f"size={TMP_SIZE},mode=1777"},
            )

    def _base_url_setting(self, image: str, seat: str) -> dict[str, str]:
        """Behind the gateway Jupyter serves under /<seat>/, the path students' links carry: passed as docker-stacks
        documents, in NOTEBOOK_ARGS after the image's own, so the image's own command starts it."""
        if not self.gateway:
            return {}
        return {"NOTEBOOK_ARGS": notebook_args(engine.image_env(self.client, image), self._base_url(seat))}

    def _wait_ready(self, container: Container, seat: str, port: int) -> None:
        def gone() -> str | None:
            return self.stop.reason() or engine.stopped_reason(container)
        self._jupyter(seat, port).wait_ready(self.ready_timeout, gone)

    def _wake(self, container: Container, seat: str, port: int) -> None:
        """Start a paused or stopped container again (same container, same home) and wait until it answers."""
        self._home_volume(seat, port)
        with engine.guarded(f"starting the container of {seat}"):
            container.update(restart_policy=RESTART)
            container.start()
        self._wait_ready(container, seat, port)

    def pause(self, observed: list[Observed], now: datetime) -> list[Outcome]:
        """Stop each seat's container; its home volume, port and link stay. Marked by its restart policy "no"
        (so the engine never restarts it), which tells a paused seat from one that crashed or was stopped by hand.
        The engine records when it stopped (State.FinishedAt): that is the pause time the schedule reads."""
        def one(seat: Observed) -> Outcome:
            started = time.monotonic()
            try:
                self.stop.check()
                container = self._container(seat.instance_id)
                with engine.guarded(f"pausing the container of {seat.seat}"):
                    container.update(restart_policy={"Name": "no"})
                    container.stop(timeout=10)
                return Outcome(seat.seat, "pause", True, "container stopped; its home stays", time.monotonic() - started)
            except (CoursekitError, Interrupted) as exc:
                return Outcome(seat.seat, "pause", False, str(exc), time.monotonic() - started)
        return run_all(one, observed, self.settings.concurrency, self.stop) + self._sync_gateway()

    def _start_new(self, seat: str, image: str, port: int) -> None:
        container = self._create(seat, image, port, self.container_name(seat))
        with engine.guarded(f"starting the container of {seat}"):
            container.start()
        self._wait_ready(container, seat, port)

    def _swap(self, seat: str, old: Container, image: str, port: int) -> None:
        """Replace old by a new container; the old one stops only once the new one exists, and comes back if
        the new one does not answer. The home volume is the same either way."""
        new = self._create(seat, image, port, f"{self.container_name(seat)}.next")
        try:
            with engine.guarded(f"stopping the old container of {seat}"):
                old.stop(timeout=10)
            with engine.guarded(f"starting the new container of {seat}"):
                new.start()
            self._wait_ready(new, seat, port)
        except (CoursekitError, TimeoutError, RuntimeError) as exc:
            with suppress(docker.errors.DockerException):
                new.remove(force=True)
            with suppress(docker.errors.DockerException, TimeoutError, RuntimeError):
                old.start()
                self._jupyter(seat, port).wait_ready(self.ready_timeout, lambda: engine.stopped_reason(old))
            raise CoursekitError(f"the new container did not start ({exc}); the old one is back, with its home") from None
        with engine.guarded(f"retiring the old container of {seat}"):
            old.remove(force=True)
            new.rename(self.container_name(seat))

    def _tar_source(self, seat: str) -> archive.TarSource:
        volume = self._volumes().get(seat)
        if volume is None:
            raise archive.ArchiveError("it has no home volume")
        self._attach_home(volume)
        helper_labels = {labels.COURSE: self.slug, labels.ROLE: "archive-helper", labels.SEAT: seat}
        return lambda: engine.volume_tar(self.client, volume, HOME, helper_labels)

    def archive(self, seat: str, store: ArchiveStore) -> archive.Archived:
        """Archive one seat's home from its volume (the container need not exist) and verify it."""
        return archive_to(store, seat, self._tar_source(seat), archive.course_checksums(self.course.data))

    def reset(self, seat: str, store: ArchiveStore, name: str) -> Outcome:
        """Stop the seat (its home holds still), archive and verify it as `name`, then start it again from its image
        with a new home, on the same port: the same link and credential. A failed archive starts the seat as it was."""
        started = time.monotonic()
        found = [c for c in self.containers() if c.labels[labels.SEAT] == seat]
        if not found:
            raise CoursekitError(f"seat {seat} has no container on this host: nothing to reset (is it deployed?)")
        container = found[0]
        port, image = int(container.labels[labels.PORT]), container.attrs["Config"]["Image"]
        with engine.guarded(f"stopping {seat} to archive its home"):
            container.stop(timeout=10)
        try:
            done = archive_to(store, name, self._tar_source(seat), archive.course_checksums(self.course.data))
        except CoursekitError:
            with engine.guarded(f"starting {seat} again"):
                container.start()
            raise
        self._remove_seat(seat, found)
        self._ensure_network()
        self._start_new(seat, image, port)
        self._sync_gateway()
        return Outcome(seat, "reset", True, f"archived {done.files} files ({done.size:,} bytes) to {done.path}; "
                                            f"a fresh home at {self.url(seat, port)}", time.monotonic() - started)

    def move_home(self, seat: str, spare: str, store: ArchiveStore) -> str:
        """Copy the student's work onto the spare's home (their files win; the spare's own stay beside them): from
        the seat's volume, else from its newest archive, else nothing. Then stop the old seat; returns where the
        work came from."""
        volumes, listed = self._volumes(), self.containers()
        spare_container = next((c for c in listed if c.labels[labels.SEAT] == spare), None)
        if spare not in volumes or spare_container is None:
            raise CoursekitError(f"{spare} is not deployed on this host: deploy first, then swap onto it")
        helper = {labels.COURSE: self.slug, labels.ROLE: "archive-helper", labels.SEAT: spare}
        self._attach_home(volumes[spare])
        for container in [c for c in listed if c.labels[labels.SEAT] == seat]:
            with engine.guarded(f"stopping {seat}"):
                container.stop(timeout=10)  # its home holds still while it is copied; the seat stays, paused

        def read() -> Iterable[bytes]:
            self._attach_home(volumes[seat])
            return engine.volume_tar(self.client, volumes[seat], HOME, helper)

        with tempfile.SpooledTemporaryFile(64 << 20) as spooled:  # all of it, before the spare is touched
            copied, source = spool_work(seat, store, spooled, HOME.rsplit("/", 1)[1],  # what the engine unpacks into /home
                                        (f"{seat}'s home", read) if seat in volumes else None)
            if copied:
                spooled.seek(0)
                engine.volume_put(self.client, volumes[spare], HOME, spooled, helper)
        with engine.guarded(f"restarting {spare}"):
            spare_container.restart(timeout=10)  # Jupyter sees the copied home as it starts
        self._wait_ready(spare_container, spare, int(spare_container.labels[labels.PORT]))
        return source

    def _remove_seat(self, seat: str, containers: list[Container], keep_volume: bool = False) -> None:
        with engine.guarded(f"removing the seat {seat}"):
            for container in containers:
                with suppress(docker.errors.NotFound):
                    container.remove(force=True)
            volume = None if keep_volume else self._volumes().get(seat)
        bounded = bool(volume) and self._bounded(volume)
        if volume:
            with engine.guarded(f"removing the home volume of {seat}"), suppress(docker.errors.NotFound):
                self.client.volumes.get(volume).remove(force=True)
        if bounded:
            homedisk.release(volume)  # its disk file: the volume, and so the (archived) home, is gone

    def _container(self, name: str) -> Container:
        with engine.guarded(f"reading container {name}"):
            return self.client.containers.get(name)

    def _apply_one(self, action: Action, image: str, port: int | None, store: ArchiveStore, progress: SeatProgress) -> Outcome:
        started = time.monotonic()
        seat = action.seat
        try:
            self.stop.check()
            if action.kind is Kind.BLOCKED:
                return Outcome(seat, "blocked", False, action.reason)
            if action.kind is Kind.REMOVE:
                if action.duplicate:
                    self._remove_seat(seat, [self._container(action.observed.instance_id)], keep_volume=True)
                    return Outcome(seat, "remove", True, "duplicate removed", time.monotonic() - started)
                progress.update(seat, "archiving")
                done = self.archive(seat, store)
                self._remove_seat(seat, [self._container(action.observed.instance_id)])
                progress.update(seat, "removed", f"archived {done.files} files to {done.path}")
                return Outcome(seat, "remove", True, f"archived to {done.path}, then removed", time.monotonic() - started)
            if action.kind in (Kind.REPLACE, Kind.UPDATE):  # the home volume stays either way
                progress.update(seat, "updating" if action.kind is Kind.UPDATE else "replacing", action.reason)
                self._swap(seat, self._container(action.observed.instance_id), image, port)
            elif action.kind is Kind.WAKE:
                progress.update(seat, "waking", action.reason)
                self._wake(self._container(action.observed.instance_id), seat, port)
            elif action.kind is Kind.CREATE:
                progress.update(seat, "starting", f"port {port}")
                self._start_new(seat, image, port)
            elif action.observed.state is SeatState.STARTING:
                self._wait_ready(self._container(action.observed.instance_id), seat, port)
            progress.update(seat, "ready", self.url(seat, port))
            return Outcome(seat, action.kind.value, True, self.url(seat, port), time.monotonic() - started)
        except (CoursekitError, Interrupted, TimeoutError, RuntimeError) as exc:
            detail = str(exc)
            progress.update(seat, "FAILED", detail.splitlines()[0][:120])
            return Outcome(seat, action.kind.value, False, detail, time.monotonic() - started)

    def apply(self, actions: list[Action], image: str, store: ArchiveStore) -> list[Outcome]:
        """Carry out the plan with bounded concurrency; one seat's failure does not stop the others."""
        ports = self._allocate_ports(actions)  # before anything is created: a port shortage leaves nothing behind
        self._ensure_network()
        with SeatProgress([a.seat for a in actions], f"deploy {self.slug}") as progress:
            outcomes = run_all(lambda a: self._apply_one(a, image, ports.get(a.seat), store, progress),
                               actions, self.settings.concurrency, self.stop)
        return outcomes + self._sync_gateway()

    # The gateway -----------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        """One route per seat container: its loopback port, or its paused page."""
        from coursekit.schedule import now_utc, schedule_of

        until = schedule_of(self.course).wakes_at(now_utc())
        return [Route(c.labels[labels.SEAT], paused_until=until) if _paused(c)
                else Route(c.labels[labels.SEAT], f"127.0.0.1:{c.labels[labels.PORT]}")
                for c in sorted(self.containers(), key=lambda c: c.labels[labels.SEAT])]

    def _sync_gateway(self) -> list[Outcome]:
        """Routes follow the fleet; a gateway failure is reported as its own outcome."""
        if self.gateway is None:
            return []
        started = time.monotonic()
        try:
            self.gateway.sync(self.routes())
        except CoursekitError as exc:
            return [Outcome("gateway", "routes", False, str(exc), time.monotonic() - started)]
        return [Outcome("gateway", "routes", True, self.gateway.seat_url("<seat>"), time.monotonic() - started)]

    def extra_status_rows(self) -> list[SeatStatus]:
        """The gateway's own row, when there is one."""
        if self.gateway is None:
            return []
        container = self.gateway.container()
        if container is None:
            return [SeatStatus("gateway", "missing", "", "", "-", "-")]
        code = self.gateway.answer() if container.status == "running" else 0
        health = "ok" if code == 200 else (f"HTTP {code}" if code else "no answer")  # its own front page at /
        return [SeatStatus("gateway", container.status, self.gateway.url, (container.image.tags or ["?"])[0], health, "-")]

    # Reading and removing -----------------------------------------------------------------------

    def urls(self) -> dict[str, str]:
        """seat → URL for every seat that has a container."""
        return {c.labels[labels.SEAT]: self.url(c.labels[labels.SEAT], int(c.labels[labels.PORT])) for c in self.containers()}

    def student_clients(self) -> dict[str, SeatClient]:
        """seat → a client through the door its student uses (the gateway's certificate checked against its CA)."""
        ca = self.gateway.ca_pem() if self.gateway else None
        return {c.labels[labels.SEAT]: SeatClient(c.labels[labels.SEAT], self.url(c.labels[labels.SEAT], int(c.labels[labels.PORT])),
                                                  self.token(c.labels[labels.SEAT]), ca_pem=ca)
                for c in sorted(self.containers(), key=lambda c: c.labels[labels.SEAT])}

    def _home_usage(self, volumes: Iterable[Volume]) -> dict[str, str]:
        """volume name → what its home holds, and of how much when bounded (the engine's own accounting, or
        the home's own filesystem)."""
        try:
            counted = {v["Name"]: v.get("UsageData", {}).get("Size", -1) for v in self.client.df().get("Volumes") or []}
        except docker.errors.DockerException:
            counted = {}
        usage = {}
        for volume in volumes:
            limit = (volume.attrs.get("Labels") or {}).get(labels.DISK)
            used = counted.get(volume.name, -1)
            if homedisk.bounded(volume.attrs.get("Options")) and self._unbounded_why is None:
                used = homedisk.used_bytes(volume.name, volume.attrs["Mountpoint"])
            usage[volume.name] = (f"{used / 2**20:,.1f} MiB" if used is not None and used >= 0 else "-") + (f" of {limit}" if limit else "")
        return usage

    def instances_by_seat(self) -> dict[str, tuple[Container | None, str | None, str]]:
        """seat → (its container, its home volume, what the home holds), for every seat with either."""
        found = {c.labels[labels.SEAT]: c for c in self.containers()}
        volumes = self._seat_volumes()
        names, usage = {seat: v.name for seat, v in volumes.items()}, self._home_usage(volumes.values())
        return {seat: (found.get(seat), names.get(seat), usage.get(names.get(seat, ""), "-"))
                for seat in set(found) | set(names)}

    def status_row(self, seat: str, instance: tuple[Container | None, str | None, str] | None) -> SeatStatus:
        """State, URL, image, health, last activity and home usage of one seat."""
        container, volume, home = instance or (None, None, "-")
        if container is None:
            return SeatStatus(seat, "home only" if volume else "missing", "", "", "-", "-", home)
        port = int(container.labels[labels.PORT])
        code, body = self._status(seat, port) if container.status == "running" else (0, None)
        health = "ok" if code == 200 else (f"HTTP {code}" if code else "no answer")
        image = (container.image.tags or [container.image.id[:19]])[0]
        state = "paused" if _paused(container) else container.status
        return SeatStatus(seat, state, self.url(seat, port), image, health, activity_text(body) if code == 200 else "-", home)

    def teardown_units(self) -> list[tuple[str, list[Container]]]:
        """Every seat with a container or a home volume, with its containers."""
        by_seat: dict[str, list[Container]] = {}
        for container in self.containers():
            by_seat.setdefault(container.labels[labels.SEAT], []).append(container)
        return [(seat, by_seat.get(seat, [])) for seat in sorted(set(by_seat) | set(self._volumes()))]

    def archive_and_remove(self, seat: str, unit: list[Container], store: ArchiveStore, keep_volumes: bool) -> archive.Archived:
        done = self.archive(seat, store)
        self._remove_seat(seat, unit, keep_volume=keep_volumes)
        return done

    def after_teardown(self, everything_removed: bool) -> None:
        with engine.guarded("removing archive helpers an interrupted run left"):
            for helper in self.client.containers.list(all=True, filters=labels.course_filter(self.slug, "archive-helper")):
                helper.remove(force=True)  # never started, no network: they hold nothing
        if self.gateway and everything_removed:
            self.gateway.remove()
        elif self.gateway:
            self._sync_gateway()
        if everything_removed:
            with engine.guarded("removing the course's network"):
                for network in self.client.networks.list(filters=labels.course_filter(self.slug)):
                    network.remove()

    def leftovers(self, keep_volumes: bool = False) -> list[str]:
        """Everything still labelled with this course (for teardown's final check); with keep_volumes, homes
        (volumes and their disk files) are what was asked to stay."""
        label = labels.course_filter(self.slug)
        with engine.guarded("listing what the course left"):
            found = [f"container {c.name}" for c in self.client.containers.list(all=True, filters=label)]
            if not keep_volumes:
                found += [f"volume {v.name}" for v in self.client.volumes.list(filters=label)]
            found += [f"network {n.name}" for n in self.client.networks.list(filters=label)]
        if keep_volumes:
            return found
        return found + [f"disk file {path}" for path in homedisk.leftovers(f"coursekit-{self.slug}.")]


def notebook_args(image_env: dict[str, str], base_url: str) -> str:
    """NOTEBOOK_ARGS for a seat served under base_url: the image's own arguments, then the base URL (pure)."""
    return " ".join(part for part in (image_env.get("NOTEBOOK_ARGS", "").strip(), f"--ServerApp.base_url={base_url}") if part)


def _paused(container: Container) -> bool:
    """Stopped by `coursekit pause` (restart policy "no"), not crashed or stopped by hand."""
    return container.status == "exited" and container.attrs["HostConfig"].get("RestartPolicy", {}).get("Name") == "no"


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False
