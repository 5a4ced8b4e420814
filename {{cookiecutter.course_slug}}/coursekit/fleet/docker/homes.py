"""The seats' home volumes on a Docker host: found by exact labels, created bounded (a disk file of their own, see
homedisk.py) or not, attached before a seat starts, read as a tar through a helper that never starts, measured for
`status`, and removed with their disk file only once their work is archived."""
from __future__ import annotations

import functools
import threading
from typing import Iterable, Iterator

from coursekit import archive, labels
from coursekit.engine import Engine, Volume
from coursekit.errors import CoursekitError
from coursekit.fleet.docker import homedisk
from coursekit.fleet.docker.section import DockerSettings
from coursekit.sizes import memory_bytes
from coursekit.ui import warn

HOME = "/home/jovyan"


class Homes:
    """One course's home volumes."""

    def __init__(self, docker: Engine, slug: str, settings: DockerSettings):
        self.docker, self.slug, self.settings = docker, slug, settings
        self._warned, self._warned_lock = False, threading.Lock()

    def name(self, seat: str) -> str:
        return f"coursekit-{self.slug}.{seat}.home"

    def by_seat(self) -> dict[str, Volume]:
        """seat → its home volume, found by exact labels."""
        found = self.docker.volumes(labels.course_filter(self.slug, "seat"), "listing the course's volumes")
        return {v.labels[labels.SEAT]: v for v in found if labels.SEAT in v.labels}

    def names(self) -> dict[str, str]:
        """seat → name of its home volume."""
        return {seat: volume.name for seat, volume in self.by_seat().items()}

    def ports(self) -> dict[str, int]:
        """seat → the port its home volume was created with: a healed seat keeps its link."""
        return {seat: int(v.labels[labels.PORT]) for seat, v in self.by_seat().items() if labels.PORT in v.labels}

    def ensure(self, seat: str, port: int) -> str:
        """The seat's home volume (its disk attached), created when it has none."""
        existing = self.names().get(seat)
        if existing:
            self.attach(existing)
            return existing
        name, volume_labels = self.name(seat), {labels.COURSE: self.slug, labels.ROLE: "seat", labels.SEAT: seat,
                                                labels.PORT: str(port)}
        disk, what = self.settings.disk, f"creating the home volume of {seat}"
        if disk is None or self._unbounded_warning(disk):
            return self.docker.create_volume(name, volume_labels, what=what)
        homedisk.create(name, memory_bytes(disk))
        try:
            self.docker.create_volume(name, {**volume_labels, labels.DISK: disk}, homedisk.driver_opts(name), what)
        except CoursekitError:
            homedisk.release(name)  # new and empty: nothing of a student's is in it
            raise
        homedisk.attach(name)
        return name

    @functools.cached_property
    def unbounded_why(self) -> str | None:
        """Why homes cannot be bounded from this process (None: they can); the same for its whole run."""
        return homedisk.unavailable(self.docker.base_url)

    def _unbounded_warning(self, disk: str) -> bool:
        """True (after one warning) when this host cannot bound homes to fleet.docker.disk."""
        why = self.unbounded_why
        with self._warned_lock:
            if why and not self._warned:
                self._warned = True
                warn(f"new homes are not bounded to fleet.docker.disk ({disk}): {why}. "
                     "Set fleet.docker.disk: null in course.yaml to accept unbounded homes")
        return why is not None

    def attach(self, volume: str) -> None:
        """Attach a bounded home's disk file, which its seat (or the archive helper) needs to mount it."""
        if homedisk.bounded(self.docker.volume(volume).options):
            if why := self.unbounded_why:
                raise CoursekitError(f"its home {volume} is a bounded disk file, and {why}")
            homedisk.attach(volume)

    def tar_source(self, seat: str, helper_seat: str | None = None) -> archive.TarSource:
        """The seat's home as one tar stream (top folder jovyan), read through a helper labelled for helper_seat."""
        volume = self.names().get(seat)
        if volume is None:
            raise archive.ArchiveError("it has no home volume")
        helper = {labels.COURSE: self.slug, labels.ROLE: "archive-helper", labels.SEAT: helper_seat or seat}

        def read() -> Iterator[bytes]:
            self.attach(volume)
            return self.docker.volume_tar(volume, HOME, helper)
        return read

    def put(self, seat: str, tar) -> None:
        """Unpack a tar whose top folder is jovyan into the seat's home (its files win where names meet)."""
        volume = self.names()[seat]
        self.attach(volume)
        self.docker.volume_put(volume, HOME, tar, {labels.COURSE: self.slug, labels.ROLE: "archive-helper", labels.SEAT: seat})

    def remove(self, seat: str) -> None:
        """Remove the seat's home volume, then its disk file: only once its work is archived."""
        volume = self.names().get(seat)
        if volume is None:
            return
        bounded = homedisk.bounded(self.docker.volume(volume).options)
        self.docker.remove_volume(volume, f"removing the home volume of {seat}")
        if bounded:
            homedisk.release(volume)  # its disk file: the volume, and so the (archived) home, is gone

    def usage(self, volumes: Iterable[Volume]) -> dict[str, str]:
        """volume name → what its home holds, and of how much when bounded (the engine's own accounting, or the home's
        own filesystem)."""
        counted = self.docker.volume_sizes()
        usage = {}
        for volume in volumes:
            limit = volume.labels.get(labels.DISK)
            used = counted.get(volume.name, -1)
            if homedisk.bounded(volume.options) and self.unbounded_why is None:
                used = homedisk.used_bytes(volume.name, volume.mountpoint)
            usage[volume.name] = (f"{used / 2**20:,.1f} MiB" if used is not None and used >= 0 else "-") + (f" of {limit}" if limit else "")
        return usage

    def leftovers(self, label: dict) -> list[str]:
        """The course's volumes and disk files (teardown's final check)."""
        found = [f"volume {v.name}" for v in self.docker.volumes(label, "listing what the course left")]
        return found + [f"disk file {path}" for path in homedisk.leftovers(f"coursekit-{self.slug}.")]
