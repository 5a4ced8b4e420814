"""Archive a seat's home: one <seat>.tar.gz with a sha256 manifest, verified before anything is deleted."""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator

from coursekit.errors import CoursekitError

MANIFEST = "MANIFEST.sha256"
# Not the student's work: caches, Jupyter's runtime files, and the git metadata of the course notebooks.
SKIP = (".cache", ".local/share/jupyter/runtime", "notebooks/.git", "data/.coursekit-verified")

TarSource = Callable[[], Iterable[bytes]]  # each call streams the home folder again as a tar


class ArchiveError(CoursekitError):
    """An archive could not be written or does not match its source."""


@dataclass(frozen=True)
class Archived:
    seat: str
    path: Path
    files: int
    size: int


class _ChunkReader(io.RawIOBase):
    """A file object over an iterable of byte chunks (Docker's get_archive stream)."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size], self._buffer = self._buffer[:size], self._buffer[size:]
        return size


def _relative(name: str) -> str:
    """Member name without the top folder (jovyan/notebooks/a.ipynb → notebooks/a.ipynb)."""
    parts = PurePosixPath(name).parts
    return str(PurePosixPath(*parts[1:])) if len(parts) > 1 else ""


def course_checksums(data_files: Iterable) -> dict[str, str]:
    """~/data path → sha256 of the course's data, which archives leave out while unchanged."""
    return {entry.path: entry.sha256 for entry in data_files}


def _wanted(rel: str, member: tarfile.TarInfo, course_data: dict[str, str], digest: str | None) -> bool:
    if not rel or any(rel == s or rel.startswith(s + "/") for s in SKIP):
        return False
    if member.isfile() and rel.startswith("data/") and course_data.get(rel[5:]) == digest:
        return False  # course data, unchanged: the image fetches it again
    return member.isfile() or member.isdir() or member.issym()


def _members(source: TarSource, course_data: dict[str, str]) -> Iterator[tuple[str, tarfile.TarInfo, bytes]]:
    with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(source())), mode="r|") as tar:
        for member in tar:
            rel = _relative(member.name)
            content = tar.extractfile(member).read() if member.isfile() else b""
            digest = hashlib.sha256(content).hexdigest() if member.isfile() else None
            if _wanted(rel, member, course_data, digest):
                yield rel, member, content


def _source_digests(source: TarSource, course_data: dict[str, str]) -> dict[str, str]:
    return {rel: hashlib.sha256(content).hexdigest() for rel, m, content in _members(source, course_data) if m.isfile()}


def read_manifest(archive: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(the manifest's sums, the sums of the files actually in the archive)."""
    listed, actual = {}, {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            content = tar.extractfile(member).read()
            if member.name == MANIFEST:
                listed = {name: digest for digest, name in (line.split("  ", 1) for line in content.decode().splitlines())}
            else:
                actual[member.name] = hashlib.sha256(content).hexdigest()
    return listed, actual


def archive_seat(seat: str, source: TarSource, dest_dir: Path, course_data: dict[str, str]) -> Archived:
    """Write dest_dir/<seat>.tar.gz from source, then check it against its manifest and a second read of the source."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / f"{seat}.tar.gz"
    partial = dest_dir / f".{seat}.tar.gz.part"
    sums: dict[str, str] = {}
    size = 0
    try:
        with tarfile.open(partial, "w:gz") as out:
            for rel, member, content in _members(source, course_data):
                member.name = rel
                out.addfile(member, io.BytesIO(content) if member.isfile() else None)
                if member.isfile():
                    sums[rel] = hashlib.sha256(content).hexdigest()
                    size += len(content)
            manifest = "".join(f"{digest}  {name}\n" for name, digest in sorted(sums.items())).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode = len(manifest), 0o644
            out.addfile(info, io.BytesIO(manifest))
        listed, actual = read_manifest(partial)
        if listed != sums or actual != sums:
            raise ArchiveError("the archive does not match its own manifest")
        again = _source_digests(source, course_data)
        if again != sums:
            changed = sorted(set(again.items()) ^ set(sums.items()))[:5]
            raise ArchiveError(f"the home changed while it was archived ({changed}); archive again")
        os.replace(partial, final)
    except (OSError, tarfile.TarError) as exc:
        raise ArchiveError(f"archiving failed: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return Archived(seat, final, len(sums), size)
