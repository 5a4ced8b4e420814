"""Archive a seat's home as <seat>.tar.gz, verified path by path before anything may be deleted.

The archive is a PAX tar: any name Linux allows (not UTF-8, newlines, U+2028, any length), hard links
(every path present), symlinks stored as links and never followed, empty and unreadable files, hidden
files. The home is the folder home/ in the archive, and coursekit's own files lie beside it, never among
the student's (a student's own MANIFEST.json is home/MANIFEST.json):

    MANIFEST.sha256   every regular file (hard links too) as home/<path>, in GNU sha256sum format, so after
                      `tar -xzf`, `sha256sum -c MANIFEST.sha256` checks it; names with a backslash,
                      newline or CR are escaped as sha256sum escapes them
    MANIFEST.json     {"format": 2, "home": "home", "entries": every entry (type, mode, size, sha256, link
                      target), "skipped": ...}
    home/             the student's files

The home is read twice (once to list it, once to write it) and the written archive once more; the three
listings must agree entry by entry, so a path that is missing, changed, added or held twice fails the
archive. Archives made before format 2 (the home's files at the top, beside the manifests) are read alike.
"""
from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import os
import stat
import tarfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterable, Iterator

from coursekit.errors import ArchiveError

MANIFEST = "MANIFEST.sha256"
LISTING = "MANIFEST.json"
HOME = "home"  # the folder holding the student's files inside an archive (format 2)
FORMAT = 2
CHUNK = 1 << 20
# Not the student's work: caches, Jupyter's runtime files, and the git metadata of the course notebooks.
SKIP = (".cache", ".local/share/jupyter/runtime", "notebooks/.git", "data/.coursekit-verified")

TarSource = Callable[[], Iterable[bytes]]  # each call streams the home folder again as a tar (one top folder)

__all__ = ["ArchiveError", "Archived", "Entry", "TarSource", "archive_seat", "course_checksums", "read_archive"]


@dataclass(frozen=True)
class Archived:
    seat: str
    path: Path | str  # a local file, or where the store keeps it (swift://...)
    files: int
    size: int
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class Entry:
    """One path of a home, as the archive must hold it."""

    kind: str  # file | dir | symlink | hardlink
    mode: int
    size: int = 0
    sha256: str | None = None  # files and hard links: the bytes
    target: str | None = None  # symlinks: where they point; hard links: the path they share bytes with


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


class _Hashing(io.RawIOBase):
    """Reads through to a file object, hashing what passes (so a file is hashed while it is copied)."""

    def __init__(self, raw: IO[bytes]):
        self._raw, self.digest = raw, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.digest.update(data)
        return data

    def readinto(self, target) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)


def _relative(name: str) -> str:
    """Member name without the top folder (jovyan/notebooks/a.ipynb → notebooks/a.ipynb)."""
    parts = PurePosixPath(name).parts
    return str(PurePosixPath(*parts[1:])) if len(parts) > 1 else ""


def _sha256(fileobj: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := fileobj.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def course_checksums(data_files: Iterable) -> dict[str, str]:
    """~/data path → sha256 of the course's data, which archives leave out while unchanged."""
    return {entry.path: entry.sha256 for entry in data_files}


def _kind(member: tarfile.TarInfo) -> str | None:
    if member.isreg():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    return None  # FIFOs, sockets, devices: not work a student can lose, and not portable


def _stream(source: TarSource) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo, str]]:
    with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(source())), mode="r|", errors="surrogateescape") as tar:
        for member in tar:
            rel = _relative(member.name)
            if rel:
                yield tar, member, rel


def _entry(member: tarfile.TarInfo, kind: str, digest: str | None = None, shared: Entry | None = None,
           link: str | None = None) -> Entry:
    """What one tar member stands for: a file with its bytes' digest, a hard link with the bytes of the entry it
    shares them with (at path link), a directory, or a symlink with its target. One reading for all three passes."""
    mode = member.mode & 0o7777
    if kind == "file":
        return Entry("file", mode, member.size, digest)
    if kind == "hardlink":
        return Entry("hardlink", mode, shared.size if shared else 0, shared.sha256 if shared else None, link)
    return Entry(kind, mode, target=member.linkname if kind == "symlink" else None)


MAX_FILE = 64 * 2**30  # bytes of one file: more is a sparse file (a student's `truncate -s 1T`), not a day's work


