"""Fetch and verify the course data manifest into ~/data.

Standard library only: the image runs this file as a script at container start
(a docker-stacks before-notebook.d hook) and at build time for `when: build` data.

    python3 data.py fetch MANIFEST DEST     fetch what is missing, verify everything
    python3 data.py verify MANIFEST DEST    verify only; exit 1 if anything is missing or wrong
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import json
import lzma
import os
import shutil
import ssl
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path

CHUNK = 1 << 20
STAMPS = ".coursekit-verified"  # per-file (size, mtime, sha256) records, so restarts skip re-hashing
RETRIES = int(os.environ.get("COURSEKIT_DATA_RETRIES", "5"))
BACKOFF = float(os.environ.get("COURSEKIT_DATA_BACKOFF", "1"))
CA_BUNDLE = os.environ.get("COURSEKIT_CA_BUNDLE", "/usr/local/share/coursekit/ca-bundle.crt")


class DataError(Exception):
    """A file that cannot be fetched or does not match its checksum."""


class Transient(Exception):
    """A failure worth retrying: network errors, timeouts, 5xx, 429."""


def log(message: str) -> None:
    print(f"coursekit-data: {message}", file=sys.stderr, flush=True)


def _ssl_context() -> ssl.SSLContext | None:
    """Trust the CA bundle built into the image (`coursekit build --ca-bundle`), if any."""
    if CA_BUNDLE and os.path.isfile(CA_BUNDLE) and os.path.getsize(CA_BUNDLE):
        return ssl.create_default_context(cafile=CA_BUNDLE)
    return None


MAX_REDIRECTS = 5


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow at most MAX_REDIRECTS redirects, and only to http(s): never to ftp:// or file://."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            raise DataError(f"{req.full_url}: redirected to a {scheme or 'relative'}:// address, which is not followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(url: str) -> urllib.request.OpenerDirector:
    if url.startswith("file:"):  # the image's own copies of repository and prefetched data
        return urllib.request.build_opener()
    handlers = [_SafeRedirects()]
    context = _ssl_context()
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


def _stamp_path(dest_root: Path, rel: str) -> Path:
    return dest_root / STAMPS / (rel + ".json")


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in chunks (bounded memory for any size)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _read_stamp(dest_root: Path, rel: str) -> dict | None:
    try:
        record = json.loads(_stamp_path(dest_root, rel).read_text())
        return record if isinstance(record, dict) else None
    except (OSError, ValueError):
        return None


def is_verified(dest_root: Path, entry: dict) -> bool:
    """True when the file is present with the right checksum (trusting a fresh stamp), or, for an archive,
    when its folder was unpacked from exactly this archive (what the student changed in it since stays)."""
    path = dest_root / entry["path"]
    record = _read_stamp(dest_root, entry["path"])
    if entry.get("unpack"):
        return path.is_dir() and not path.is_symlink() and record is not None and record.get("unpacked") == entry["sha256"]
    if not path.is_file():
        return False
    if record == {"stat": _stat_key(path), "sha256": entry["sha256"]}:
        return True
    if sha256_file(path) != entry["sha256"]:
        return False
    _write_stamp(dest_root, entry)
    return True


def _write_stamp(dest_root: Path, entry: dict, files: dict[str, str] | None = None) -> None:
    """Record a verified file (its stat and sha256), or an unpacked archive and the files it brought."""
    stamp = _stamp_path(dest_root, entry["path"])
    stamp.parent.mkdir(parents=True, exist_ok=True)
    record = {"unpacked": entry["sha256"], "files": files or {}} if entry.get("unpack") else {
        "stat": _stat_key(dest_root / entry["path"]), "sha256": entry["sha256"]}
    partial = stamp.with_name(stamp.name + ".part")
    partial.write_text(json.dumps(record))
    os.replace(partial, stamp)


# Archives ------------------------------------------------------------------------------------------
# Unpacked by construction, not by inspection: every path is created one folder at a time through file
# descriptors (openat with O_NOFOLLOW), so no link, earlier member or swap can send a write outside the
# folder, on every Python (tarfile's own "data" filter is not used and not needed).

MAX_MEMBERS = 200_000
MAX_DEPTH = 64  # folders in one member's path
MAX_RATIO = 1000  # unpacked bytes per archive byte: real data compresses far less; a bomb far more
UNPACK_SECONDS = float(os.environ.get("COURSEKIT_DATA_UNPACK_SECONDS", "900"))
MARGIN = 16 * 2**20  # free space left after unpacking, so the home can still log in
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _parts(name: str) -> list[str]:
    """A member's path as folder names under the archive's folder; DataError if it is absolute or climbs out."""
    text = name.replace("\\", "/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if text.startswith("/") or ".." in parts or (parts and ":" in parts[0]) or "\0" in text:
        raise DataError(f"the archive holds {name[:200]!r}, which points outside its folder; refusing to unpack it")
    if len(parts) > MAX_DEPTH:
        raise DataError(f"the archive holds a path {len(parts):,} folders deep (at most {MAX_DEPTH}); refusing to unpack it")
    if any(len(os.fsencode(p)) > 255 for p in parts):
        raise DataError(f"the archive holds a name longer than Linux allows ({name[:80]!r}...); refusing to unpack it")
    return parts


def link_target(name: str, linkname: str) -> str:
    """A symlink's target, if it stays inside the folder: relative, its `..` only at the start and no more of them
    than the link's own depth (so no other link it passes through can take it out)."""
    parts = linkname.split("/")
    ups = 0
    while ups < len(parts) and parts[ups] == "..":
        ups += 1
    rest = [p for p in parts[ups:] if p not in ("", ".")]
    if linkname.startswith("/") or ".." in rest or ups > len(_parts(name)) - 1 or "\0" in linkname:
        raise DataError(f"the archive's link {name[:200]!r} points to {linkname[:200]!r}, outside its folder; refusing to unpack it")
    return linkname


