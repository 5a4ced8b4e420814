"""Serve a seat's home folder as one tar stream, for coursekit's archive: every file as the student has it; and take
one in (a PUT of the same path), for `coursekit swap`, which copies a student's work onto a spare.

Standard library only: it runs on each seat VM (systemd unit coursekit-homestream, which leaves it no capability
but reading and becoming the student), listening on the loopback interface; Caddy passes /coursekit/home.tar to it
only with the seat's token. Each stream is read or written by a process of its own that has become the home's owner
(the seat's user) with one capability left, reading past file modes: it writes only what the student could. Jupyter's
contents API hides dot-files and cannot show links or names that are not UTF-8; this can.

The home belongs to the student, who may change it while it streams: every folder is opened relative to its
parent's descriptor with O_NOFOLLOW and every file with O_NOFOLLOW, so a folder swapped for a link mid-stream
yields the link (or nothing), never a file outside the home.

    python3 homestream.py VOLUME [PORT]     # VOLUME: the Docker volume holding /home/jovyan
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import socketserver
import stat
import subprocess
import sys
import tarfile
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import BinaryIO, Callable

PATH = "/coursekit/home.tar"
TOP = "jovyan"  # the folder name docker's own archives of /home/jovyan carry


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: a FIFO swapped in never blocks
CHUNK = 1 << 20
CAP_DAC_READ_SEARCH = 2
_CAPABILITY_VERSION_3, _PR_SET_KEEPCAPS = 0x20080522, 8


# An entry that changed since it was listed (gone, now a link, a folder now a file, a FIFO now a socket): taken as it
# is next time. Any other failure (a file it may not read) ends the stream: an archive never silently lacks a file.
_CHANGED = (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.ENXIO)


def _open(name: str | bytes, flags: int, dir_fd: int) -> int | None:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in _CHANGED:
            return None
        raise


class _Exactly:
    """size bytes from a file descriptor: zeros after a file that shrank, nothing past size if it grew (the
    archive's verification then reports the change)."""

    def __init__(self, fd: int, size: int):
        self.fd, self.left = fd, size

    def read(self, size: int = CHUNK) -> bytes:
        want = min(size if size >= 0 else CHUNK, self.left)
        data = os.read(self.fd, want) if want else b""
        if want and not data:
            data = b"\0" * want
        self.left -= len(data)
        return data


def _info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode, info.uid, info.gid, info.mtime = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)
    return info


def _walk(tar: tarfile.TarFile, dir_fd: int, prefix: str, inodes: dict) -> None:
    for name in sorted(os.listdir(dir_fd)):
        path = f"{prefix}/{os.fsdecode(name) if isinstance(name, bytes) else name}"
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed while we listed
        info = _info(path, st)
        if stat.S_ISLNK(st.st_mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dir_fd)
            tar.addfile(info)
        elif stat.S_ISDIR(st.st_mode):
            if (child := _open(name, _DIR, dir_fd)) is None:
                continue
            try:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                _walk(tar, child, path, inodes)
            finally:
                os.close(child)
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in inodes:
                info.type, info.linkname = tarfile.LNKTYPE, inodes[key]
                tar.addfile(info)
                continue
            if (fd := _open(name, _FILE, dir_fd)) is None:
                continue
            try:
                now = os.fstat(fd)
                if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != key:
                    continue  # swapped between the stat and the open
                if st.st_nlink > 1:
                    inodes[key] = path
                info.size = now.st_size
                tar.addfile(info, _Exactly(fd, now.st_size))
            finally:
                os.close(fd)
        elif stat.S_ISFIFO(st.st_mode):
            info.type = tarfile.FIFOTYPE
            tar.addfile(info)
        # sockets and devices are no student's work