def _scan(source: TarSource) -> tuple[dict[str, Entry], list[str]]:
    """Every entry of the home (hard links resolved to their bytes) and the paths of other kinds of file."""
    entries: dict[str, Entry] = {}
    others = []
    for tar, member, rel in _stream(source):
        kind = _kind(member)
        if kind == "file" and member.size > MAX_FILE:
            raise ArchiveError(
                f"{rel!r} is {member.size / 2**30:,.0f} GiB (a sparse file: more than any home holds, at most "
                f"{MAX_FILE // 2**30} GiB are archived); it is left in place: delete or shrink that file in the seat, then "
                "run teardown again")
        if kind is None:
            others.append(rel)
        elif kind == "file":
            entries[rel] = _entry(member, kind, _sha256(tar.extractfile(member)))
        elif kind == "hardlink":
            shared = entries.get(_relative(member.linkname))
            if shared is None or shared.kind != "file":  # a hard link to a FIFO or device
                others.append(rel)
                continue
            entries[rel] = _entry(member, kind, shared=shared, link=_relative(member.linkname))
        else:
            entries[rel] = _entry(member, kind)
    return entries, others


def _kept(entries: dict[str, Entry], course_data: dict[str, str]) -> dict[str, Entry]:
    """What the archive must hold: all but caches and unchanged course data; a hard link's target always stays."""
    link_targets = {e.target for e in entries.values() if e.kind == "hardlink"}

    def wanted(rel: str, entry: Entry) -> bool:
        if rel in link_targets:
            return True
        if any(rel == s or rel.startswith(s + "/") for s in SKIP):
            return False
        return not (entry.kind == "file" and rel.startswith("data/") and course_data.get(rel[5:]) == entry.sha256)

    return {rel: entry for rel, entry in entries.items() if wanted(rel, entry)}


def _name_bytes(name: str) -> bytes:
    return os.fsencode(name)  # surrogate-escaped bytes back to the bytes the file system holds


def _sha256sum_line(name: str, digest: str) -> bytes:
    """One line as GNU sha256sum writes it; names with \\ \\n or \\r are escaped and the line starts with \\."""
    raw = _name_bytes(name)
    if any(c in raw for c in b"\\\n\r"):
        raw = raw.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
        return b"\\" + digest.encode() + b"  " + raw + b"\n"
    return digest.encode() + b"  " + raw + b"\n"


def _parse_sha256sum(text: bytes) -> dict[str, str]:
    sums = {}
    for line in text.split(b"\n"):
        if not line:
            continue
        escaped = line.startswith(b"\\")
        digest, _, raw = (line[1:] if escaped else line).partition(b"  ")
        if escaped:
            raw = raw.replace(b"\\\\", b"\0").replace(b"\\n", b"\n").replace(b"\\r", b"\r").replace(b"\0", b"\\")
        sums[os.fsdecode(raw)] = digest.decode()
    return sums


def _json_path(name: str) -> dict:
    try:
        return {"path": name.encode("utf-8").decode("utf-8")}
    except UnicodeEncodeError:  # not UTF-8 on disk: keep the exact bytes
        return {"path_base64": base64.b64encode(_name_bytes(name)).decode()}


def _listing_json(entries: dict[str, Entry], skipped: list[str]) -> bytes:
    rows = [{**_json_path(rel), **{k: v for k, v in asdict(e).items() if v is not None}} for rel, e in sorted(entries.items())]
    return json.dumps({"format": FORMAT, "home": HOME, "entries": rows, "skipped": [_json_path(s) for s in skipped]},
                      indent=1).encode()


def _parse_listing(text: bytes) -> tuple[dict[str, Entry], str]:
    """(the entries MANIFEST.json lists, the folder that holds the home in the archive: "" before format 2)."""
    data = json.loads(text)
    entries = {
        (row.pop("path") if "path" in row else os.fsdecode(base64.b64decode(row.pop("path_base64")))): Entry(**row)
        for row in data["entries"]
    }
    return entries, (data.get("home") or "") if data.get("format", 1) >= 2 else ""


def open_archive(path: Path) -> tarfile.TarFile:
    """A seat's archive, for reading (names that are not UTF-8 come back as they were written)."""
    return tarfile.open(path, "r:gz", errors="surrogateescape")


class HomeMembers:
    """The members of a seat's archive that make up the home, each with its path in the home (format 2 and older
    archives alike; the home folder itself left out). coursekit's MANIFEST.sha256 and MANIFEST.json are not
    yielded: their bytes are kept in .manifests, the listing's entries in .listed."""

    def __init__(self, tar: tarfile.TarFile):
        self.tar, self.home = tar, ""
        self.manifests: dict[str, bytes] = {}
        self.listed: dict[str, Entry] = {}

    def rel(self, name: str) -> str | None:
        """A member name's path in the home; None for a name outside the home folder."""
        if not self.home:
            return name
        return name[len(self.home) + 1:] if name.startswith(self.home + "/") else None

    def __iter__(self) -> Iterator[tuple[str | None, tarfile.TarInfo]]:
        for index, member in enumerate(self.tar):
            if index < 2 and member.name == (MANIFEST, LISTING)[index]:
                self.manifests[member.name] = self.tar.extractfile(member).read()
                if member.name == LISTING:
                    self.listed, self.home = _parse_listing(self.manifests[LISTING])
                continue
            if self.home and member.name == self.home and member.isdir():
                continue
            yield self.rel(member.name), member