class Folder:
    """The folder an archive unpacks into, written only through descriptors relative to it."""

    def __init__(self, path: Path, deadline: float, budget: int):
        self.fd = os.open(path, _DIR)
        self.deadline, self.budget = deadline, budget

    def close(self) -> None:
        os.close(self.fd)

    def _check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise DataError(f"unpacking took longer than {UNPACK_SECONDS:g} s; refusing to go on")

    def parent(self, parts: list[str]) -> int:
        """A descriptor of the folder that holds parts[-1], making folders on the way (never through a link)."""
        fd = os.dup(self.fd)
        try:
            for depth, part in enumerate(parts[:-1]):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                try:
                    child = os.open(part, _DIR, dir_fd=fd)
                except OSError:
                    raise DataError(f"the archive holds {'/'.join(parts)!r} inside {'/'.join(parts[:depth + 1])!r}, "
                                    "which is a file or a link, not a folder; refusing to unpack it") from None
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _fresh(self, fd: int, leaf: str, parts: list[str]) -> None:
        """Make room for a new entry named leaf: a file of an earlier member is replaced, a folder never."""
        try:
            os.unlink(leaf, dir_fd=fd)
        except FileNotFoundError:
            pass
        except (IsADirectoryError, PermissionError):
            raise DataError(f"the archive holds {'/'.join(parts)!r} twice, as a folder and as a file; refusing to unpack it") from None

    def folder(self, name: str) -> None:
        parts = _parts(name)
        if parts:
            os.close(self.parent([*parts, "."]))

    def file(self, name: str, source, size: int) -> None:
        self._check_time()
        parts = _parts(name)
        if not parts:
            raise DataError(f"the archive holds a file with no name ({name!r}); refusing to unpack it")
        if size > self.budget:
            raise DataError("the archive unpacks to more than its declared size or the room there is; refusing to go on")
        fd = self.parent(parts)
        try:
            self._fresh(fd, parts[-1], parts)
            out = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd)
            with os.fdopen(out, "wb") as handle:
                written = 0
                while chunk := source.read(CHUNK):
                    written += len(chunk)
                    if written > size or written > self.budget:
                        raise DataError(f"{name[:200]!r} holds more bytes than the archive declares; refusing to go on")
                    handle.write(chunk)
                    self._check_time()
            self.budget -= written
        finally:
            os.close(fd)

    def symlink(self, name: str, linkname: str) -> None:
        parts = _parts(name)
        target = link_target(name, linkname)
        fd = self.parent(parts)
        try:
            self._fresh(fd, parts[-1], parts)
            os.symlink(target, parts[-1], dir_fd=fd)
        finally:
            os.close(fd)

    def hardlink(self, name: str, linkname: str) -> None:
        parts, source = _parts(name), _parts(linkname)
        if not source:
            raise DataError(f"the archive's hard link {name[:200]!r} has no target; refusing to unpack it")
        src_fd, fd = self.parent(source), self.parent(parts)
        try:
            if not stat.S_ISREG(os.stat(source[-1], dir_fd=src_fd, follow_symlinks=False).st_mode):
                raise DataError(f"the archive's hard link {name[:200]!r} is to {linkname[:200]!r}, which is not a file")
            self._fresh(fd, parts[-1], parts)
            os.link(source[-1], parts[-1], src_dir_fd=src_fd, dst_dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise DataError(f"the archive's hard link {name[:200]!r} is to {linkname[:200]!r}, which comes later or not at all") from None
        finally:
            os.close(src_fd)
            os.close(fd)


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _room(archive_path: Path, dest: Path, declared: int) -> int:
    """Bytes the archive may write: its declared size, if the folder has room for it and the ratio is sane."""
    packed = max(archive_path.stat().st_size, 1)
    if declared > packed * MAX_RATIO:
        raise DataError(f"the archive declares {declared:,} bytes from {packed:,} ({declared // packed:,} times its size; "
                        f"at most {MAX_RATIO}); refusing to unpack what looks like an archive bomb")
    free = _free_bytes(dest) - MARGIN
    if declared > free:
        raise DataError(f"the archive unpacks to {declared / 2**20:,.1f} MiB and ~/data has {max(free, 0) / 2**20:,.1f} MiB "
                        "free; ask your instructor for a bigger home or a smaller data set")
    return declared


def _unpack_zip(archive: zipfile.ZipFile, archive_path: Path, folder_path: Path, deadline: float) -> int:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise DataError(f"the archive holds more than {MAX_MEMBERS:,} entries; refusing to unpack it")
    offsets = [info.header_offset for info in infos]
    if len(set(offsets)) != len(offsets):
        raise DataError("the archive's entries share their data (overlapping records, an archive bomb); refusing to unpack it")
    for info in infos:
        _parts(info.filename)
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise DataError(f"the archive holds the link {info.filename[:200]!r}; zip links are not unpacked")
        if info.flag_bits & 0x1:
            raise DataError(f"{info.filename[:200]!r} is encrypted; coursekit unpacks archives without passwords only")
    folder = Folder(folder_path, deadline, _room(archive_path, folder_path, sum(i.file_size for i in infos)))
    try:
        for info in infos:
            if info.is_dir():
                folder.folder(info.filename)
            else:
                with archive.open(info) as source:
                    folder.file(info.filename, source, info.file_size)
    finally:
        folder.close()
    return len(infos)


def _unpack_tar(archive_path: Path, folder_path: Path, deadline: float) -> int:
    with tarfile.open(archive_path, "r:*") as tar:  # one pass to count and size, then one to write
        declared, count = 0, 0
        for member in tar:
            count += 1
            if count > MAX_MEMBERS:
                raise DataError(f"the archive holds more than {MAX_MEMBERS:,} entries; refusing to unpack it")
            _parts(member.name)
            if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                raise DataError(f"the archive holds {member.name[:200]!r}, a device or FIFO; refusing to unpack it")
            declared += member.size if member.isfile() else 0
            if time.monotonic() > deadline:
                raise DataError(f"reading the archive took longer than {UNPACK_SECONDS:g} s; refusing to go on")
    folder = Folder(folder_path, deadline, _room(archive_path, folder_path, declared))
    try:
        with tarfile.open(archive_path, "r:*") as tar:
            for member in tar:
                if member.isdir():
                    folder.folder(member.name)
                elif member.issym():
                    folder.symlink(member.name, member.linkname)
                elif member.islnk():
                    folder.hardlink(member.name, member.linkname)
                else:
                    folder.file(member.name, tar.extractfile(member), member.size)
    finally:
        folder.close()
    return count


def unpack(archive_path: Path, dest: Path) -> int:
    """Unpack a zip or tar (plain, gz, bz2, xz) into the empty folder dest; returns the entries. Every problem,
    a damaged or hostile archive included, is a DataError that says what is wrong."""
    deadline = time.monotonic() + UNPACK_SECONDS
    try:
        if zipfile.is_zipfile(archive_path):
            with zipfile.ZipFile(archive_path) as archive:
                return _unpack_zip(archive, archive_path, dest, deadline)
        if not tarfile.is_tarfile(archive_path):
            with archive_path.open("rb") as handle:
                head = handle.read(6)
            if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ")):
                raise DataError("the archive is damaged: a compressed file without a readable tar inside; check the "
                                "file and its sha256")
            raise DataError("not a zip or tar archive; set unpack: false to keep the file as it is")
        return _unpack_tar(archive_path, dest, deadline)
    except DataError:
        raise
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DataError("~/data ran out of space while unpacking; ask your instructor for a bigger home") from None
        raise DataError(f"the archive could not be unpacked ({exc.strerror or exc})") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, NotImplementedError,
            RuntimeError, ValueError, RecursionError) as exc:
        raise DataError(f"the archive is damaged or of a kind that cannot be unpacked ({type(exc).__name__}: "
                        f"{str(exc)[:200]}); check the file and its sha256") from None


