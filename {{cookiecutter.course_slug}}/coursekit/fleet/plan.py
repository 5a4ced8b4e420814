"""The planner: desired seats versus observed instances → actions. Pure; no cloud, no Docker."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import Enum

from coursekit.schedule import SeatClock


class Kind(str, Enum):
    CREATE = "create"
    KEEP = "keep"
    UPDATE = "update"  # a healthy seat gets the new image and keeps its home folder
    REPLACE = "replace"
    WAKE = "wake"  # a powered-off or shelved instance whose disk holds work: start it, never replace it
    BLOCKED = "blocked"  # broken, and its disk holds work: left in place until the instructor discards it
    REMOVE = "remove"


class SeatState(str, Enum):
    """A provider's reading of one instance."""

    RUNNING = "running"
    STARTING = "starting"
    STOPPED = "stopped"  # powered off (a VM) or exited (a container)
    PAUSED = "paused"  # shelved (a VM) or stopped by `pause` (a container): keeps its home; only resume or the schedule wakes it
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value  # in messages and status rows, as the word itself


@dataclass(frozen=True)
class Desired:
    """A seat as course.yaml wants it: which image, which settings (an opaque fingerprint)."""

    seat: str
    image: str
    settings: str


@dataclass(frozen=True)
class Observed:
    """An instance the provider found by the course's labels."""

    seat: str
    instance_id: str  # what the provider addresses it by: a container name, a server id
    image: str
    settings: str
    state: SeatState  # the provider's reading of it
    detail: str = ""
    holds_work: bool = False  # the instance's own disk holds the student's work: never replaced or deleted unarchived
    paused_at: datetime | None = None  # when coursekit paused it (None: not paused, or paused by other means)
    started: datetime | None = None  # Jupyter's own clocks, from /api/status, when it answers
    last_activity: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", SeatState(self.state))  # ValueError for a state no provider may report

    def clock(self) -> SeatClock:
        """What the schedule reads of this seat."""
        return SeatClock(self.seat, self.state is SeatState.PAUSED, self.paused_at, self.started, self.last_activity)


@dataclass(frozen=True)
class Action:
    kind: Kind
    seat: str
    reason: str
    desired: Desired | None = None
    observed: Observed | None = None
    duplicate: bool = False  # a second instance of a seat that has one: removing it loses nothing


def _change(want: Desired, have: Observed, wake: frozenset[str]) -> tuple[Kind, str] | None:
    """What a seat that exists needs, if anything: a new instance, a wake-up, or only a new image."""
    if have.state == SeatState.PAUSED:  # never broken, never replaced: woken only when the schedule says so
        return (Kind.WAKE, f"{have.detail or 'paused'}: its awake hours have begun") if have.seat in wake else None
    if have.holds_work and have.state in (SeatState.STOPPED, SeatState.PAUSED):
        return Kind.WAKE, f"{have.detail or have.state}: start it (its disk holds the student's work)"
    if have.holds_work and have.state == SeatState.FAILED:
        return Kind.BLOCKED, (f"{have.detail or have.state}; its disk holds the student's work, so it is left in place "
                              f"(deploy --discard {have.seat} deletes it, and the work on it)")
    if have.state in (SeatState.STOPPED, SeatState.FAILED):
        return Kind.REPLACE, f"unhealthy: {have.detail or have.state}"
    if have.settings != want.settings:
        return Kind.REPLACE, "settings changed"
    if have.image != want.image:
        return Kind.UPDATE, "runs an outdated image"
    return None


KEEP_REASONS = {SeatState.RUNNING: "up to date", SeatState.PAUSED: "paused: `coursekit resume` or the schedule wakes it"}


def plan(desired: list[Desired], observed: list[Observed], wake: frozenset[str] = frozenset()) -> list[Action]:
    """Actions that turn observed into desired, in roster order, removals last; paused seats wake only if in wake."""
    by_seat: dict[str, list[Observed]] = {}
    for instance in observed:
        by_seat.setdefault(instance.seat, []).append(instance)
    actions = []
    for want in desired:
        instances = sorted(by_seat.pop(want.seat, []), key=lambda o: (o.state != SeatState.RUNNING, o.instance_id))
        if not instances:
            actions.append(Action(Kind.CREATE, want.seat, "new seat", want))
            continue
        have, extra = instances[0], instances[1:]
        if change := _change(want, have, wake):
            actions.append(Action(change[0], want.seat, change[1], want, have))
        else:
            actions.append(Action(Kind.KEEP, want.seat, KEEP_REASONS.get(have.state, "starting"), want, have))
        # A duplicate never served anyone unless its own disk says so; then it is archived like any removal.
        actions += [Action(Kind.REMOVE, want.seat, "duplicate instance", None, o, duplicate=not o.holds_work) for o in extra]
    for seat, instances in by_seat.items():
        actions += [Action(Kind.REMOVE, seat, "no longer in the roster", None, o) for o in instances]
    return actions


@dataclass(frozen=True)
class Outcome:
    """What applying one action to one seat came to."""

    seat: str
    action: str
    ok: bool
    detail: str
    seconds: float = 0.0


@dataclass(frozen=True)
class SeatStatus:
    """One row of `coursekit status`."""

    seat: str
    state: str
    url: str
    image: str
    health: str
    last_activity: str
    home: str = "-"  # how much the seat's home holds, where the provider can tell
    clock: SeatClock | None = field(default=None, compare=False)  # read in the same probe: status asks each seat once

    def columns(self) -> dict[str, str]:
        """What `coursekit status` shows of the row."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "clock"}


def discard(actions: list[Action], seats: set[str]) -> list[Action]:
    """The plan with the instructor's --discard applied: those blocked seats are replaced, their disks given up."""
    return [Action(Kind.REPLACE, a.seat, f"discarded by the instructor ({a.reason.split(';')[0]})", a.desired, a.observed)
            if a.kind is Kind.BLOCKED and a.seat in seats else a for a in actions]
