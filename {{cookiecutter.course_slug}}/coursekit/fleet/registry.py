"""The one registry of providers, and what the rest of coursekit may ask of a provider's section.

Each provider is a package under fleet/ whose `section` module is light (no SDK): its settings type, its checks of
course.yaml's fleet.<name>, the size of one seat for `coursekit test`, its cost, its schema fragment, and where its
provider class lives (imported only when a command needs a fleet). validate, config, cost and imagetest ask
here, so none of them names a provider; adding one is a package and a line in PROVIDERS.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator, Mapping, Protocol

from coursekit.errors import CoursekitError

# name → the package that owns it (its `section` module is what the core reads).
PROVIDERS: dict[str, str] = {
    "docker": "coursekit.fleet.docker",
    "openstack": "coursekit.fleet.openstack",
}


@dataclass(frozen=True)
class SeatSize:
    """What one seat may use: `coursekit test` runs each notebook with it."""

    cpus: float
    memory: str
    source: str  # where course.yaml sets it (for messages)


@dataclass(frozen=True)
class Rates:
    """What a fleet costs per hour, in the allocation's units (SU)."""

    title: str  # what is priced, for the table's title
    seats_are: str  # what the seats are, in words ("VMs of m3.medium")
    seat: float  # per seat while it is awake
    always_on: tuple[tuple[str, float], ...] = ()  # (what, per hour) that runs for the whole class and its keep_days
    note: str = ""  # said under the table


class Section(Protocol):
    """A provider package's light face (fleet/<name>/section.py)."""

    NAME: str
    PROVIDER: str  # "module:Class" of its Provider subclass
    SCHEMA: Path  # its fragment of course.schema.json: the schema of fleet.<name>

    def settings(self, raw: dict) -> Any: ...
    def problems(self, raw: dict, seats: int) -> Iterator[tuple[tuple, str]]: ...
    def seat_size(self, fleet: Fleetish) -> SeatSize: ...
    def rates(self, fleet: Fleetish) -> Rates: ...
    def object_store(self, settings: Any) -> Any | None: ...
    def write_cloud_config(self, settings: Any, output: Path | None, environ: Mapping[str, str]) -> str | None: ...


class Fleetish(Protocol):
    """course.fleet as sections see it: every provider's settings by name."""

    provider: str
    sections: Mapping[str, Any]


def section(name: str) -> Section:
    """The section of the provider called name."""
    if name not in PROVIDERS:
        raise CoursekitError(f"no provider called {name!r}; registered: {', '.join(sorted(PROVIDERS))}")
    module: ModuleType = importlib.import_module(f"{PROVIDERS[name]}.section")
    return module  # type: ignore[return-value]


def schema_fragments() -> dict[str, dict]:
    """name → the schema of fleet.<name>, as its package holds it."""
    return {name: json.loads(section(name).SCHEMA.read_text(encoding="utf-8")) for name in PROVIDERS}


def settings(fleet: Mapping[str, Any]) -> dict[str, Any]:
    """Every provider's typed settings from course.yaml's (defaulted) fleet mapping."""
    return {name: section(name).settings(fleet[name]) for name in PROVIDERS}


def object_store(fleet: Fleetish) -> Any:
    """A connection to the object store archives may go to, from the first provider that has one."""
    for name in PROVIDERS:
        if (found := section(name).object_store(fleet.sections[name])) is not None:
            return found
    raise CoursekitError("no provider of this coursekit reaches an object store for swift:// archives")


def write_cloud_config(fleet: Fleetish, output: Path | None, environ: Mapping[str, str]) -> str:
    """Write the credentials file a runner needs for the course's cloud; what was done, in words."""
    said = [text for name in PROVIDERS if (text := section(name).write_cloud_config(fleet.sections[name], output, environ))]
    return "\n".join(said) or "no provider needs a cloud configuration"