# Updates: an archive's files are recorded per data entry, so a new version replaces only what the old one brought.

def _digest_at(path: Path) -> str | None:
    """What is at path, for telling a course file from a student's change: a file's sha256, a link's target."""
    try:
        mode = path.lstat().st_mode
    except OSError:
        return None
    if stat.S_ISLNK(mode):
        return "link:" + os.readlink(path)
    return sha256_file(path) if stat.S_ISREG(mode) else None


def _listing(folder: Path) -> dict[str, str]:
    """Every file and link under folder (relative path → _digest_at), folders left out."""
    found = {}
    for here, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(here, d))]:
            path = Path(here, name)
            if (digest := _digest_at(path)) is not None:
                found[str(path.relative_to(folder))] = digest
    return found


def _free_name(path: Path) -> Path:
    for n in range(1, 10_000):
        candidate = path.with_name(f"{path.name}.mine" + (f".{n}" if n > 1 else ""))
        if not os.path.lexists(candidate):
            return candidate
    raise DataError(f"no free name to keep {path} under")


def _real_folder(target: Path, rel: str, kept: list[str]) -> Path:
    """target/rel's parent as a real folder: a student's file or link in the way is kept under a free name."""
    here = target
    for part in Path(rel).parts[:-1]:
        here = here / part
        if os.path.islink(here) or (os.path.lexists(here) and not here.is_dir()):
            aside = _free_name(here)
            os.rename(here, aside)
            kept.append(str(aside.relative_to(target)))
        here.mkdir(exist_ok=True)
    return here


