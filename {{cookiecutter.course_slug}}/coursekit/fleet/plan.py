"""The planner: desired seats versus observed instances → actions. Pure; no cloud, no Docker."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    CREATE = "create"
    KEEP = "keep"
    UPDATE = "update"  # a healthy seat gets the new image and keeps its home folder
    REPLACE = "replace"
    REMOVE = "remove"


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
    state: str  # running | starting | stopped | failed: the provider's reading of it
    detail: str = ""


@dataclass(frozen=True)
class Action:
    kind: Kind
    seat: str
    reason: str
    desired: Desired | None = None
    observed: Observed | None = None
    duplicate: bool = False  # a second instance of a seat that has one: removing it loses nothing


def _change(want: Desired, have: Observed) -> tuple[Kind, str] | None:
    """What a seat that exists needs, if anything: a new instance, or only a new image."""
    if have.state in ("stopped", "failed"):
        return Kind.REPLACE, f"unhealthy: {have.detail or have.state}"
    if have.settings != want.settings:
        return Kind.REPLACE, "settings changed"
    if have.image != want.image:
        return Kind.UPDATE, "runs an outdated image"
    return None


def plan(desired: list[Desired], observed: list[Observed]) -> list[Action]:
    """Actions that turn observed into desired, in roster order, removals last."""
    by_seat: dict[str, list[Observed]] = {}
    for instance in observed:
        by_seat.setdefault(instance.seat, []).append(instance)
    actions = []
    for want in desired:
        instances = sorted(by_seat.pop(want.seat, []), key=lambda o: (o.state != "running", o.instance_id))
        if not instances:
            actions.append(Action(Kind.CREATE, want.seat, "new seat", want))
            continue
        have, extra = instances[0], instances[1:]
        if change := _change(want, have):
            actions.append(Action(change[0], want.seat, change[1], want, have))
        else:
            actions.append(Action(Kind.KEEP, want.seat, "up to date" if have.state == "running" else "starting", want, have))
        actions += [Action(Kind.REMOVE, want.seat, "duplicate instance", None, o, duplicate=True) for o in extra]
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
