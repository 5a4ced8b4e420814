"""Where verified archives end up: a local folder, or the allocation's object store (Swift).

Every archive is first written and verified path by path in a local folder (archive.archive_seat). A
Swift store then uploads it, reads it back and compares its SHA-256 before the seat may be removed, so
a scheduled teardown in CI keeps every student's work private and out of the workflow's artifacts.
Objects are named <course slug>/<seat>.tar.gz, so one container can hold several courses.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import suppress
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Protocol

from coursekit import buildinputs
from coursekit.archive import UNREADABLE, Archived, archive_names, link_new, newest, newest_in, read_archive, seat_of
from coursekit.errors import ArchiveError, CoursekitError

SWIFT = "swift://"
SHA_KEY = "coursekit-sha256"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Stored:
    """One seat's archive as a store lists it."""

    seat: str
    location: str
    size: int
    modified: str
    sha256: str = ""


class ArchiveStore(Protocol):
    folder: Path  # where archives are written and verified first (owner-only)

    def keep(self, done: Archived) -> Archived:
        """Make a verified local archive final (upload and re-check it); ArchiveError leaves the seat in place."""

    def list(self) -> list[Stored]:
        """Every archive of the course."""

    def fetch(self, seat: str, dest: Path) -> Path:
        """One seat's archive as a local file under dest, checked against its checksum and its own manifest."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_archive_file(path: Path) -> None:
    """The archive holds exactly what its own manifests list (ArchiveError otherwise)."""
    try:
        held, sums, listed = read_archive(path)
    except UNREADABLE as exc:
        raise ArchiveError(f"{path} cannot be read ({type(exc).__name__}: {exc}); it is damaged or not an archive") from None
    files = {rel: e.sha256 for rel, e in held.items() if e.kind in ("file", "hardlink")}
    if held != listed or sums != files:
        raise ArchiveError(f"{path} does not match its own manifest")


class LocalStore:
    """Archives stay in a folder on this machine."""

    def __init__(self, folder: Path):
        self.folder = folder

    def keep(self, done: Archived) -> Archived:
        return done

    def list(self) -> list[Stored]:
        from datetime import datetime, timezone

        found = [p for p in sorted(self.folder.glob("*.tar.gz")) if p.is_file() and not p.is_symlink()]  # no dangling links
        return [Stored(seat_of(p.name), str(p), p.stat().st_size,
                       datetime.fromtimestamp(p.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")) for p in found]

    def fetch(self, seat: str, dest: Path) -> Path:
        """The seat's newest archive, where it lies."""
        path = newest_in(self.folder, seat)
        if path is None:
            raise CoursekitError(f"no archive of seat {seat!r} in {self.folder}/")
        check_archive_file(path)
        return path


