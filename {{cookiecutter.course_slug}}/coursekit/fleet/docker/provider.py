"""The docker provider: one container per seat on one Docker host, found by the course's labels.

Names are `coursekit-<slug>.<seat>` (container) and `coursekit-<slug>.<seat>.home` (volume): '.' occurs in
neither a slug nor a seat id, so two courses never share a name. Lookups go by exact label values, so a
fleet made by an earlier release (named `coursekit-<slug>-<seat>`) is still found, and its volume reused.
Every engine call goes through coursekit.engine.Engine; how students reach a seat is the door's (doors.py), and
the home volumes are homes.py's.
"""
from __future__ import annotations

import hashlib
import json
import socket
import tempfile
import time
from datetime import datetime, timezone

from coursekit import archive, labels
from coursekit.archivestore import ArchiveStore, archive_to
from coursekit.config import Course
from coursekit.engine import Container, Engine
from coursekit.errors import CoursekitError
from coursekit.fleet.docker.doors import DOORS, paused
from coursekit.fleet.docker.homes import HOME, Homes
from coursekit.fleet.docker.seats import Seats
from coursekit.fleet.plan import Action, Kind, Observed, Outcome, SeatState, SeatStatus
from coursekit.fleet.progress import SeatProgress
from coursekit.fleet.provider import Provider, spool_work
from coursekit.parallel import Interrupted, each, run_all
from coursekit.schedule import activity_text, jupyter_clocks, parse_time, seat_clock
from coursekit.seatclient import SeatClient
from coursekit.seats import SeatTokens

START_GRACE = 120  # seconds a new container may take before a failing probe counts as unhealthy
HARDENING = 3  # bump when the container options (seats.py) change, so deploy replaces older seats (safely)