def as_owner(fd: int) -> None:
    """Become the owner of the folder at fd (the seat's user) when running as root, keeping one capability: reading
    past file modes (a student's own mode-000 files are work too). Nothing else of root's is left to misuse."""
    st = os.fstat(fd)
    if os.geteuid() != 0 or st.st_uid == 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_KEEPCAPS) failed")
    os.setgroups([])
    os.setgid(st.st_gid)
    os.setuid(st.st_uid)
    header = (ctypes.c_uint32 * 2)(_CAPABILITY_VERSION_3, 0)  # {version, pid 0: this process}
    wanted = 1 << CAP_DAC_READ_SEARCH
    sets = (ctypes.c_uint32 * 6)(wanted, wanted, 0, 0, 0, 0)  # {effective, permitted, inheritable} for caps 0-31, 32-63
    if libc.capset(header, sets) != 0:
        raise OSError(ctypes.get_errno(), "capset(CAP_DAC_READ_SEARCH) failed")


def write_tar(folder: str, out: BinaryIO, drop: bool = False) -> None:
    """folder as a PAX tar under TOP/: links stored as links (never followed, at any depth), hard links once with
    their other names, any name. With drop, read it as the folder's owner (as_owner)."""
    top = os.open(folder, _DIR)
    try:
        if drop:
            as_owner(top)
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, errors="surrogateescape") as tar:
            info = _info(TOP, os.fstat(top))
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
            _walk(tar, top, TOP, {})
    finally:
        os.close(top)


class _Writer:
    """The home an uploaded tar lands in, written only through descriptors relative to it, never through a link."""

    def __init__(self, top: int):
        self.top = top
        self.folders: list[tuple[list[str], int, int]] = []  # modes and times set last: a read-only folder takes its files first

    def _parent(self, parts: list[str]) -> int:
        """A descriptor of the folder holding parts[-1], made on the way; whatever is not a folder there gives way."""
        fd = os.dup(self.top)
        try:
            for part in parts[:-1]:
                child = _open(part, _DIR, fd)
                if child is None:
                    self._clear(fd, part)
                    os.mkdir(part, 0o700, dir_fd=fd)
                    child = os.open(part, _DIR, dir_fd=fd)
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _clear(fd: int, name: str) -> None:
        """Make room for an incoming entry: a file or link of the spare's goes; a folder of its own is moved aside."""
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=fd)
            return
        n = 1
        while True:
            aside = f"{name}.before-swap" + (f"-{n}" if n > 1 else "")
            try:
                os.stat(aside, dir_fd=fd, follow_symlinks=False)
                n += 1
            except FileNotFoundError:
                os.rename(name, aside, src_dir_fd=fd, dst_dir_fd=fd)
                return

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        """One member, under TOP/, into the home; anything else in the stream is refused."""
        parts = member.name.split("/")
        if parts[0] != TOP or any(p in ("", ".", "..") for p in parts[1:]):
            raise ValueError(f"{member.name!r} is not inside {TOP}/")
        if not (member.isdir() or member.isfile() or member.issym() or member.islnk() or member.isfifo()):
            raise ValueError(f"{member.name!r} is a device; a home holds none")
        if len(parts) == 1:
            if member.isdir():
                self.folders.append(([], member.mode, member.mtime))
            return
        fd = self._parent(parts[1:])
        leaf = parts[-1]
        try:
            if member.isdir():
                if (child := _open(leaf, _DIR, fd)) is None:
                    self._clear(fd, leaf)
                    os.mkdir(leaf, 0o700, dir_fd=fd)
                else:
                    os.close(child)
                self.folders.append((parts[1:], member.mode, member.mtime))
                return
            self._clear(fd, leaf)
            if member.issym():
                os.symlink(member.linkname, leaf, dir_fd=fd)  # the student's link, kept as a link: never followed here
            elif member.islnk():
                source = member.linkname.split("/")
                if source[0] != TOP or any(p in ("", ".", "..") for p in source[1:]):
                    raise ValueError(f"{member.name!r} is a hard link to {member.linkname!r}, outside {TOP}/")
                source_fd = self._parent(source[1:])
                try:
                    os.link(source[-1], leaf, src_dir_fd=source_fd, dst_dir_fd=fd, follow_symlinks=False)
                finally:
                    os.close(source_fd)
            elif member.isfifo():
                os.mkfifo(leaf, stat.S_IMODE(member.mode), dir_fd=fd)
            elif member.isfile():
                out = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
                with os.fdopen(out, "wb") as handle:
                    shutil.copyfileobj(tar.extractfile(member), handle, CHUNK)
                    handle.flush()
                    os.fchmod(out, stat.S_IMODE(member.mode))
                    os.utime(out, (member.mtime, member.mtime))
        finally:
            os.close(fd)

    def finish(self) -> None:
        """Each folder's own mode and time, deepest first."""
        for parts, mode, mtime in sorted(self.folders, key=lambda f: -len(f[0])):
            fd = self._parent([*parts, "."]) if parts else os.dup(self.top)
            try:
                os.fchmod(fd, stat.S_IMODE(mode))
                os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)


