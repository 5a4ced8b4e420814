"""Fetch and verify the course data manifest into ~/data.

Standard library only: the image runs this file as a script at container start
(a docker-stacks before-notebook.d hook) and at build time for `when: build` data.

    python3 data.py fetch MANIFEST DEST     fetch what is missing, verify everything
    python3 data.py verify MANIFEST DEST    verify only; exit 1 if anything is missing or wrong
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import ssl
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
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
        return path.is_dir() and record == {"unpacked": entry["sha256"]}
    if not path.is_file():
        return False
    if record == {"stat": _stat_key(path), "sha256": entry["sha256"]}:
        return True
    if sha256_file(path) != entry["sha256"]:
        return False
    _write_stamp(dest_root, entry)
    return True


def _write_stamp(dest_root: Path, entry: dict) -> None:
    stamp = _stamp_path(dest_root, entry["path"])
    stamp.parent.mkdir(parents=True, exist_ok=True)
    record = {"unpacked": entry["sha256"]} if entry.get("unpack") else {
        "stat": _stat_key(dest_root / entry["path"]), "sha256": entry["sha256"]}
    stamp.write_text(json.dumps(record))


# Archives ------------------------------------------------------------------------------------------

MAX_MEMBERS = 1_000_000
MAX_UNPACKED = 256 * 2**30  # bytes: a zip bomb stops here, real neuroimaging data sets fit


def _inside(root: str, name: str) -> str:
    """name as a path relative to root; DataError if it is absolute or climbs out."""
    normal = os.path.normpath(name.replace("\\", "/"))
    if os.path.isabs(normal) or normal == ".." or normal.startswith("../") or ":" in normal.split("/")[0]:
        raise DataError(f"the archive holds {name!r}, which points outside its folder; refusing to unpack it")
    return normal


def _check_tar(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members, total = [], 0
    for member in tar:
        if len(members) >= MAX_MEMBERS:
            raise DataError(f"the archive holds more than {MAX_MEMBERS:,} entries; refusing to unpack it")
        name = _inside(".", member.name)
        if member.issym():
            _inside(".", os.path.join(os.path.dirname(name), member.linkname))
            if os.path.isabs(member.linkname):
                raise DataError(f"the archive's link {member.name!r} points to {member.linkname!r}, outside its folder")
        elif member.islnk():
            _inside(".", member.linkname)
        elif not (member.isfile() or member.isdir()):
            raise DataError(f"the archive holds {member.name!r}, a device or FIFO; refusing to unpack it")
        total += member.size
        if total > MAX_UNPACKED:
            raise DataError(f"the archive unpacks to more than {MAX_UNPACKED // 2**30} GiB; refusing to unpack it")
        member.mode = (member.mode | 0o600) & 0o755 if not member.isdir() else 0o755  # no set-id bits, readable
        member.uid = member.gid = os.getuid()
        members.append(member)
    return members


def _check_zip(archive: zipfile.ZipFile) -> None:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise DataError(f"the archive holds more than {MAX_MEMBERS:,} entries; refusing to unpack it")
    if sum(i.file_size for i in infos) > MAX_UNPACKED:
        raise DataError(f"the archive unpacks to more than {MAX_UNPACKED // 2**30} GiB; refusing to unpack it")
    for info in infos:
        _inside(".", info.filename)
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise DataError(f"the archive holds the link {info.filename!r}; zip links are not unpacked")


def unpack(archive_path: Path, dest: Path) -> int:
    """Unpack a zip or tar (plain, gz, bz2, xz) into dest after checking every entry; returns the entries."""
    if zipfile.is_zipfile(archive_path):
        with zipfile.ZipFile(archive_path) as archive:
            _check_zip(archive)
            archive.extractall(dest)
            return len(archive.infolist())
    try:
        with tarfile.open(archive_path, "r:*") as tar:
            members = _check_tar(tar)
            # Every entry is checked above; Python's own "data" filter, where it has one, checks again.
            tar.extractall(dest, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
            return len(members)
    except tarfile.TarError as exc:
        raise DataError(f"not a zip or tar archive ({exc}); set unpack: false to keep the file as it is") from None


def _unpack_into(archive_path: Path, target: Path, dest_root: Path, entry: dict) -> int:
    """Unpack into a fresh folder beside target, then put it in place: a crash never leaves half a folder."""
    if target.exists() and _read_stamp(dest_root, entry["path"]) is None:
        raise DataError(f"~/data/{entry['path']} exists and did not come from the course; move it away and restart")
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.unpacking-"))
    try:
        count = unpack(archive_path, work)
        if target.exists():  # an older archive of the course: keep it beside, the student may have worked in it
            previous = target.with_name(target.name + ".previous")
            shutil.rmtree(previous, ignore_errors=True)
            os.replace(target, previous)
        os.replace(work, target)
        return count
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
            files = _unpack_into(Path(temp), target, dest_root, entry)
            _write_stamp(dest_root, entry)
            return f"unpacked {files:,} files from a verified archive"
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
        except DataError as exc:
            failures.append(f"{entry['path']}: {exc}")
            log(f"ERROR: {entry['path']}: {exc}")
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