def write_home_tar(path: Path, out: IO[bytes], top: str) -> None:
    """The home in the archive at path, as a tar stream whose one top folder is `top` (as a seat's streamer and
    Docker's own archives of a home are)."""
    with open_archive(path) as source, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,
                                                    errors="surrogateescape") as tar:
        members = HomeMembers(source)
        for rel, member in members:
            if not rel or not rel.strip("/"):
                continue  # outside the home folder
            member.name = f"{top}/{rel}"
            if member.islnk():
                member.linkname = f"{top}/{members.rel(member.linkname) or ''}"
            # the archive's PAX records name the old path and would win over .name
            member.pax_headers = {k: v for k, v in member.pax_headers.items() if k not in ("path", "linkpath")}
            tar.addfile(member, source.extractfile(member) if member.isfile() else None)


DUPLICATE = Entry("held twice", 0)
# What reading a damaged archive raises: truncated gzip (EOFError), bad deflate data, tar and JSON errors.
UNREADABLE = (OSError, EOFError, zlib.error, tarfile.TarError, ValueError, KeyError, TypeError)  # what verification sees for a path two members claim


def read_archive(path: Path) -> tuple[dict[str, Entry], dict[str, str], dict[str, Entry]]:
    """(what the archive holds, its MANIFEST.sha256, its MANIFEST.json), each read from the file itself, paths
    relative to the home (format 2 and older archives alike)."""
    held: dict[str, Entry] = {}
    with open_archive(path) as tar:
        members = HomeMembers(tar)

        def rel(name: str) -> str:  # names outside the home keep a mark, so they never match a home path
            found = members.rel(name)
            return found if found is not None else f"(outside {members.home}/) {name}"

        for _, member in members:
            kind, path_in_home = _kind(member), rel(member.name)
            if path_in_home in held:
                held[path_in_home] = DUPLICATE
            elif kind == "file":
                held[path_in_home] = _entry(member, kind, _sha256(tar.extractfile(member)))
            elif kind is not None:
                link = rel(member.linkname) if kind == "hardlink" else None
                held[path_in_home] = _entry(member, kind, shared=held.get(link) if link else None, link=link)
    sums = _parse_sha256sum(members.manifests[MANIFEST]) if MANIFEST in members.manifests else {}
    return held, {rel(name): digest for name, digest in sums.items()}, members.listed


def _differences(want: dict[str, Entry], have: dict[str, Entry], limit: int = 5) -> list[str]:
    lines = []
    for rel in sorted(set(want) | set(have)):
        if want.get(rel) != have.get(rel):
            what = "missing" if rel not in have else ("unexpected" if rel not in want else "differs")
            lines.append(f"{rel!r} {what}")
    return lines[:limit]


def _manifests(kept: dict[str, Entry], skipped: list[str]) -> list[tuple[str, bytes]]:
    sums = b"".join(_sha256sum_line(f"{HOME}/{rel}", e.sha256 or "") for rel, e in sorted(kept.items())
                    if e.kind in ("file", "hardlink"))
    return [(MANIFEST, sums), (LISTING, _listing_json(kept, skipped))]


def _write(partial: Path, source: TarSource, kept: dict[str, Entry], skipped: list[str]) -> dict[str, Entry]:
    """Write the manifests of kept, then the home from a second read of the source; returns what that read saw."""
    written: dict[str, Entry] = {}
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT,
                                                   errors="surrogateescape") as out:
        for name, data in _manifests(kept, skipped):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            out.addfile(info, io.BytesIO(data))
        home = tarfile.TarInfo(HOME)
        home.type, home.mode = tarfile.DIRTYPE, 0o700
        out.addfile(home)
        for tar, member, rel in _stream(source):
            kind = _kind(member)
            if rel not in kept or kind is None:
                continue
            member.name = f"{HOME}/{rel}"
            # The source's PAX records would name the old path (top folder included) and win over .name.
            member.pax_headers = {k: v for k, v in member.pax_headers.items() if k not in ("path", "linkpath")}
            if kind == "file":
                reader = _Hashing(tar.extractfile(member))
                out.addfile(member, reader)
                written[rel] = _entry(member, kind, reader.digest.hexdigest())
                continue
            link = _relative(member.linkname) if kind == "hardlink" else None
            if link is not None:
                member.linkname = f"{HOME}/{link}"
            out.addfile(member)
            written[rel] = _entry(member, kind, shared=written.get(link) if link else None, link=link)
    return written


