"""`coursekit takehome --to DIR`: each student's work to keep, from the newest archive of their seat.

DIR/<person>/ holds work/ (the student's home as the archive has it, hidden files and links inside it included) and a
README.txt in plain language with the one `docker run` line that opens it in the course's published image. The
archive is checked against its checksum and manifest first, and unpacked only through descriptors relative to
work/ (data.py's folder): nothing lands outside it, and a link that points out of the home is left out and named.
With archives in Swift it writes DIR/links.csv instead: one time-limited download link (TempURL) per person.
"""
from __future__ import annotations

import csv
import io
import os
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from coursekit.archive import HomeMembers, open_archive
from coursekit.archivestore import ArchiveStore
from coursekit.config import Course
from coursekit.data import UNPACK_SECONDS, DataError, Folder, link_target
from coursekit.errors import CoursekitError
from coursekit.seats import seats

README = """\
Your work from {course}
{rule}

The folder "work" next to this file holds everything you had in your course environment,
exactly as you left it.

To open it again in the same environment (Python, R and the course's packages), install
Docker Desktop (https://www.docker.com/products/docker-desktop/), open a terminal in this
folder and run:

    {command}

Then open the link that starts with http://127.0.0.1:8888/lab?token= that it prints.
Your files are in the "work" folder on the left. What you change there is saved here,
on your computer. Press Ctrl+C in the terminal to stop it.
{left_out}"""


@dataclass(frozen=True)
class TakeHome:
    seat: str
    folder: Path | None
    files: int
    detail: str


def docker_command(course: Course) -> str:
    """The one line that opens work/ in the course's published image."""
    return f'docker run --rm -p 8888:8888 -v "$PWD/work:/home/jovyan/work" {course.image.name}:latest'


def unpack_home(archive: Path, work: Path) -> tuple[int, list[str]]:
    """The archive's home into the empty folder work: (files written, links left out because they point outside)."""
    folder = Folder(work, time.monotonic() + UNPACK_SECONDS, 1 << 62)
    files, left_out = 0, []
    try:
        with open_archive(archive) as tar:
            members = HomeMembers(tar)
            for rel, member in members:
                if not rel or not rel.strip("/"):
                    continue  # outside the home folder
                if member.isdir():
                    folder.folder(rel)
                elif member.issym():
                    try:
                        link_target(rel, member.linkname)
                    except DataError:
                        left_out.append(f"{rel} (a link to {member.linkname})")
                        continue
                    folder.symlink(rel, member.linkname)
                elif member.islnk():
                    folder.hardlink(rel, members.rel(member.linkname) or "")
                    files += 1
                elif member.isfile():
                    folder.file(rel, tar.extractfile(member), member.size)
                    files += 1
    finally:
        folder.close()
    return files, left_out


def write_one(course: Course, store: ArchiveStore, seat: str, dest: Path, name: str | None = None) -> TakeHome:
    """DIR/<name>/ (name: the person's id, else the seat) from the seat's newest archive; a clear CoursekitError when
    it has none or the folder is there already."""
    folder = dest / (name or seat)
    if folder.exists() or folder.is_symlink():
        raise CoursekitError(f"{folder} is there already: take-home never writes over a folder; remove it or choose --to")
    with tempfile.TemporaryDirectory(dir=dest, prefix=f".{seat}.") as tmp:
        archive = store.fetch(seat, Path(tmp))
        staged = Path(tmp) / seat
        (staged / "work").mkdir(parents=True)
        try:
            files, left_out = unpack_home(archive, staged / "work")
        except (DataError, tarfile.TarError, OSError) as exc:
            raise CoursekitError(f"its archive {archive.name} could not be unpacked: {exc}") from None
        note = "" if not left_out else ("\nLeft out (links to places outside your home, which would not work here):\n"
                                        + "".join(f"    {item}\n" for item in left_out))
        title = f"{course.course.name} ({seat})"
        (staged / "README.txt").write_text(README.format(course=title, rule="=" * len(f"Your work from {title}"),
                                                         command=docker_command(course), left_out=note))
        os.rename(staged, folder)  # the whole folder appears at once, or not at all
    return TakeHome(seat, folder, files, f"{files} files from {archive.name}" + (f"; left out {len(left_out)} links" if left_out else ""))


def write_all(course: Course, store: ArchiveStore, dest: Path) -> list[TakeHome]:
    """One folder per person (then any other seat with an archive); one seat's trouble is its own row."""
    dest.mkdir(parents=True, exist_ok=True)
    archived = {stored.seat for stored in store.list()}
    people = [(s.person, s.id) for s in seats(course) if s.person]  # a person moved by swap: the spare they use
    sitting = {seat for _, seat in people}
    results = []
    for name, seat in people + [(seat, seat) for seat in sorted(archived - sitting) if seat not in dict(course.seating)]:
        if seat not in archived:
            results.append(TakeHome(name, None, 0, "no archive yet (tear the course down, or reset the seat, first)"))
            continue
        try:
            results.append(write_one(course, store, seat, dest, name))
        except CoursekitError as exc:
            results.append(TakeHome(name, None, 0, f"FAILED: {exc}"))
    return results


def write_links(course: Course, store, dest: Path, days: int) -> tuple[Path, list[TakeHome]]:
    """With Swift archives: one time-limited download link per person, to their seat's newest archive, in
    DIR/links.csv (student, name, email, link, expires; owner-only: each link opens that student's work)."""
    from coursekit.roster import spreadsheet_safe

    dest.mkdir(parents=True, exist_ok=True)
    expires = (datetime.now(timezone.utc) + timedelta(days=days)).isoformat(timespec="minutes")
    rows, results = [], []
    for seat in seats(course):
        if not seat.person:
            continue
        link = store.download_link(seat.id, days * 86400)
        if link is None:
            results.append(TakeHome(seat.person, None, 0, f"no archive of {seat.id} yet"))
            continue
        rows.append([spreadsheet_safe(seat.person), spreadsheet_safe(seat.name), spreadsheet_safe(seat.email), link, expires])
        results.append(TakeHome(seat.person, None, 0, f"a link to {seat.id}'s newest archive, until {expires}"))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows([["student", "name", "email", "link", "expires"], *rows])
    path = dest / "links.csv"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
        handle.write(out.getvalue())
    return path, results