def merge(work: Path, target: Path, before: dict[str, str] | None) -> tuple[dict[str, str], list[str]]:
    """Move the new version (work) into target: what the old version brought (before) is replaced or removed when the
    student left it as it came; anything else of the student's stays, under a free name where the new version needs
    its place. Returns (what the new version brought, what was kept aside)."""
    brought, kept = _listing(work), []
    for rel, digest in sorted(brought.items()):
        dest = target / rel
        _real_folder(target, rel, kept)
        now = _digest_at(dest) if os.path.lexists(dest) else None
        if now == digest:
            os.unlink(work / rel)  # already there as it should be (a restart after a crash)
            continue
        if os.path.lexists(dest) and (dest.is_dir() and not dest.is_symlink() or (before or {}).get(rel) != now):
            aside = _free_name(dest)
            os.rename(dest, aside)
            kept.append(str(aside.relative_to(target)))
        os.rename(work / rel, dest)
    for rel, digest in (before or {}).items():
        if rel not in brought and _digest_at(target / rel) == digest:
            os.unlink(target / rel)  # the old version's file, untouched by the student, gone from the new version
    return brought, kept


def _unpack_into(archive_path: Path, target: Path, dest_root: Path, entry: dict) -> str:
    """Unpack into a fresh folder beside target, then put it in place (a first unpack) or merge it (an update)."""
    record = _read_stamp(dest_root, entry["path"])
    if (target.exists() or target.is_symlink()) and record is None:
        raise DataError(f"~/data/{entry['path']} exists and did not come from the course; move it away and restart")
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise DataError(f"~/data/{entry['path']} is no longer a folder; move it away and restart")
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.unpacking-"))
    try:
        count = unpack(archive_path, work)
        if not target.exists():
            brought = _listing(work)
            os.replace(work, target)
            _write_stamp(dest_root, entry, brought)
            return f"unpacked {count:,} entries from a verified archive"
        brought, kept = merge(work, target, record.get("files"))
        _write_stamp(dest_root, entry, brought)
        note = f"; kept your own changes as {', '.join(kept[:5])}{' ...' if len(kept) > 5 else ''}" if kept else ""
        return f"updated {count:,} entries from a new version of the archive, your other files untouched{note}"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _download(url: str, handle, timeout: float) -> str:
    """Stream url into handle; returns the sha256 of what was written."""
    digest = hashlib.sha256()
    try:
        with _opener(url).open(url, timeout=timeout) as response:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                handle.write(chunk)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code in (408, 429):
            raise Transient(f"HTTP {exc.code} {exc.reason}") from exc
        raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(exc, urllib.error.URLError) and url.startswith("file:"):
            raise DataError(f"{url}: {reason}") from exc
        raise Transient(str(reason)) from exc
    return digest.hexdigest()