def read_tar(folder: str, source: BinaryIO, drop: bool = False) -> int:
    """Unpack a tar stream of TOP/ (as write_tar makes it) into folder, its entries replacing what is there;
    returns how many entries. With drop, write as the folder's owner (as_owner)."""
    top = os.open(folder, _DIR)
    try:
        if drop:
            as_owner(top)
        writer = _Writer(top)
        count = 0
        with tarfile.open(fileobj=source, mode="r|", errors="surrogateescape") as tar:
            for member in tar:
                writer.add(tar, member)
                count += 1
        writer.finish()
        return count
    finally:
        os.close(top)


def volume_folder(volume: str) -> str:
    """Where Docker keeps the volume's files on this host."""
    return subprocess.run(["docker", "volume", "inspect", "-f", "{{.Mountpoint}}", volume],
                          check=True, capture_output=True, text=True, timeout=30).stdout.strip()


def handler(folder: Callable[[], str]) -> type[BaseHTTPRequestHandler]:
    """A request handler that streams folder() at PATH (GET), unpacks an upload into it (PUT), and answers 404 elsewhere."""

    class Handler(BaseHTTPRequestHandler):
        timeout = 300  # a stalled reader or sender never holds its process for ever

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != PATH:
                self.send_error(404)
                return
            where = folder()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-tar")
            self.end_headers()  # HTTP/1.0: the end of the stream is the end of the archive
            write_tar(where, self.wfile, drop=True)  # in a process of its own (_Server): the drop is for this stream

        def do_PUT(self) -> None:
            length = self.headers.get("Content-Length", "")
            if self.path.split("?", 1)[0] != PATH:
                self.send_error(404)
                return
            if not length.isdigit():
                self.send_error(411, "a home is uploaded with its Content-Length")
                return
            try:
                entries = read_tar(folder(), Body(self.rfile, int(length)), drop=True)
            except (ValueError, tarfile.TarError, OSError) as exc:
                self.send_error(400 if not isinstance(exc, OSError) else 500, f"the home was not unpacked whole: {exc}"[:300])
                return
            body = json.dumps({"entries": entries}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            sys.stderr.write(f"coursekit-homestream: {format % args}\n")

    return Handler


class Body:
    """A request's body: Content-Length bytes of the connection, not one more."""

    def __init__(self, stream: BinaryIO, length: int):
        self.stream, self.left = stream, length

    def read(self, size: int = -1) -> bytes:
        want = self.left if size < 0 else min(size, self.left)
        data = self.stream.read(want) if want else b""
        if want and not data:
            raise ConnectionError("the sender went away before the end of the upload")
        self.left -= len(data)
        return data


class _Server(socketserver.ForkingMixIn, HTTPServer):
    """Each stream in a child process, which becomes the home's owner; the server stays able to find volumes."""

    def handle_error(self, request, client_address) -> None:
        """A reader that goes away mid-stream is one line, not a traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            sys.stderr.write("coursekit-homestream: the reader went away before the end of the stream\n")
            return
        super().handle_error(request, client_address)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    volume, port = args[0], int(args[1]) if len(args) == 2 else 8890
    _Server(("127.0.0.1", port), handler(lambda: volume_folder(volume))).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