class DockerProvider(Provider):
    """Reconciles the course's seats on one Docker engine."""

    name = "docker"

    def __init__(self, docker: Engine, course: Course, tokens: SeatTokens, ready_timeout: float = 180):
        super().__init__(course, tokens)
        self.docker, self.settings = docker, course.fleet.docker
        self.doors = DOORS[self.settings.access](docker, course)
        self.homes = Homes(docker, self.slug, self.settings)
        self.seats = Seats(docker, self.slug, self.settings, self.doors, self.homes, tokens, ready_timeout)
        self.stop = self.seats.stop

    @classmethod
    def connect(cls, course: Course, tokens: SeatTokens) -> DockerProvider:
        return cls(Engine.connect(), course, tokens)

    def fingerprint(self) -> str:
        """What a container's settings hash to; a change means replace."""
        s = self.settings
        text = json.dumps({"cpus": s.cpus, "memory": s.memory, "bind": self.doors.listen_host(), "network": self.seats.network,
                           "hardening": HARDENING, **self.doors.fingerprint()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def url(self, container: Container) -> str:
        return self.doors.url(container.labels[labels.SEAT], int(container.labels[labels.PORT]))

    def containers(self) -> list[Container]:
        """Every seat container of this course, running or not."""
        return self.docker.containers(labels.course_filter(self.slug, "seat"), "listing the course's containers")

    def _of(self, seat: str) -> list[Container]:
        return [c for c in self.containers() if c.labels[labels.SEAT] == seat]

    # Observing ---------------------------------------------------------------------------------

    def _observe(self, container: Container) -> Observed:
        seat = container.labels[labels.SEAT]
        detail, clocks, paused_at = "", {}, None
        if container.status == "running":
            status, body = self.seats.status(container)
            started = datetime.fromisoformat(container.started_at[:26].rstrip("Z") + "+00:00")
            if status == 200:
                state, clocks = SeatState.RUNNING, jupyter_clocks(body)
            elif (datetime.now(timezone.utc) - started).total_seconds() < START_GRACE:
                state = SeatState.STARTING
            else:
                state, detail = SeatState.FAILED, f"Jupyter does not answer (HTTP {status or 'no answer'})"
        elif paused(container):
            state, detail, paused_at = SeatState.PAUSED, "paused (container stopped, home kept)", parse_time(container.finished_at)
        else:
            state, detail = SeatState.STOPPED, f"container {container.status}, exit code {container.exit_code}"
        return Observed(seat, container.name, container.image_id, container.labels.get(labels.SETTINGS, ""), state, detail,
                        paused_at=paused_at, **clocks)

    def observe(self) -> list[Observed]:
        """The course's seats as they are."""
        return each(self._observe, self.containers())

    def resolve_image(self, ref: str) -> str:
        """The local image id of ref, pulled first if it is not here."""
        if found := self.docker.image_id(ref):
            return found
        try:
            return self.docker.pull(ref)
        except CoursekitError as exc:
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
        self.doors.preflight()
        host_cpus = self.docker.info()["NCPU"]
        if s.cpus > host_cpus:
            raise CoursekitError(
                f"course.yaml: fleet.docker.cpus: {s.cpus:g} CPUs per seat, but the Docker host has {host_cpus}; "
                f"give {host_cpus} or fewer (seats share the host's CPUs)"
            )

    # Applying ----------------------------------------------------------------------------------

    def _apply_one(self, action: Action, image: str, port: int | None, store: ArchiveStore, progress: SeatProgress) -> Outcome:
        started = time.monotonic()
        seat, observed = action.seat, action.observed
        try:
            self.stop.check()
            if action.kind is Kind.BLOCKED:
                return Outcome(seat, "blocked", False, action.reason)
            if action.kind is Kind.REMOVE:
                if action.duplicate:
                    self.seats.remove(seat, [self.docker.container(observed.instance_id)], keep_home=True)
                    return Outcome(seat, "remove", True, "duplicate removed", time.monotonic() - started)
                progress.update(seat, "archiving")
                done = self.archive(seat, store)
                self.seats.remove(seat, [self.docker.container(observed.instance_id)])
                progress.update(seat, "removed", f"archived {done.files} files to {done.path}")
                return Outcome(seat, "remove", True, f"archived to {done.path}, then removed", time.monotonic() - started)
            if action.kind in (Kind.REPLACE, Kind.UPDATE):  # the home volume stays either way
                progress.update(seat, "updating" if action.kind is Kind.UPDATE else "replacing", action.reason)
                self.seats.replace(seat, self.docker.container(observed.instance_id), image, port, self.fingerprint())
            elif action.kind is Kind.WAKE:
                progress.update(seat, "waking", action.reason)
                self.seats.wake(self.docker.container(observed.instance_id), seat, port)
            elif action.kind is Kind.CREATE:
                progress.update(seat, "starting", f"port {port}")
                self.seats.start_new(seat, image, port, self.fingerprint())
            elif observed.state is SeatState.STARTING:
                self.seats.wait_ready(self.docker.container(observed.instance_id))
            progress.update(seat, "ready", self.doors.url(seat, port))
            return Outcome(seat, action.kind.value, True, self.doors.url(seat, port), time.monotonic() - started)
        except (CoursekitError, Interrupted, TimeoutError, RuntimeError) as exc:
            progress.update(seat, "FAILED", str(exc).splitlines()[0][:120])
            return Outcome(seat, action.kind.value, False, str(exc), time.monotonic() - started)

    def apply(self, actions: list[Action], image: str, store: ArchiveStore) -> list[Outcome]:
        """Carry out the plan with bounded concurrency; one seat's failure does not stop the others."""
        ports = self.seats.allocate_ports(actions, self.containers())  # first: a port shortage leaves nothing behind
        self.seats.ensure_network()
        with SeatProgress([a.seat for a in actions], f"deploy {self.slug}") as progress:
            outcomes = run_all(lambda a: self._apply_one(a, image, ports.get(a.seat), store, progress),
                               actions, self.settings.concurrency, self.stop)
        return outcomes + self.doors.sync()

    def pause(self, observed: list[Observed], now: datetime) -> list[Outcome]:
        """Stop each seat's container; its home volume, port and link stay. Marked by its restart policy "no"
        (so the engine never restarts it), which tells a paused seat from one that crashed or was stopped by hand.
        The engine records when it stopped (State.FinishedAt): that is the pause time the schedule reads."""
        def one(seat: Observed) -> Outcome:
            started = time.monotonic()
            try:
                self.stop.check()
                self.seats.pause(self.docker.container(seat.instance_id), seat.seat)
                return Outcome(seat.seat, "pause", True, "container stopped; its home stays", time.monotonic() - started)
            except (CoursekitError, Interrupted) as exc:
                return Outcome(seat.seat, "pause", False, str(exc), time.monotonic() - started)
        return run_all(one, observed, self.settings.concurrency, self.stop) + self.doors.sync()

    # Homes ---------------------------------------------------------------------------------------

    def archive(self, seat: str, store: ArchiveStore, name: str | None = None) -> archive.Archived:
        """Archive one seat's home from its volume (the container need not exist) and verify it."""
        return archive_to(store, name or seat, self.homes.tar_source(seat), archive.course_checksums(self.course.data))

    def reset(self, seat: str, store: ArchiveStore, name: str) -> Outcome:
        """Stop the seat (its home holds still), archive and verify it as `name`, then start it again from its image
        with a new home, on the same port: the same link and credential. A failed archive starts the seat as it was."""
        started, found = time.monotonic(), self._of(seat)
        if not found:
            raise CoursekitError(f"seat {seat} has no container on this host: nothing to reset (is it deployed?)")
        container = found[0]
        port = int(container.labels[labels.PORT])
        self.docker.stop(container, f"stopping {seat} to archive its home")
        try:
            done = self.archive(seat, store, name)
        except CoursekitError:
            self.docker.start(container, f"starting {seat} again")
            raise
        self.seats.remove(seat, found)
        self.seats.ensure_network()
        self.seats.start_new(seat, container.image, port, self.fingerprint())
        self.doors.sync()
        return Outcome(seat, "reset", True, f"archived {done.files} files ({done.size:,} bytes) to {done.path}; "
                                            f"a fresh home at {self.doors.url(seat, port)}", time.monotonic() - started)

    def move_home(self, seat: str, spare: str, store: ArchiveStore) -> str:
        """Copy the student's work onto the spare's home (their files win; the spare's own stay beside them): from
        the seat's volume, else from its newest archive, else nothing. The old seat is paused first; returns where the
        work came from."""
        volumes, listed = self.homes.names(), self.containers()
        spare_container = next((c for c in listed if c.labels[labels.SEAT] == spare), None)
        if spare not in volumes or spare_container is None:
            raise CoursekitError(f"{spare} is not deployed on this host: deploy first, then swap onto it")
        for container in [c for c in listed if c.labels[labels.SEAT] == seat]:
            self.seats.pause(container, seat)  # its home holds still while it is copied; the seat stays, paused
        with tempfile.SpooledTemporaryFile(64 << 20) as spooled:  # all of it, before the spare is touched
            copied, source = spool_work(seat, store, spooled, HOME.rsplit("/", 1)[1],  # what the engine unpacks into /home
                                        (f"{seat}'s home", self.homes.tar_source(seat, spare)) if seat in volumes else None)
            if copied:
                spooled.seek(0)
                self.homes.put(spare, spooled)
        self.docker.restart(spare_container, f"restarting {spare}")  # Jupyter sees the copied home as it starts
        self.seats.wait_ready(spare_container)
        return source

    # Reading -------------------------------------------------------------------------------------

    def urls(self) -> dict[str, str]:
        """seat → URL for every seat that has a container."""
        return {c.labels[labels.SEAT]: self.url(c) for c in self.containers()}

    def student_clients(self) -> dict[str, SeatClient]:
        """seat → a client through the door its student uses (a gateway's certificate checked against its CA)."""
        ca = self.doors.ca_pem()
        return {c.labels[labels.SEAT]: SeatClient(c.labels[labels.SEAT], self.url(c), self.token(c.labels[labels.SEAT]), ca_pem=ca)
                for c in sorted(self.containers(), key=lambda c: c.labels[labels.SEAT])}

    def instances_by_seat(self) -> dict[str, tuple[Container | None, str | None, str]]:
        """seat → (its container, its home volume, what the home holds), for every seat with either."""
        found = {c.labels[labels.SEAT]: c for c in self.containers()}
        volumes = self.homes.by_seat()
        names, usage = {seat: v.name for seat, v in volumes.items()}, self.homes.usage(volumes.values())
        return {seat: (found.get(seat), names.get(seat), usage.get(names.get(seat, ""), "-")) for seat in set(found) | set(names)}

    def status_row(self, seat: str, instance: tuple[Container | None, str | None, str] | None) -> SeatStatus:
        """State, URL, image, health, last activity and home usage of one seat."""
        container, volume, home = instance or (None, None, "-")
        if container is None:
            return SeatStatus(seat, "home only" if volume else "missing", "", "", "-", "-", home)
        code, body = self.seats.status(container) if container.status == "running" else (0, None)
        health = "ok" if code == 200 else (f"HTTP {code}" if code else "no answer")
        is_paused = paused(container)
        clock = seat_clock(seat, is_paused, parse_time(container.finished_at) if is_paused else None, body if code == 200 else None)
        return SeatStatus(seat, "paused" if is_paused else container.status, self.url(container), self.docker.image_name(container.image_id),
                          health, activity_text(body) if code == 200 else "-", home, clock)

    def extra_status_rows(self) -> list[SeatStatus]:
        return self.doors.status_rows()

    # Teardown --------------------------------------------------------------------------------------

    def teardown_units(self) -> list[tuple[str, list[Container]]]:
        """Every seat with a container or a home volume, with its containers."""
        by_seat: dict[str, list[Container]] = {}
        for container in self.containers():
            by_seat.setdefault(container.labels[labels.SEAT], []).append(container)
        return [(seat, by_seat.get(seat, [])) for seat in sorted(set(by_seat) | set(self.homes.names()))]

    def archive_and_remove(self, seat: str, unit: list[Container], store: ArchiveStore, keep_volumes: bool) -> archive.Archived:
        done = self.archive(seat, store)
        self.seats.remove(seat, unit, keep_home=keep_volumes)
        return done

    def after_teardown(self, everything_removed: bool) -> None:
        for helper in self.docker.containers(labels.course_filter(self.slug, "archive-helper"), "finding archive helpers"):
            self.docker.remove(helper, "removing an archive helper an interrupted run left")  # never started: holds nothing
        self.doors.close(everything_removed)
        if everything_removed:
            for network in self.docker.networks(labels.course_filter(self.slug)):
                self.docker.remove_network(network)

    def leftovers(self, keep_volumes: bool = False) -> list[str]:
        """Everything still labelled with this course (for teardown's final check); with keep_volumes, homes
        (volumes and their disk files) are what was asked to stay."""
        label = labels.course_filter(self.slug)
        found = [f"container {c.name}" for c in self.docker.containers(label, "listing what the course left")]
        found += [f"network {n}" for n in self.docker.networks(label)]
        return found if keep_volumes else found + self.homes.leftovers(label)
