"""The provider contract: what every kind of fleet does, the parts they share, and the one registry.

A provider is a package under fleet/ (its light `section` and this subclass) and one line in registry.PROVIDERS.
The CLI's --provider choices, the schema's fleet.provider enum (composed from the registry) and fleet_for all read
it; the class is imported only when a command needs it, so heavy SDKs load only then. Shared here, written once: the desired seats,
tokens, the order of status rows, and teardown as a template method (archive, verify, then remove, seat
by seat, one failure never stopping the others), as dockerspawner shares a spawner's lifecycle.
"""
from __future__ import annotations

import importlib
import tempfile
from abc import ABC, abstractmethod
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Callable, ClassVar, Iterable

from coursekit import archive
from coursekit.archive import Archived
from coursekit.archivestore import ArchiveStore
from coursekit.config import Course
from coursekit.errors import CoursekitError
from coursekit.fleet import registry
from coursekit.fleet.plan import Action, Desired, Kind, Observed, Outcome, SeatState, SeatStatus
from coursekit.parallel import each
from coursekit.schedule import Change
from coursekit.seatclient import SeatClient
from coursekit.seats import SeatTokens, seats, status_order

TEARDOWN_WORKERS = 4  # seats archived at once: each reads a home and writes an archive

def provider_class(name: str) -> type[Provider]:
    """The registered class called name (imported now)."""
    module, _, attribute = registry.section(name).PROVIDER.partition(":")
    return getattr(importlib.import_module(module), attribute)


def fleet_for(course: Course, provider: str | None, tokens: SeatTokens) -> Provider:
    """The provider for course (--provider, else fleet.provider), connected."""
    return provider_class(provider or course.fleet.provider).connect(course, tokens)