class SwiftStore:
    """Archives go to a Swift container of the allocation, through the cloud connection given; the local copy is only staging."""

    def __init__(self, connect: Callable[[], Any], container: str, slug: str):
        self._connect, self.container, self.slug = connect, container, slug
        self._staging = tempfile.TemporaryDirectory(prefix="coursekit-archives-")
        self.folder = Path(self._staging.name)
        self._ready = False

    @cached_property
    def cloud(self):
        """The connection, made on first use: a deploy that archives nothing needs no object store."""
        return self._connect()

    def _free_name(self, seat: str) -> str:
        """<slug>/<seat>.tar.gz, or the next numbered name when the seat was archived before."""
        return next(f"{self.slug}/{n}" for n in archive_names(seat)
                    if self.cloud.object_metadata(self.container, f"{self.slug}/{n}") is None)

    def _newest_name(self, seat: str) -> str | None:
        return newest(o.name for o in self.cloud.objects(self.container, f"{self.slug}/{seat}.")
                      if o.name.endswith(".tar.gz") and seat_of(o.name) == seat)

    def location(self, name: str) -> str:
        return f"{SWIFT}{self.container}/{name}"

    def keep(self, done: Archived) -> Archived:
        """Upload, read back, compare SHA-256; only then is the archive final and the local copy dropped."""
        local = Path(done.path)
        digest = file_sha256(local)
        name = f"{self.slug}/{done.seat}.tar.gz"
        try:
            if not self._ready:
                self.cloud.create_container(self.container)
                self._ready = True
            name = self._free_name(done.seat)
            self.cloud.upload_object(self.container, name, local, {SHA_KEY: digest})
            back = self._read_back(name)  # the upload's own answer is not proof: read every byte back
        except CoursekitError as exc:
            raise ArchiveError(f"uploading to {self.location(name)} failed ({exc}); the seat is kept") from None
        if back != digest:
            with suppress(CoursekitError):  # else the SDK's own checksum metadata would skip the next upload
                self.cloud.delete_object(self.container, name)
            raise ArchiveError(f"{self.location(name)} reads back with another checksum ({back[:12]}… "
                               f"instead of {digest[:12]}…); the seat is kept, run the command again")
        local.unlink()
        return replace(done, path=self.location(name))

    def _read_back(self, name: str) -> str:
        digest = hashlib.sha256()
        for chunk in self.cloud.stream_object(self.container, name):
            digest.update(chunk)
        return digest.hexdigest()

    def list(self) -> list[Stored]:
        return [Stored(seat_of(o.name), self.location(o.name), o.content_length or 0, str(o.last_modified_at or ""))
                for o in self.cloud.objects(self.container, f"{self.slug}/") if o.name.endswith(".tar.gz")]

    def download_link(self, seat: str, seconds: int) -> str | None:
        """A time-limited link to the seat's newest archive (None when it has none)."""
        name = self._newest_name(seat)
        return self.cloud.temp_url(self.container, name, seconds) if name else None

    def fetch(self, seat: str, dest: Path) -> Path:
        """The seat's newest archive, downloaded into dest and checked against its checksum and manifest."""
        name = self._newest_name(seat)
        meta = self.cloud.object_metadata(self.container, name) if name else None
        if meta is None:
            raise CoursekitError(f"no archive of seat {seat!r} at {self.location(f'{self.slug}/{seat}.tar.gz')}")
        folder_for_fetch(dest)
        partial = dest / f".{seat}.tar.gz.part"
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as handle:
                for chunk in self.cloud.stream_object(self.container, name):
                    digest.update(chunk)
                    handle.write(chunk)
            want = (meta.get(SHA_KEY) or "").lower()
            if want and digest.hexdigest() != want:
                raise ArchiveError(f"{self.location(name)} does not match the checksum it was stored with")
            check_archive_file(partial)
            return link_new(partial, dest, seat)  # never over a file already there: <seat>.2.tar.gz and on
        finally:
            partial.unlink(missing_ok=True)


def folder_for_fetch(dest: Path) -> None:
    """Make dest an owner-only folder to fetch into; a clear error when it is a file (--to /dev/null)."""
    if dest.exists() and not dest.is_dir():
        raise CoursekitError(f"--to {dest}: that is a file, not a folder; give a folder to put the archive in")
    try:
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise CoursekitError(f"--to {dest}: cannot make that folder ({exc.strerror})") from None


def store_for(course, folder: Path | None = None, connect: Callable[[], Any] | None = None) -> ArchiveStore:
    """archive.target of course.yaml (a folder given on the command line wins); connect() gives the object store's
    connection (a provider section's object_store) when the target is swift://."""
    target = course.archive_target
    if folder is not None:
        if why := buildinputs.target_problem(course.root, str(folder.absolute())):
            raise CoursekitError(f"--archive-dir: {why}")
        return LocalStore(folder)
    if not target.startswith(SWIFT):
        return LocalStore(course.root / target)  # relative to the course repository, wherever the command runs
    if connect is None:
        raise CoursekitError(f"archive.target {target!r} is in an object store, and this command has no cloud to reach it")
    return SwiftStore(connect, target.removeprefix(SWIFT), course.course.slug)


def archive_to(store: ArchiveStore, seat: str, source, course_data: dict[str, str]) -> Archived:
    """Archive a seat into the store's folder, verify it path by path, then make it final in the store."""
    from coursekit.archive import archive_seat

    return store.keep(archive_seat(seat, source, store.folder, course_data))