def private_folder(folder: Path) -> None:
    """Make folder owner-only (0700), creating it; a folder open to others that holds more than archives is refused,
    never closed (archive.target: /srv or .. must not lock other people out of their files)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(folder.stat().st_mode)
    if not mode & 0o077:
        return
    other = next((p.name for p in folder.iterdir() if not p.name.endswith((".tar.gz", ".tar.gz.part"))), None)
    if other is not None:
        raise ArchiveError(
            f"{folder} is open to other users (mode {mode:04o}) and holds more than archives ({other!r}); archives hold "
            "every student's work: give them a folder of their own (archive.target in course.yaml, or --archive-dir)")
    os.chmod(folder, 0o700)


def archive_names(seat: str) -> Iterator[str]:
    """<seat>.tar.gz, then <seat>.2.tar.gz, <seat>.3.tar.gz...: an archive is never written over another
    (a seat archived twice, or two courses' seats of one name in one folder). '.' is in no seat id."""
    yield f"{seat}.tar.gz"
    yield from (f"{seat}.{n}.tar.gz" for n in itertools.count(2))


def seat_of(archive_name: str) -> str:
    """The seat an archive file or object name belongs to: alice.2.tar.gz → alice."""
    return archive_name.rsplit("/", 1)[-1].split(".", 1)[0]


def newest(names: Iterable[str]) -> str | None:
    """The latest of one seat's archive names (the highest number; <seat>.tar.gz is the first). What `reset` kept
    (<seat>.reset-<time>.tar.gz) is older than any of those: the home it held was replaced by a fresh one."""
    def order(name: str) -> tuple[int, str]:
        middle = name.rsplit("/", 1)[-1].removesuffix(".tar.gz").split(".")[1:]
        return (int(middle[0]) if middle[0].isdigit() else 0) if middle else 1, name
    return max(names, key=order, default=None)


def newest_in(folder: Path, seat: str) -> Path | None:
    """The seat's newest archive in folder, if it has one."""
    if not folder.is_dir():
        return None
    name = newest(p.name for p in folder.glob(f"{seat}.*tar.gz") if seat_of(p.name) == seat)
    return folder / name if name else None


def _same_as_newest(dest_dir: Path, seat: str, kept: dict[str, Entry]) -> Path | None:
    """The seat's newest archive in dest_dir when it holds exactly kept (a re-run after an interrupted teardown)."""
    path = newest_in(dest_dir, seat)
    if path is None:
        return None
    try:
        held, _, listed = read_archive(path)
    except UNREADABLE:  # a truncated or foreign file: this archive is written beside it under a new name
        return None
    return path if held == listed == kept else None


def link_new(partial: Path, dest_dir: Path, seat: str) -> Path:
    """Give partial the first free archive name (a hard link never replaces a file, unlike a rename)."""
    for name in archive_names(seat):
        final = dest_dir / name
        try:
            os.link(partial, final)
            return final
        except FileExistsError:
            continue
        except OSError:  # a filesystem without hard links (a mounted share): rename onto a name that is free now
            if not final.exists():
                os.replace(partial, final)
                return final
    raise AssertionError("archive_names never ends")


def archive_seat(seat: str, source: TarSource, dest_dir: Path, course_data: dict[str, str]) -> Archived:
    """Write dest_dir/<seat>.tar.gz (0600, folder 0700; a numbered name when that exists) from source and verify
    it path by path against the source."""
    partial = dest_dir / f".{seat}.tar.gz.part"
    try:
        private_folder(dest_dir)
        entries, skipped = _scan(source)
        kept = _kept(entries, course_data)
        written = _write(partial, source, kept, skipped)
        if written != kept:
            raise ArchiveError(f"the home changed while it was archived ({'; '.join(_differences(kept, written))}); archive again")
        held, sums, listed = read_archive(partial)
        file_sums = {rel: e.sha256 for rel, e in kept.items() if e.kind in ("file", "hardlink")}
        if held != kept or listed != kept or sums != file_sums:
            problems = _differences(kept, held) or _differences(kept, listed) or ["MANIFEST.sha256 differs"]
            raise ArchiveError(f"the archive does not match the home ({'; '.join(problems)})")
        final = _same_as_newest(dest_dir, seat, kept) or link_new(partial, dest_dir, seat)
    except UNREADABLE as exc:
        raise ArchiveError(f"archiving failed: {type(exc).__name__}: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    files = sum(1 for e in kept.values() if e.kind in ("file", "hardlink"))
    return Archived(seat, final, files, sum(e.size for e in kept.values() if e.kind == "file"), tuple(skipped))
