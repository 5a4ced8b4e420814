"""Serve a seat's home folder as one tar stream, for coursekit's archive: every file as the student has it.

Standard library only: it runs on each seat VM as root (systemd unit coursekit-homestream), listening on
the loopback interface; Caddy passes /coursekit/home.tar to it only with the seat's token. Jupyter's
contents API hides dot-files and cannot show links or names that are not UTF-8; this can.

    python3 homestream.py VOLUME [PORT]     # VOLUME: the Docker volume holding /home/jovyan
"""
from __future__ import annotations

import subprocess
import sys
import tarfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import BinaryIO, Callable

PATH = "/coursekit/home.tar"
TOP = "jovyan"  # the folder name docker's own archives of /home/jovyan carry


def write_tar(folder: str, out: BinaryIO) -> None:
    """folder as a PAX tar under TOP/: links stored as links, hard links once with their other names, any name."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, errors="surrogateescape") as tar:
        tar.add(folder, arcname=TOP)  # sockets are left out by tarfile itself; FIFOs go in as FIFOs


def volume_folder(volume: str) -> str:
    """Where Docker keeps the volume's files on this host."""
    return subprocess.run(["docker", "volume", "inspect", "-f", "{{.Mountpoint}}", volume],
                          check=True, capture_output=True, text=True, timeout=30).stdout.strip()


def handler(folder: Callable[[], str]) -> type[BaseHTTPRequestHandler]:
    """A request handler that streams folder() at PATH and answers 404 elsewhere."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != PATH:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-tar")
            self.end_headers()  # HTTP/1.0: the end of the stream is the end of the archive
            write_tar(folder(), self.wfile)

        def log_message(self, format: str, *args) -> None:
            sys.stderr.write(f"coursekit-homestream: {format % args}\n")

    return Handler


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    volume, port = args[0], int(args[1]) if len(args) == 2 else 8890
    ThreadingHTTPServer(("127.0.0.1", port), handler(lambda: volume_folder(volume))).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
