"""course.yaml → a validated, typed Course."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Mapping

from coursekit import seating
from coursekit.errors import ConfigError
from coursekit.fleet import registry
from coursekit.schedule import parse_window
from coursekit.schema import schema_problems, with_defaults
from coursekit.validate import glob_matches, normal_path, parse_when, semantic_problems
from coursekit.yamlload import Document, load_file

DEFAULT_CONFIG = Path("course.yaml")


@dataclass(frozen=True)
class CourseInfo:
    name: str
    slug: str
    start: datetime
    end: datetime
    keep_days: int
    sessions: tuple[tuple[datetime, datetime], ...] = ()  # course.sessions as listed (empty: derived from start and end)

    def meets(self) -> list[tuple[datetime, datetime]]:
        """Every session of the class: course.sessions, or start's time to end's time on each day."""
        from coursekit.schedule import class_sessions

        return class_sessions(self.start, self.end, self.sessions)

    @property
    def hours(self) -> float:
        """Hours the fleet runs: class time plus the days it is kept afterwards."""
        return (self.end - self.start + timedelta(days=self.keep_days)) / timedelta(hours=1)


@dataclass(frozen=True)
class ImageSpec:
    registry: str
    repository: str
    base: str
    python_packages: tuple[str, ...]
    apt_packages: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()  # image.env, in course.yaml's order
    conda_packages: tuple[str, ...] = ()
    conda_channels: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """registry/repository, without a tag."""
        return f"{self.registry}/{self.repository}"


@dataclass(frozen=True)
class DataFile:
    url: str
    sha256: str
    path: str
    when: str
    unpack: bool = False


@dataclass(frozen=True)
class NotebookSettings:
    """What test.notebooks says about one notebook (merged over every glob that matches it)."""

    skip: str | None = None
    allow_errors: bool | None = None  # None: not said (a later glob's false overrides an earlier true)
    timeout: int | None = None


@dataclass(frozen=True)
class TestSettings:
    timeout: int = 600
    notebooks: tuple[tuple[str, NotebookSettings], ...] = ()  # (glob, settings) in course.yaml's order

    def for_notebook(self, rel: str) -> NotebookSettings:
        """The settings of notebooks/<rel>: every matching glob in order, later ones winning per key."""
        merged: dict = {}
        for glob, settings in self.notebooks:
            if glob_matches(glob, rel):
                merged.update({k: v for k, v in vars(settings).items() if v is not None})
        return NotebookSettings(**merged)


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    email: str = ""


@dataclass(frozen=True)
class Seats:
    students: tuple[Person, ...]
    instructors: tuple[Person, ...]
    spares: int


@dataclass(frozen=True)
class Fleet:
    provider: str
    sections: Mapping[str, Any]  # provider name → its settings (the type its section in fleet/<name>/ defines)
    max_seats: int | None = None

    def __getattr__(self, name: str) -> Any:
        """course.fleet.<provider>: that provider's settings."""
        sections = self.__dict__.get("sections") or {}
        if name in sections:
            return sections[name]
        raise AttributeError(name)

    @property
    def settings(self) -> Any:
        """The chosen provider's settings."""
        return self.sections[self.provider]


@dataclass(frozen=True)
class ScheduleSettings:
    """schedule: daily awake windows, idleness, expiry (coursekit.schedule reads them)."""

    windows: tuple = ()  # schedule.Window, in course.yaml's order
    idle_pause_hours: float = 0
    expire: bool = False


@dataclass(frozen=True)
class Course:
    course: CourseInfo
    image: ImageSpec
    data: tuple[DataFile, ...]
    seats: Seats
    fleet: Fleet
    allocation_su: float | None
    root: Path
    test: TestSettings = TestSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    archive_target: str = "archives"  # a folder, or swift://CONTAINER
    seating: tuple[tuple[str, str], ...] = ()  # (person, spare) moves from seating.yaml (coursekit swap)


def problems(doc: Document, root: Path, check_lock: bool = True) -> list:
    """Every problem in a parsed course.yaml: syntax, schema, then semantics."""
    if doc.problems and not isinstance(doc.data, dict):
        return doc.problems
    return [*doc.problems, *schema_problems(doc), *semantic_problems(doc, root, check_lock)]


def _people(entries: list[dict]) -> tuple[Person, ...]:
    return tuple(Person(**entry) for entry in entries)


def build_course(data: dict, root: Path) -> Course:
    """A Course from course.yaml data that has passed validation (pure)."""
    d = with_defaults(data)
    info, image, seats, fleet, test, schedule = d["course"], d["image"], d["seats"], d["fleet"], d["test"], d["schedule"]
    return Course(
        course=CourseInfo(info["name"], info["slug"], parse_when(info["start"]), parse_when(info["end"]), info["keep_days"],
                          tuple((parse_when(x["start"]), parse_when(x["end"])) for x in info.get("sessions") or ())),
        image=ImageSpec(
            image["registry"], image["repository"], image["base"], tuple(image["python_packages"]), tuple(image["apt_packages"]),
            tuple(image["env"].items()), tuple(image["conda_packages"]), tuple(image["conda_channels"]),
        ),
        data=tuple(DataFile(**{**f, "sha256": f["sha256"].lower(), "path": normal_path(f["path"])}) for f in d["data"]),
        seats=Seats(_people(seats["students"]), _people(seats["instructors"]), seats["spares"]),
        fleet=Fleet(fleet["provider"], registry.settings(fleet), fleet.get("max_seats")),
        allocation_su=d["budget"].get("allocation_su"),
        root=root,
        test=TestSettings(test["timeout"], tuple((glob, NotebookSettings(**settings)) for glob, settings in test["notebooks"].items())),
        schedule=ScheduleSettings(tuple(parse_window(w) for w in schedule["awake"]), schedule["idle_pause_hours"], schedule["expire"]),
        archive_target=d["archive"]["target"],
    )


def load_course(path: Path = DEFAULT_CONFIG, check_lock: bool = True) -> Course:
    """Load, validate and type course.yaml; ConfigError lists every problem (check_lock=False: all but a stale lock)."""
    doc = load_file(path)
    root = path.resolve().parent
    found = problems(doc, root, check_lock)
    if found:
        raise ConfigError(found)
    course = build_course(doc.data, root)
    people = {p.id for p in (*course.seats.students, *course.seats.instructors)}
    return replace(course, seating=seating.read(root, people, course.seats.spares))