class Provider(ABC):
    """One kind of fleet. Subclasses talk to their SDK through a thin adapter and raise CoursekitError only."""

    name: ClassVar[str]

    def __init__(self, course: Course, tokens: SeatTokens):
        self.course, self.tokens = course, tokens
        self.slug = course.course.slug

    @classmethod
    @abstractmethod
    def connect(cls, course: Course, tokens: SeatTokens) -> Provider:
        """A provider talking to its engine or cloud (a clear CoursekitError when it cannot)."""

    def token(self, seat: str) -> str:
        return self.tokens.token(seat)

    def object_store(self) -> Any | None:
        """The connection swift:// archives go through when this fleet has one of its own (None: ask the registry)."""
        return None  # a hook: a fleet without a cloud connection of its own

    # Desired state -------------------------------------------------------------------------------

    @abstractmethod
    def fingerprint(self) -> str:
        """What the seats' settings hash to; an instance with another fingerprint is replaced."""

    @abstractmethod
    def resolve_image(self, ref: str) -> str:
        """What an instance records as its image for ref (a local image id, or the reference itself)."""

    def preflight(self) -> None:
        """Refuse, before anything is planned, settings this provider cannot honour."""
        return None  # a hook: nothing to check unless the provider says so

    def desired(self, image: str) -> list[Desired]:
        """The course's seats as course.yaml wants them."""
        self.preflight()
        return [Desired(s.id, image, self.fingerprint()) for s in seats(self.course)]

    # Observing and applying -------------------------------------------------------------------------

    @abstractmethod
    def observe(self) -> list[Observed]:
        """The course's instances as they are, found by exact labels or tags."""

    @abstractmethod
    def apply(self, actions: list[Action], image: str, store: ArchiveStore | None) -> list[Outcome]:
        """Carry out a plan; one outcome per acting seat, one seat's failure never stopping the others
        (store: where seats that are removed or replaced are archived; None when the plan removes nothing)."""

    # Pausing and resuming ----------------------------------------------------------------------------

    @abstractmethod
    def pause(self, observed: list[Observed], now: datetime) -> list[Outcome]:
        """Pause these seats so they cost nothing (or little) while their homes stay; done when each is paused
        (now: the schedule's clock, recorded as the pause time where the provider can record one)."""

    def resume(self, observed: list[Observed]) -> list[Outcome]:
        """Wake these paused or stopped seats; done when each answers again, as after deploy."""
        return self.apply([Action(Kind.WAKE, o.seat, "resume", None, o) for o in observed], "", None)

    def set_awake(self, change: Change, observed: list[Observed], reasons: dict[str, str], now: datetime) -> list[Outcome]:
        """Pause or resume the observed seats named in reasons (seat → why); seats already so are reported, not touched."""
        chosen = [o for o in observed if o.seat in reasons]
        if change is Change.PAUSE:
            act = [o for o in chosen if o.state != SeatState.PAUSED]
            done = self.pause(act, now) if act else []
            left = [Outcome(o.seat, "pause", True, "already paused") for o in chosen if o.state == SeatState.PAUSED]
        else:
            act = [o for o in chosen if o.state in (SeatState.PAUSED, SeatState.STOPPED)]
            done = self.resume(act) if act else []
            left = [Outcome(o.seat, "resume", True, f"already {o.state.value}")
                    for o in chosen if o not in act]
        detailed = [Outcome(o.seat, o.action, o.ok, f"{reasons[o.seat]}: {o.detail}" if reasons.get(o.seat) else o.detail, o.seconds)
                    for o in done]
        order = {o.seat: i for i, o in enumerate(chosen)}
        return sorted(detailed + left, key=lambda o: order.get(o.seat, len(order)))  # a gateway row last

    @abstractmethod
    def urls(self) -> dict[str, str]:
        """seat → the URL students open."""

    @abstractmethod
    def student_clients(self) -> dict[str, SeatClient]:
        """seat → a client that reaches the seat through the door its student uses, with the seat's credential."""

    # Status --------------------------------------------------------------------------------------

    @abstractmethod
    def instances_by_seat(self) -> dict[str, Any]:
        """seat → whatever the provider needs to describe it (a container, a server and its address...)."""

    @abstractmethod
    def status_row(self, seat: str, instance: Any | None) -> SeatStatus:
        """One row of `coursekit status` (instance None: the seat has nothing)."""

    def status(self) -> list[SeatStatus]:
        """Every seat in roster order, then any the roster no longer has."""
        found = self.instances_by_seat()
        return each(lambda seat: self.status_row(seat, found.get(seat)), status_order(self.course, found)) + self.extra_status_rows()

    def extra_status_rows(self) -> list[SeatStatus]:
        """Rows for what serves the seats (a gateway), after the seats."""
        return []  # a hook: nothing but seats unless the provider says so

    # Archiving and teardown (template method) -----------------------------------------------------

    @abstractmethod
    def archive(self, seat: str, store: ArchiveStore) -> Archived:
        """Archive one seat's home into store/<seat>.tar.gz and verify it path by path."""

    @abstractmethod
    def teardown_units(self) -> Iterable[tuple[str, Any]]:
        """(seat, what holds it) for everything of the course that teardown must archive and remove."""

    @abstractmethod
    def archive_and_remove(self, seat: str, unit: Any, store: ArchiveStore, keep_volumes: bool) -> Archived | None:
        """Archive the seat (None when it provably holds no work), verify, then remove it; CoursekitError leaves it."""

    def left_in_place(self, unit: Any) -> str:
        """How a unit that could not be archived is left, for the report."""
        return "the seat is left in place"

    def after_teardown(self, everything_removed: bool) -> None:
        """Remove what the seats shared (a network, a security group) once no seat is left."""
        return None  # a hook: nothing shared unless the provider says so

    def teardown(self, store: ArchiveStore, keep_volumes: bool) -> list[Outcome]:
        """Archive every seat, verify it, then remove it, a few seats at once (one slow home holds one worker); a seat
        that fails stays and is reported, the others go on."""
        def one(item: tuple[str, Any]) -> Outcome:
            seat, unit = item
            try:
                done = self.archive_and_remove(seat, unit, store, keep_volumes)
            except CoursekitError as exc:
                return Outcome(seat, "teardown", False, f"{exc}; {self.left_in_place(unit)}")
            return Outcome(seat, "teardown", True, describe_archive(done))

        outcomes = each(one, self.teardown_units(), TEARDOWN_WORKERS)
        self.after_teardown(all(o.ok for o in outcomes))
        return outcomes

    @abstractmethod
    def move_home(self, seat: str, spare: str, store: ArchiveStore) -> str:
        """Put the work of the person at seat onto the deployed spare (from the seat, else its newest archive, else
        nothing) and leave the old seat paused or as it is; returns what was done, in words."""

    @abstractmethod
    def reset(self, seat: str, store: ArchiveStore, name: str) -> Outcome:
        """Archive the seat's home as `name` (verified), then give the seat a fresh home from its image, keeping its
        link and credential; CoursekitError (nothing changed) when the archive fails."""

    @abstractmethod
    def leftovers(self, keep_volumes: bool = False) -> list[str]:
        """Everything still tagged with the course (teardown's final check), homes left out when they are kept."""


def spool_work(seat: str, store: ArchiveStore, out: BinaryIO, top: str,
               read: tuple[str, Callable[[], Iterable[bytes]]] | None = None, why: str = "") -> tuple[bool, str]:
    """A swap's first half: the student's work written into out as a tar of their home under top/, from read = (what
    it is, its tar stream) when given and readable to the end, else from the seat's newest archive. (whether there is
    anything to copy, where it came from in words); why: what the words say first (the seat could not be read)."""
    if read is not None:
        where, stream = read
        try:
            for chunk in stream():
                out.write(chunk)
            return True, f"copied from {where}"
        except CoursekitError as exc:
            why = f"{where} could not be read ({exc}); "
            out.seek(0)
            out.truncate()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = store.fetch(seat, Path(tmp))
        except CoursekitError as exc:
            return False, f"{why}no archive of it to copy ({exc}): the spare starts fresh"
        archive.write_home_tar(path, out, top)
    return True, f"{why}copied from its newest archive, {path.name}"


def describe_archive(done: Archived | None) -> str:
    """The report line of one archived seat."""
    if done is None:
        return "nothing on it to archive (it never served anyone, or its VM was already gone): removed"
    skipped = f"; left out {len(done.skipped)} special files (pipes, sockets)" if done.skipped else ""
    return f"archived {done.files} files ({done.size:,} bytes) to {done.path}{skipped}"