def _download_verified(entry: dict, folder: Path, timeout: float) -> str:
    """Download entry's URL into a hidden temporary file in folder, with retries; its path once the sha256 matches."""
    for attempt in range(1, RETRIES + 1):
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".coursekit-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                actual = _download(entry["url"], handle, timeout)
                handle.flush()
                os.fsync(handle.fileno())
            if actual != entry["sha256"]:
                raise DataError(f"sha256 mismatch: expected {entry['sha256']}, got {actual}")
            os.chmod(temp, 0o644)  # mkstemp makes 0600; baked-in data must be readable by the notebook user
            kept, temp = temp, None
            return kept
        except Transient as exc:
            if attempt == RETRIES:
                raise DataError(f"{entry['url']}: {exc} (gave up after {RETRIES} attempts)") from exc
            wait = BACKOFF * 2 ** (attempt - 1)
            log(f"{entry['path']}: {exc}; retrying in {wait:g}s ({attempt}/{RETRIES})")
            time.sleep(wait)
        finally:
            if temp and os.path.exists(temp):
                os.unlink(temp)
    raise AssertionError("unreachable")


def fetch_one(dest_root: Path, entry: dict, timeout: float = 60) -> str:
    """Fetch one entry into dest_root atomically (unpacking an archive when asked); returns what happened."""
    if is_verified(dest_root, entry):
        return "present, unpacked" if entry.get("unpack") else "present, verified"
    target = dest_root / entry["path"]
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = _download_verified(entry, target.parent, timeout)
    try:
        if entry.get("unpack"):
            return _unpack_into(Path(temp), target, dest_root, entry)
        os.replace(temp, target)
        _write_stamp(dest_root, entry)
        return f"fetched {target.stat().st_size:,} bytes, verified"
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def load_manifest(path: Path) -> list[dict]:
    """The manifest: a JSON list of {url, sha256, path}."""
    return json.loads(path.read_text())


def fetch(manifest: list[dict], dest_root: Path) -> list[str]:
    """Fetch every entry; returns the failures (empty when all is well)."""
    failures = []
    for entry in manifest:
        try:
            log(f"{entry['path']}: {fetch_one(dest_root, entry)}")
        except Exception as exc:  # noqa: BLE001 - one entry's trouble never stops the next (nor Jupyter's start)
            why = str(exc) if isinstance(exc, DataError) else f"unexpected {type(exc).__name__}: {str(exc)[:300]}"
            failures.append(f"{entry['path']}: {why}")
            log(f"ERROR: {entry['path']}: {why}")
    return failures


def verify(manifest: list[dict], dest_root: Path) -> list[str]:
    """Entries that are missing or do not match their checksum."""
    return [f"{e['path']}: missing or sha256 mismatch" for e in manifest if not is_verified(dest_root, e)]


def main(argv: list[str] | None = None) -> int:
    """Command line for the container hook and the image build."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] not in ("fetch", "verify"):
        print(__doc__, file=sys.stderr)
        return 2
    command, manifest_path, dest = args
    manifest = load_manifest(Path(manifest_path))
    failures = (fetch if command == "fetch" else verify)(manifest, Path(dest).expanduser())
    for failure in failures if command == "verify" else ():
        log(f"ERROR: {failure}")
    if not failures:
        log(f"{len(manifest)} file(s) in {dest} verified")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
