"""An emulator of the Jetstream2 (OpenStack) APIs that coursekit's openstack provider calls.

Keystone v3 (application credentials, service catalog), Nova (flavors, servers with tags and metadata,
keypairs, limits), Neutron (networks, ports, floating IPs with tags, security groups and rules, quotas)
and Glance (images), served over HTTP on 127.0.0.1 for the real openstacksdk. Responses follow the
published API references. State is kept in memory. Every address it hands out lies in 127.0.0.0/8, so
whatever probes a seat stays on this machine; each emulator picks its own /16s for fixed and floating
addresses, so test runs side by side on one machine never collide.

Faults (attributes of Emulator, switchable while it runs):
    boot_seconds       BUILD lasts this long before ACTIVE
    latency            seconds added to every request
    error_once         server names that go to ERROR (with a fault) on their first boot only
    stuck              server names that never leave BUILD
    quota_fail_at      the k-th server create (1-based) fails with 403 quota exceeded
    create_503         server names whose create returns 503 although the server was created
    delete_seconds     deletes take this long (the server shows task_state "deleting" meanwhile)
    floating_ip_quota  floating IPs allowed; more gives 409 OverQuota
    fip_conflicts      the next N floating-IP creates get 409 OverQuota, then they succeed
    power_seconds      os-stop / os-start take this long; shelve_seconds: shelving; unshelving boots anew
    wrong_cert         server names whose VM presents another certificate than its user data gave it
    swift_put_fail     object names whose uploads get 503; swift_corrupt: object names stored with a flipped byte
The object store (Swift v1: /info, account, containers, objects with X-Object-Meta-* metadata, listings with
prefix/marker/limit) keeps objects in memory, so archives uploaded there can be read back and compared.
Servers take the actions os-stop, os-start, shelve and unshelve (POST /servers/{id}/action) through
ACTIVE, SHUTOFF and SHELVED_OFFLOADED, and tests can power off, shelve or break a VM behind the API's back.
When a server turns ACTIVE with a floating IP, the emulated VM answers like the seat's Jupyter
(SeatStandIn): HTTPS on the floating address with the certificate from its user data, guarded by the
JUPYTER_TOKEN from it; its home folder is a real folder on this machine that survives power-offs and
shelving, served as a tar at /coursekit/home.tar by the VM's own streamer (fleet/homestream.py).
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import importlib.util
import itertools
import json
import os
import random
import re
import shlex
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, unquote, urlparse

import yaml
from threadserver import serve, stop
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage

PROJECT = {"id": "f1a2b3c4d5e6", "name": "TRA160003", "domain": {"id": "default", "name": "Default"}}
_HOMESTREAM = Path(__file__).resolve().parents[1] / "{{cookiecutter.course_slug}}" / "coursekit" / "fleet" / "homestream.py"
def _template_module(name: str, file: str):
    """A stdlib-only module of the template's fleet/ (what runs on the VMs), loaded without the package."""
    spec = importlib.util.spec_from_file_location(name, _HOMESTREAM.with_name(file))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


homestream = _template_module("coursekit_homestream", "homestream.py")
gatewayroutes = _template_module("coursekit_gatewayroutes", "gatewayroutes.py")
gateway = gatewayroutes.render  # the renderer it loads: the pages the gateway VM serves
WELCOME = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n'
FLAVORS = [
    ("1", "m3.tiny", 1, 3), ("2", "m3.small", 2, 6), ("3", "m3.quad", 4, 15),
    ("4", "m3.medium", 8, 30), ("5", "m3.large", 16, 60), ("7", "m3.xl", 32, 125),
]


_NETS = itertools.count(random.randrange(1000))


def _networks() -> tuple[int, int]:
    """Two /16s of 127.0.0.0/8 no other emulator running now holds: each pytest-xdist worker draws from its own share
    of 32-254, and emulators of one worker take turns through it (a seat's port 443 on a shared address would be
    taken twice)."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    share = [n for n in range(32, 255) if n % workers == worker % workers]
    turn = next(_NETS) * 2
    return share[turn % len(share)], share[(turn + 1) % len(share)]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class HttpError(Exception):
    def __init__(self, status: int, body: dict):
        super().__init__(status)
        self.status, self.body = status, body


def _nova_error(status: int, kind: str, message: str) -> HttpError:
    return HttpError(status, {kind: {"code": status, "message": message}})


def _neutron_error(status: int, kind: str, message: str) -> HttpError:
    return HttpError(status, {"NeutronError": {"type": kind, "message": message, "detail": ""}})


def _close_if_body_unread(handler: BaseHTTPRequestHandler, status: int) -> None:
    """A refused request's body was never read: end the connection rather than read it as the next request."""
    if status >= 400 and handler.command in ("POST", "PUT"):
        handler.send_header("Connection", "close")
        handler.close_connection = True


class _Server(ThreadingHTTPServer):
    """An HTTP server that does not look its own address up in DNS when it binds: on a machine without
    reverse DNS for 127.x.y.z that lookup waits for a resolver timeout, for every stand-in."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that ends a kept-alive connection (without TLS's close_notify, as http.client does) is no error."""
        if isinstance(sys.exc_info()[1], (ssl.SSLEOFError, ConnectionError)):
            return
        super().handle_error(request, client_address)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


KERNELSPECS = ("python3",)


# A kernel's process: started with the kernel (as ipykernel's is, so its start-up is part of the kernel's), it runs
# the one cell it is sent.
KERNEL_RUNNER = 'import sys; exec(compile(sys.stdin.read(), "<cell>", "exec"), {"__name__": "__main__"})'


def kernel_process(home: Path) -> subprocess.Popen:
    """A Python of this machine waiting for a cell, with HOME at the seat's home."""
    return subprocess.Popen([sys.executable, "-c", KERNEL_RUNNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=home,
                            env={"HOME": str(home), "PATH": os.environ.get("PATH", "")})


class KernelChannel:
    """Jupyter's kernel websocket (wsproto over the request's own socket): execute_request messages run their code
    in the kernel's Python, with HOME at the seat's home; stream, error and idle status come back as Jupyter
    sends them. A kernel that dies says so (restarting, then dead) and runs nothing."""

    def __init__(self, handler: BaseHTTPRequestHandler, home: Path, dies: bool, process: subprocess.Popen | None = None):
        self.handler, self.home, self.dies, self.process = handler, home, dies, process
        self.sock = handler.connection
        self.ws = WSConnection(ConnectionType.SERVER)

    def send(self, msg_type: str, content: dict, parent: dict, channel: str = "iopub") -> None:
        message = {"header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": parent.get("session", ""),
                              "username": "", "version": "5.3", "date": _now()},
                   "msg_type": msg_type, "parent_header": parent, "metadata": {}, "content": content, "channel": channel}
        self.sock.sendall(self.ws.send(TextMessage(data=json.dumps(message))))

    def serve(self) -> None:
        head = f"{self.handler.requestline}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in self.handler.headers.items()) + "\r\n"
        self.ws.receive_data(head.encode())
        text = ""
        for event in self.ws.events():
            if isinstance(event, Request):
                self.sock.sendall(self.ws.send(AcceptConnection()))
        if self.dies:
            self.send("status", {"execution_state": "restarting"}, {})
            self.send("status", {"execution_state": "dead"}, {})
        while data := self.sock.recv(65536):
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, CloseConnection):
                    self.sock.sendall(self.ws.send(event.response()))
                    return
                if isinstance(event, Ping):
                    self.sock.sendall(self.ws.send(event.response()))
                elif isinstance(event, TextMessage):
                    text += event.data
                    if event.message_finished:
                        self.execute(json.loads(text))
                        text = ""

    def execute(self, request: dict) -> None:
        if self.dies or request.get("header", {}).get("msg_type") != "execute_request":
            return
        parent = request["header"]
        self.send("status", {"execution_state": "busy"}, parent)
        process, self.process = self.process or kernel_process(self.home), None  # one cell per process
        try:
            stdout, stderr = process.communicate(request["content"]["code"], timeout=120)
        finally:
            process.kill()
        if stdout:
            self.send("stream", {"name": "stdout", "text": stdout}, parent)
        if process.returncode:
            self.send("error", {"ename": "Error", "evalue": stderr.strip()[-300:], "traceback": []}, parent)
        self.send("execute_reply", {"status": "error" if process.returncode else "ok"}, parent, "shell")
        self.send("status", {"execution_state": "idle"}, parent)


class SeatStandIn:
    """What a booted seat VM shows the world: HTTPS on its floating address, with Jupyter Server's
    /api/status and contents API over a real home folder (hidden files hidden, as Jupyter does), the
    bootstrap's report of the image it runs, and the home streamer, all guarded by the seat's token."""

    def __init__(self, address: str, port: int, token: str, image: str, cert: tuple[str, str] | None, home: Path,
                 prefix: str = ""):
        self.home = home
        self.broken = False  # when set, the contents API and the home streamer answer 500, as a wedged server would
        self.image = image  # what the bootstrap reports at /coursekit/seat.json
        self.started = _now()
        self.last_activity = self.started  # Jupyter's activity clock: moves when the student does something (a PUT here)
        self.token_requests = 0  # requests that carried a token: a VM with the wrong certificate must see none
        self.status_answer: dict | None = None  # a student's own Jupyter config can make /api/status say anything
        self.drip_seconds = 0.0  # when set, /api/status sends its body one byte at a time, this long apart
        self.token = token  # what Jupyter accepts: a test may change it, as a student's own config can
        self.kernel_dies = False  # when set, every kernel dies as it starts (a student's config that breaks it)
        self.kernel_seconds: Callable[[], float] = lambda: 0.0  # how long a kernel takes to start (the emulator's setting)
        self.kernels: dict[str, tuple[str, subprocess.Popen | None]] = {}  # kernel id → (kernelspec name, its process)
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Jupyter's own server and Caddy
            disable_nagle_algorithm = True  # headers and body leave at once, as a real server's do (no 40 ms ACK wait)

            def _authorized(self) -> bool:
                given = self.headers.get("Authorization", "").removeprefix("token ")
                query = parse_qs(urlparse(self.path).query).get("token", [""])[0]
                if given or query:
                    stand_in.token_requests += 1
                return bool(stand_in.token) and stand_in.token in (given, query)

            def _reply(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                _close_if_body_unread(self, status)
                self.end_headers()
                self.wfile.write(data)

            def _drip(self, data: bytes, seconds: float) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    for byte in data:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(seconds)
                except OSError:
                    pass  # the client gave up, as it should

            def _path(self) -> str | None:
                """The request's path below the seat's base URL (None: outside it)."""
                path = urlparse(self.path).path
                if prefix and not (path + "/").startswith(prefix + "/"):
                    return None
                return "/" + path[len(prefix):].lstrip("/") if prefix else path

            def do_GET(self):
                url = urlparse(self.path)
                url = url._replace(path=self._path())
                if url.path is None:
                    return self._reply(404, {"message": "not under this seat's base URL"})
                if not self._authorized():
                    return self._reply(403, {"message": "Forbidden"})
                if url.path == "/api/status" and stand_in.drip_seconds:
                    return self._drip(json.dumps({"started": stand_in.started}).encode(), stand_in.drip_seconds)
                if url.path == "/api/status":
                    return self._reply(200, stand_in.status_answer or {
                        "started": stand_in.started, "last_activity": stand_in.last_activity, "connections": 0, "kernels": 0})
                if url.path == "/coursekit/seat.json":
                    return self._reply(200, {"image": stand_in.image})
                if url.path.startswith("/api/kernels/") and url.path.endswith("/channels"):
                    return self._channels(url.path.split("/")[3])
                if url.path == homestream.PATH and stand_in.broken:
                    return self._reply(500, {"message": "Internal Server Error"})
                if url.path == homestream.PATH:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-tar")
                    self.send_header("Connection", "close")  # the end of the stream is the end of the archive
                    self.close_connection = True
                    self.end_headers()
                    return homestream.write_tar(str(stand_in.home), self.wfile)
                if url.path.startswith("/api/contents") and not stand_in.broken:
                    return self._reply(*stand_in.get(url.path.removeprefix("/api/contents").strip("/")))
                self._reply(500 if stand_in.broken else 404, {"message": "not here"})

            def do_POST(self):
                path = self._path()
                if path is None or not self._authorized():
                    return self._reply(404 if path is None else 403, {"message": "no"})
                if path != "/api/kernels":
                    return self._reply(404, {"message": "not here"})
                name = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}").get("name", "python3")
                if name not in KERNELSPECS:
                    return self._reply(404, {"message": f"No such kernel named {name}"})
                process = None if stand_in.kernel_dies else kernel_process(stand_in.home)
                time.sleep(stand_in.kernel_seconds())
                kernel = str(uuid.uuid4())
                stand_in.kernels[kernel] = (name, process)
                self._reply(201, {"id": kernel, "name": name, "execution_state": "starting"})

            def do_DELETE(self):
                path = self._path()
                if path is None or not self._authorized():
                    return self._reply(404 if path is None else 403, {"message": "no"})
                kernel = path.removeprefix("/api/kernels/")
                if (gone := stand_in.kernels.pop(kernel, None)) is None:
                    return self._reply(404, {"message": "no such kernel"})
                if gone[1] is not None:
                    gone[1].kill()
                    gone[1].communicate()
                self.send_response(204)
                self.end_headers()

            def _channels(self, kernel: str) -> None:
                """A kernel's websocket: each execute_request runs its code in a Python of this machine, in the home."""
                if kernel not in stand_in.kernels:
                    return self._reply(404, {"message": "no such kernel"})
                name, process = stand_in.kernels[kernel]
                stand_in.kernels[kernel] = (name, None)  # the channel runs its first cell in the kernel's process
                KernelChannel(self, stand_in.home, stand_in.kernel_dies, process).serve()
                self.close_connection = True  # the websocket had the connection

            def do_PUT(self):
                url = urlparse(self.path)
                url = url._replace(path=self._path())
                if url.path is None:
                    return self._reply(404, {"message": "not under this seat's base URL"})
                if not self._authorized():
                    return self._reply(403, {"message": "Forbidden"})
                if url.path == homestream.PATH:  # the VM's streamer taking a home in (a swap onto this seat)
                    body = homestream.Body(self.rfile, int(self.headers.get("Content-Length") or 0))
                    return self._reply(200, {"entries": homestream.read_tar(str(stand_in.home), body)})
                model = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                content = model["content"]
                data = base64.b64decode(content) if model.get("format") == "base64" else content.encode()
                path = url.path.removeprefix("/api/contents").strip("/")
                if any(part.startswith(".") for part in path.split("/")):
                    return self._reply(400, {"message": f"Cannot create file or directory {path!r}: it is hidden"})
                target = stand_in.home / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                stand_in.last_activity = _now()
                self._reply(201, {"name": path.rsplit("/", 1)[-1], "path": path, "type": "file"})

            def log_message(self, *args):
                pass

        self.httpd = _Server((address, port), Handler)
        if cert:  # behind a gateway a seat serves plain HTTP on the private network
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*cert)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        serve(self.httpd)

    def get(self, path: str) -> tuple[int, dict]:
        """A contents-API model of path: a directory listing or a file in base64; hidden paths do not exist."""
        target = self.home / path
        if any(part.startswith(".") for part in Path(path).parts) or not target.exists():
            return 404, {"message": f"No such file or directory: {path}"}
        name = path.rsplit("/", 1)[-1]
        if target.is_file():
            return 200, {"name": name, "path": path, "type": "file", "format": "base64",
                         "content": base64.b64encode(target.read_bytes()).decode()}
        children = [{"name": child.name, "path": f"{path}/{child.name}".strip("/"), "content": None,
                     "type": "directory" if child.is_dir() else ("notebook" if child.suffix == ".ipynb" else "file")}
                    for child in sorted(target.iterdir()) if not child.name.startswith(".")]
        return 200, {"name": name, "path": path, "type": "directory", "format": "json", "content": children}

    def stop(self) -> None:
        stop(self.httpd)


class GatewayStandIn:
    """What the course's gateway VM shows the world: HTTPS on its floating address with the certificate from its
    user data; /coursekit/routes takes the routes with the gateway's token (gatewayroutes.py's own parser);
    /<seat>/... is forwarded to the seat's private address, with a starting page when the seat does not answer,
    its paused page when it is paused, and a not-found page for a seat it has no route for."""

    def __init__(self, address: str, port: int, token: str, cert: tuple[str, str]):
        self.routes: dict[str, object] = {}
        self.puts = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Caddy
            disable_nagle_algorithm = True

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                _close_if_body_unread(self, status)
                self.end_headers()
                self.wfile.write(body)

            def _control(self, method: str) -> None:
                if self.headers.get("Authorization", "") != f"token {token}" or not token:
                    return self._send(403, b'{"message": "no"}')
                if method == "PUT":
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                    try:
                        routes = gatewayroutes.parse_routes(body)
                    except (ValueError, TypeError, AttributeError) as exc:
                        return self._send(400, json.dumps({"message": str(exc)}).encode())
                    stand_in.routes = {r.seat: r for r in routes}
                    stand_in.puts += 1
                listed = [vars(r) for r in stand_in.routes.values()]
                self._send(200, json.dumps({"routes": listed}).encode())

            def _forward(self, method: str) -> None:
                path = urlparse(self.path).path
                if path.startswith("/coursekit/"):
                    return self._control(method)
                seat = path.strip("/").split("/", 1)[0]
                route = stand_in.routes.get(seat)
                if route is None:
                    return self._send(404, gateway.page(*gateway.NO_SEAT).encode(), "text/html")
                if not route.upstream:
                    return self._send(503, gateway.paused_page(route).encode(), "text/html")
                host, _, upstream_port = route.upstream.rpartition(":")
                if self.headers.get("Upgrade", "").lower() == "websocket":
                    return self._tunnel(host, int(upstream_port))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method in ("PUT", "POST") else None
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
                try:
                    connection = http.client.HTTPConnection(host, int(upstream_port), timeout=30)
                    connection.request(method, self.path, body=body, headers=headers)
                    answer = connection.getresponse()
                    data = answer.read()
                    connection.close()
                except OSError:
                    return self._send(503, gateway.page(*gateway.STARTING, refresh=True).encode(), "text/html")
                self._send(answer.status, data, answer.getheader("Content-Type") or "application/octet-stream")

            def _tunnel(self, host: str, port: int) -> None:
                """A websocket passed through both ways, as Caddy's reverse_proxy does."""
                import socket

                upstream = socket.create_connection((host, port), timeout=30)
                head = f"{self.requestline}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in self.headers.items()) + "\r\n"
                upstream.sendall(head.encode())

                def pipe(source, target) -> None:
                    try:
                        while data := source.recv(65536):
                            target.sendall(data)
                    except OSError:
                        pass
                    for end in (source, target):
                        with contextlib.suppress(OSError):
                            end.shutdown(socket.SHUT_RDWR)

                back = threading.Thread(target=pipe, args=(upstream, self.connection), daemon=True)
                back.start()
                pipe(self.connection, upstream)
                back.join(30)
                upstream.close()
                self.close_connection = True

            def do_GET(self):
                self._forward("GET")

            def do_PUT(self):
                self._forward("PUT")

            def do_POST(self):
                self._forward("POST")

            def do_DELETE(self):
                self._forward("DELETE")

            def log_message(self, *args):
                pass

        self.httpd = _Server((address, port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*cert)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        serve(self.httpd)

    def stop(self) -> None:
        stop(self.httpd)


class Emulator:
    """The cloud: start() serves it, stop() ends it; `calls` counts API requests."""

    def __init__(self, seat_port: int = 443):
        self.boot_seconds = 0.5
        self.seat_kernel_seconds = 0.0  # how long a seat's kernel takes to start
        self.latency = 0.0
        self.error_once: set[str] = set()
        self.stuck: set[str] = set()
        self.quota_fail_at: int | None = None
        self.create_503: set[str] = set()
        self.delete_seconds = 0.0
        self.update_seconds = 0.5  # a VM's updater notices new metadata, pulls and restarts in this time
        self.updates_fail: set[str] = set()  # servers (by name) whose updater never switches images
        self.power_seconds = 0.2
        self.shelve_seconds = 0.3
        self.wrong_cert: set[str] = set()
        self.floating_ip_quota = 25
        self.swift_put_fail: set[str] = set()  # object names whose uploads are answered 503 (nothing stored)
        self.swift_corrupt: set[str] = set()  # object names stored with one byte flipped (a bad disk); reads show it
        self.container_meta: dict[str, dict[str, str]] = {}  # container → its X-Container-Meta-* (a TempURL key)
        self.swift_max_file_size = 5 * 2**30 + 2  # Swift's default: larger uploads must be segmented
        self.containers: dict[str, dict[str, dict]] = {}
        self.fip_conflicts = 0  # the next N floating-IP creates get 409 OverQuota (another project's race)
        self.max_instances, self.max_cores, self.max_ram_mb = 100, 800, 3_200_000
        self.seat_port = seat_port
        self.calls: list[str] = []
        self.credential = {"id": "coursekit-test-appcred", "secret": uuid.uuid4().hex}
        self._lock = threading.RLock()
        self._ids = itertools.count(2)
        self._fip_numbers = itertools.count(2)
        self.fixed_net, self.floating_net = _networks()  # 127.X.0.0/16 each, per emulator
        self._creates = 0
        self._errored: set[str] = set()
        self.servers: dict[str, dict] = {}
        self.ports: dict[str, dict] = {}
        self.floating_ips: dict[str, dict] = {}
        self.security_groups: dict[str, dict] = {}
        self.stand_ins: dict[str, SeatStandIn] = {}
        self.networks = {
            "net-auto": {"id": "net-auto", "name": "auto_allocated_network", "status": "ACTIVE", "router:external": False,
                         "subnets": ["subnet-auto"], "tags": [], "project_id": PROJECT["id"], "shared": False},
            "net-public": {"id": "net-public", "name": "public", "status": "ACTIVE", "router:external": True,
                           "subnets": ["subnet-public"], "tags": [], "project_id": "admin", "shared": True},
        }
        self.images = {"img-u22": {"id": "img-u22", "name": "Featured-Ubuntu22", "status": "active", "visibility": "public",
                                   "container_format": "bare", "disk_format": "raw", "min_disk": 0, "min_ram": 0,
                                   "tags": [], "created_at": _now(), "updated_at": _now()}}
        self.keypairs = {"instructor": {"name": "instructor", "fingerprint": "aa:bb", "public_key": "ssh-ed25519 AAAA test", "type": "ssh"}}
        self._cert_dir = tempfile.TemporaryDirectory()
        self._cert = self._make_cert()

    # Serving -----------------------------------------------------------------------------------

    def start(self) -> str:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _handle(self, method: str):
                raw = self._body()
                if self.path.startswith("/swift"):
                    status, headers, data = emulator.handle_swift(method, self.path, raw, self.headers)
                else:
                    body = json.loads(raw or b"null") if raw else None
                    status, headers, payload = emulator.handle(method, self.path, body, self.headers)
                    data = b"" if payload is None else json.dumps(payload).encode()
                    headers = {**headers, "Content-Type": "application/json"}
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(data)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while (size := int(self.rfile.readline().strip() or b"0", 16)) > 0:
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

            def do_DELETE(self):
                self._handle("DELETE")

            def do_HEAD(self):
                self._handle("HEAD")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        serve(self.httpd)
        return self.url

    def stop(self) -> None:
        for stand_in in self.stand_ins.values():
            stand_in.stop()
        stop(self.httpd)
        self._cert_dir.cleanup()

    def clouds_yaml(self, path: Path, cloud: str = "openstack") -> Path:
        """A clouds.yaml for this emulator, in Jetstream2's application-credential form."""
        path.write_text(yaml.safe_dump({"clouds": {cloud: {
            "auth_type": "v3applicationcredential", "region_name": "IU", "interface": "public", "identity_api_version": 3,
            "auth": {"auth_url": f"{self.url}/identity/v3", "application_credential_id": self.credential["id"],
                     "application_credential_secret": self.credential["secret"]},
        }}}))
        return path

    def _make_cert(self) -> tuple[str, str]:
        key, cert = Path(self._cert_dir.name, "key.pem"), Path(self._cert_dir.name, "cert.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=seat",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        return str(cert), str(key)

    # Dispatch ----------------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, body, headers) -> tuple[int, dict, dict | None]:
        if self.latency:
            time.sleep(self.latency)
        url = urlparse(raw_path)
        path, query = url.path.rstrip("/") or "/", parse_qs(url.query)
        with self._lock:
            self.calls.append(f"{method} {path}")
            try:
                self._advance()
                public = path.startswith("/identity") or re.fullmatch(r"/(compute(/v2\.1)?|network|image)", path)
                if not public and headers.get("X-Auth-Token") != "tok-" + self.credential["id"]:
                    raise HttpError(401, {"error": {"code": 401, "message": "The request you have made requires authentication."}})
                for pattern, verb, handler in self._routes():
                    match = re.fullmatch(pattern, path)
                    if match and verb == method:
                        result = handler(body, query, *match.groups())
                        self._advance()  # e.g. a floating IP just attached to a booted VM: it answers now
                        return result
                raise HttpError(404, {"itemNotFound": {"code": 404, "message": f"{method} {path} not found"}})
            except HttpError as exc:
                return exc.status, {}, exc.body
            except Exception as exc:  # noqa: BLE001 - a cloud answers 500, it does not hang up
                return 500, {}, {"computeFault": {"code": 500, "message": f"emulator error: {exc!r}"}}

    def _routes(self):
        return [
            (r"/identity(/v3)?", "GET", self._identity_version),
            (r"/identity/v3/auth/tokens", "POST", self._issue_token),
            (r"/compute(/v2\.1)?", "GET", self._compute_version),
            (r"/compute/v2\.1/flavors(/detail)?", "GET", self._flavors),
            (r"/compute/v2\.1/flavors/([^/]+)", "GET", self._flavor),
            (r"/compute/v2\.1/limits", "GET", self._limits),
            (r"/compute/v2\.1/os-keypairs/([^/]+)", "GET", self._keypair),
            (r"/compute/v2\.1/servers", "POST", self._create_server),
            (r"/compute/v2\.1/servers(/detail)?", "GET", self._list_servers),
            (r"/compute/v2\.1/servers/([^/]+)", "GET", self._get_server),
            (r"/compute/v2\.1/servers/([^/]+)", "DELETE", self._delete_server),
            (r"/compute/v2\.1/servers/([^/]+)/metadata", "POST", self._update_metadata),
            (r"/compute/v2\.1/servers/([^/]+)/action", "POST", self._server_action),
            (r"/network", "GET", self._network_versions),
            (r"/network/v2\.0/networks", "GET", self._list_networks),
            (r"/network/v2\.0/networks/([^/]+)", "GET", self._get_network),
            (r"/network/v2\.0/ports", "GET", self._list_ports),
            (r"/network/v2\.0/floatingips", "POST", self._create_fip),
            (r"/network/v2\.0/floatingips", "GET", self._list_fips),
            (r"/network/v2\.0/floatingips/([^/]+)", "PUT", self._update_fip),
            (r"/network/v2\.0/floatingips/([^/]+)", "DELETE", self._delete_fip),
            (r"/network/v2\.0/floatingips/([^/]+)/tags", "PUT", self._tag_fip),
            (r"/network/v2\.0/security-groups", "GET", self._list_sgs),
            (r"/network/v2\.0/security-groups", "POST", self._create_sg),
            (r"/network/v2\.0/security-groups/([^/]+)", "DELETE", self._delete_sg),
            (r"/network/v2\.0/security-groups/([^/]+)/tags", "PUT", self._tag_sg),
            (r"/network/v2\.0/security-group-rules", "POST", self._create_rule),
            (r"/network/v2\.0/quotas/([^/]+)/details", "GET", self._network_quota),
            (r"/image", "GET", self._image_versions),
            (r"/image/v2/images", "GET", self._list_images),
            (r"/image/v2/images/([^/]+)", "GET", self._get_image),
        ]

    # Swift -----------------------------------------------------------------------------------------

    def handle_swift(self, method: str, raw_path: str, body: bytes, headers) -> tuple[int, dict, bytes]:
        """The object store (Swift API v1): account, containers and objects, raw bytes in and out."""
        if self.latency:
            time.sleep(self.latency)
        url = urlparse(raw_path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self._lock:
            self.calls.append(f"{method} {url.path}")
            if url.path == "/swift/info":
                info = {"swift": {"max_file_size": self.swift_max_file_size, "version": "2.31.0"},
                        "slo": {"max_manifest_segments": 1000, "min_segment_size": 1}}
                return 200, {"Content-Type": "application/json"}, json.dumps(info).encode()
            match = re.fullmatch(rf"/swift/v1/AUTH_{PROJECT['id']}(?:/|/([^/]+)(?:/(.+))?)?", url.path)
            container, name = (unquote(part) if part else None for part in match.groups()) if match else (None, None)
            if "temp_url_sig" in query and name is not None and method in ("GET", "HEAD"):
                if not self._temp_url_valid(url.path, container, query):
                    return 401, {}, b"<html><h1>Unauthorized</h1><p>Temp URL invalid</p></html>"
                return self._swift_object(method, container, name, body, headers)
            if headers.get("X-Auth-Token") != "tok-" + self.credential["id"]:
                return 401, {}, b"<html><h1>Unauthorized</h1><p>This server could not verify that you are authorized.</p></html>"
            if not match:
                return 404, {}, b"Not Found"
            if container is None:
                return self._swift_account(method, query)
            if name is None:
                return self._swift_container(method, container, query, headers)
            return self._swift_object(method, container, name, body, headers)

    def _temp_url_valid(self, path: str, container: str, query: dict) -> bool:
        """Swift's tempurl middleware as Ceph RGW runs it: HMAC-SHA1 of "GET\\n<expires>\\n<path without /swift>"
        with the container's Temp-URL-Key, not yet expired."""
        key = self.container_meta.get(container, {}).get("x-container-meta-temp-url-key")
        try:
            expires = int(query.get("temp_url_expires", ""))
        except ValueError:
            return False
        if not key or expires < time.time():
            return False
        body = f"GET\n{expires}\n{path.removeprefix('/swift')}"
        want = hmac.new(key.encode(), body.encode(), hashlib.sha1).hexdigest()
        return hmac.compare_digest(want, query.get("temp_url_sig", ""))

    def _swift_account(self, method: str, query: dict) -> tuple[int, dict, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, {}, b""
        listing = [{"name": c, "count": len(objs), "bytes": sum(len(o["data"]) for o in objs.values())}
                   for c, objs in sorted(self.containers.items()) if c > query.get("marker", "")]
        return 200, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(listing).encode()

    def _swift_container(self, method: str, container: str, query: dict, headers=None) -> tuple[int, dict, bytes]:
        if method == "POST" and container in self.containers:
            meta = {k.lower(): v for k, v in (headers or {}).items() if k.lower().startswith("x-container-meta-")}
            self.container_meta.setdefault(container, {}).update(meta)
            return 204, {}, b""
        if method == "PUT":
            existed = container in self.containers
            self.containers.setdefault(container, {})
            return (202 if existed else 201), {}, b""
        objects = self.containers.get(container)
        if objects is None:
            return 404, {}, b"<html><h1>Not Found</h1><p>The resource could not be found.</p></html>"
        if method == "DELETE":
            if objects:
                return 409, {}, b"There was a conflict when trying to complete your request."
            del self.containers[container]
            return 204, {}, b""
        prefix, marker, limit = query.get("prefix", ""), query.get("marker", ""), int(query.get("limit", 10000))
        names = [n for n in sorted(objects) if n.startswith(prefix) and n > marker][:limit]
        listing = [{"name": n, "bytes": len(objects[n]["data"]), "hash": objects[n]["etag"],
                    "last_modified": objects[n]["modified"], "content_type": objects[n]["type"]} for n in names]
        return 200, {"Content-Type": "application/json; charset=utf-8", "X-Container-Object-Count": str(len(objects)),
                     **self.container_meta.get(container, {})}, json.dumps(listing).encode()

    def _swift_object(self, method: str, container: str, name: str, body: bytes, headers) -> tuple[int, dict, bytes]:
        objects = self.containers.get(container)
        if objects is None:
            return 404, {}, b"<html><h1>Not Found</h1><p>The resource could not be found.</p></html>"
        if method == "PUT":
            if name in self.swift_put_fail:
                return 503, {}, b"<html><h1>Service Unavailable</h1><p>Please try again later.</p></html>"
            etag = hashlib.md5(body).hexdigest()
            if headers.get("ETag") and headers["ETag"].strip('"') != etag:
                return 422, {}, b"<html><h1>Unprocessable Entity</h1><p>The ETag does not match the body.</p></html>"
            meta = {k: v for k, v in headers.items() if k.lower().startswith("x-object-meta-")}
            data = bytes([body[0] ^ 0xFF]) + body[1:] if name in self.swift_corrupt and body else body
            objects[name] = {"data": data, "etag": etag, "meta": meta, "type": headers.get("Content-Type") or "application/octet-stream",
                             "modified": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")}
            return 201, {"ETag": etag, "Last-Modified": formatdate(usegmt=True)}, b""
        found = objects.get(name)
        if found is None:
            return 404, {}, b"<html><h1>Not Found</h1><p>The resource could not be found.</p></html>"
        if method == "DELETE":
            del objects[name]
            return 204, {}, b""
        reply = {"Content-Length": str(len(found["data"])), "ETag": found["etag"], "Content-Type": found["type"],
                 "Last-Modified": formatdate(usegmt=True), "X-Timestamp": f"{time.time():.5f}", **found["meta"]}
        return 200, reply, found["data"] if method == "GET" else b""

    # Keystone ----------------------------------------------------------------------------------

    def _identity_version(self, body, query, _=None):
        return 200, {}, {"version": {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
                                     "links": [{"rel": "self", "href": f"{self.url}/identity/v3/"}],
                                     "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]}}

    def _issue_token(self, body, query):
        identity = (body or {}).get("auth", {}).get("identity", {})
        given = identity.get("application_credential", {})
        if identity.get("methods") != ["application_credential"] or given.get("id") != self.credential["id"] \
                or given.get("secret") != self.credential["secret"]:
            raise HttpError(401, {"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}})

        def service(kind, name, path):
            return {"type": kind, "name": name, "id": f"svc-{name}", "endpoints": [
                {"id": f"ep-{name}", "interface": "public", "region": "IU", "region_id": "IU", "url": f"{self.url}{path}"}]}

        token = {"token": {
            "methods": ["application_credential"], "expires_at": "2099-01-01T00:00:00.000000Z", "issued_at": _now(),
            "user": {"id": "user-1", "name": "instructor", "domain": PROJECT["domain"], "password_expires_at": None},
            "project": PROJECT, "roles": [{"id": "role-member", "name": "member"}],
            "application_credential": {"id": self.credential["id"], "name": "coursekit", "restricted": True},
            "catalog": [service("identity", "keystone", "/identity"), service("compute", "nova", "/compute/v2.1"),
                        service("network", "neutron", "/network"), service("image", "glance", "/image"),
                        service("object-store", "swift", f"/swift/v1/AUTH_{PROJECT['id']}")],
        }}
        return 201, {"X-Subject-Token": "tok-" + self.credential["id"]}, token

    # Nova ----------------------------------------------------------------------------------------

    def _compute_version(self, body, query, _=None):
        return 200, {}, {"version": {"id": "v2.1", "status": "CURRENT", "version": "2.90", "min_version": "2.1",
                                     "updated": "2013-07-23T11:33:21Z", "links": [{"rel": "self", "href": f"{self.url}/compute/v2.1/"}],
                                     "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}]}}

    def _flavor_body(self, flavor_id, name, vcpus, ram_gb):
        return {"id": flavor_id, "name": name, "vcpus": vcpus, "ram": ram_gb * 1024, "disk": 20, "swap": 0,
                "OS-FLV-EXT-DATA:ephemeral": 0, "os-flavor-access:is_public": True, "rxtx_factor": 1.0,
                "description": None, "extra_specs": {}, "links": []}

    def _flavors(self, body, query, _=None):
        return 200, {}, {"flavors": [self._flavor_body(*f) for f in FLAVORS]}

    def _flavor(self, body, query, flavor_id):
        for flavor in FLAVORS:
            if flavor[0] == flavor_id:
                return 200, {}, {"flavor": self._flavor_body(*flavor)}
        raise _nova_error(404, "itemNotFound", f"Flavor {flavor_id} could not be found.")

    def _limits(self, body, query):
        active = [s for s in self.servers.values() if s["status"] != "DELETED"]
        cores = sum(next(f[2] for f in FLAVORS if f[0] == s["flavor"]["id"]) for s in active)
        ram = sum(next(f[3] for f in FLAVORS if f[0] == s["flavor"]["id"]) * 1024 for s in active)
        return 200, {}, {"limits": {"rate": [], "absolute": {
            "maxTotalInstances": self.max_instances, "totalInstancesUsed": len(active),
            "maxTotalCores": self.max_cores, "totalCoresUsed": cores,
            "maxTotalRAMSize": self.max_ram_mb, "totalRAMUsed": ram,
            "maxServerMeta": 128, "maxImageMeta": 128, "maxPersonality": 5, "maxPersonalitySize": 10240,
            "maxTotalKeypairs": 100, "maxServerGroups": 10, "maxServerGroupMembers": 10,
            "totalServerGroupsUsed": 0}}}

    def _keypair(self, body, query, name):
        if name not in self.keypairs:
            raise _nova_error(404, "itemNotFound", f"Keypair {name} not found for user user-1")
        return 200, {}, {"keypair": self.keypairs[name]}

    def _create_server(self, body, query):
        spec = (body or {}).get("server", {})
        self._creates += 1
        if self.quota_fail_at is not None and self._creates == self.quota_fail_at:
            raise _nova_error(403, "forbidden", f"Quota exceeded for instances: Requested 1, but already used {len(self.servers)} of {len(self.servers)} instances")
        flavor = next((f for f in FLAVORS if f[0] == spec.get("flavorRef")), None)
        if flavor is None or spec.get("imageRef") not in self.images:
            raise _nova_error(400, "badRequest", "Invalid flavorRef or imageRef provided.")
        server_id = str(uuid.uuid4())
        name = spec["name"]
        networks = spec.get("networks") or []
        port_id = f"port-{server_id[:8]}"
        n = next(self._ids)
        fixed = f"127.{self.fixed_net}.{n // 250}.{n % 250 + 2}"
        self.ports[port_id] = {"id": port_id, "network_id": networks[0]["uuid"] if networks else "net-auto",
                               "device_id": server_id, "device_owner": "compute:nova", "status": "ACTIVE",
                               "fixed_ips": [{"subnet_id": "subnet-auto", "ip_address": fixed}], "tags": []}
        user_data = base64.b64decode(spec.get("user_data", "")).decode() if spec.get("user_data") else ""
        fail = name in self.error_once and name not in self._errored
        self.servers[server_id] = {
            "id": server_id, "name": name, "status": "BUILD", "OS-EXT-STS:task_state": "spawning",
            "OS-EXT-STS:vm_state": "building", "created": _now(), "updated": _now(), "tenant_id": PROJECT["id"],
            "user_id": "user-1", "flavor": {"id": flavor[0], "original_name": flavor[1], "vcpus": flavor[2]},
            "image": {"id": spec["imageRef"]}, "metadata": spec.get("metadata", {}), "tags": spec.get("tags", []),
            "key_name": spec.get("key_name"), "security_groups": spec.get("security_groups", []),
            "addresses": {"auto_allocated_network": [{"addr": fixed, "version": 4, "OS-EXT-IPS:type": "fixed"}]},
            "accessIPv4": "", "accessIPv6": "", "hostId": "", "progress": 0, "links": [],
            "_ready_at": time.monotonic() + self.boot_seconds, "_fail": fail, "_user_data": user_data,
            "_home": self._new_home(server_id),
        }
        if fail:
            self._errored.add(name)
        if name in self.create_503:
            raise HttpError(503, {"computeFault": {"code": 503, "message": "Service Unavailable"}})
        return 202, {"Location": f"{self.url}/compute/v2.1/servers/{server_id}"}, {"server": {
            "id": server_id, "links": [], "OS-DCF:diskConfig": "MANUAL", "security_groups": spec.get("security_groups", []),
            "adminPass": uuid.uuid4().hex[:12]}}

    def _public(self, server: dict) -> dict:
        return {key: value for key, value in server.items() if not key.startswith("_")}

    def _list_servers(self, body, query, _=None):
        found = [s for s in self.servers.values() if s["status"] != "DELETED"]
        for tag in query.get("tags", [""])[0].split(",") if "tags" in query else []:
            found = [s for s in found if tag in s["tags"]]
        if "name" in query:
            found = [s for s in found if re.search(query["name"][0], s["name"])]
        return 200, {}, {"servers": [self._public(s) for s in found]}

    def _live_server(self, server_id: str) -> dict:
        server = self.servers.get(server_id)
        if not server or server["status"] == "DELETED":
            raise _nova_error(404, "itemNotFound", f"Instance {server_id} could not be found.")
        return server

    def _get_server(self, body, query, server_id):
        server = self._live_server(server_id)
        return 200, {}, {"server": self._public(server)}

    def _delete_server(self, body, query, server_id):
        server = self._live_server(server_id)
        server["OS-EXT-STS:task_state"] = "deleting"
        server["_deleted_at"] = time.monotonic() + self.delete_seconds
        return 204, {}, None

    def _update_metadata(self, body, query, server_id):
        """Create or update metadata items (POST /servers/{id}/metadata): merges, returns them all."""
        server = self._live_server(server_id)
        server["metadata"].update((body or {}).get("metadata", {}))
        if "coursekit-image" in (body or {}).get("metadata", {}) and server["name"] not in self.updates_fail:
            server["_image_at"] = time.monotonic() + self.update_seconds
        return 200, {}, {"metadata": server["metadata"]}

    # (action, states it is allowed from, transitional task state, final status, seconds attribute)
    _ACTIONS = {
        "os-stop": ({"ACTIVE"}, "powering-off", "SHUTOFF", "power_seconds"),
        "os-start": ({"SHUTOFF"}, "powering-on", "ACTIVE", "power_seconds"),
        "shelve": ({"ACTIVE", "SHUTOFF"}, "shelving", "SHELVED_OFFLOADED", "shelve_seconds"),
        "unshelve": ({"SHELVED", "SHELVED_OFFLOADED"}, "unshelving", "ACTIVE", "boot_seconds"),
    }

    def _server_action(self, body, query, server_id):
        """POST /servers/{id}/action: os-stop, os-start, shelve, unshelve (202, no body), after a delay."""
        server = self._live_server(server_id)
        (name, _), = (body or {"?": None}).items()
        if name not in self._ACTIONS:
            raise _nova_error(400, "badRequest", f"Action {name!r} is not supported here")
        allowed, task, final, delay = self._ACTIONS[name]
        if server["status"] not in allowed or server.get("_transition"):
            raise _nova_error(409, "conflictingRequest",
                              f"Cannot '{name}' instance {server_id} while it is in vm_state {server['status'].lower()}")
        server["OS-EXT-STS:task_state"] = task
        server["_transition"] = (time.monotonic() + getattr(self, delay), final)
        if final != "ACTIVE":
            self._stop_stand_ins_of(server)
        return 202, {}, None

    def _new_home(self, server_id: str) -> Path:
        home = Path(self._cert_dir.name, "homes", server_id)
        (home / "notebooks").mkdir(parents=True)
        (home / "notebooks" / "01-welcome.ipynb").write_bytes(WELCOME)
        return home

    def _stop_stand_ins_of(self, server: dict) -> None:
        for fip in self.floating_ips.values():
            if self._server_of_port(fip["port_id"]) is server:
                self._stop_stand_in(fip["floating_ip_address"])
        if private := server.get("_private_stand_in"):
            self._stop_stand_in(private)
            server["_private_stand_in"] = None

    def _advance(self) -> None:
        """Move time on: builds finish (or fail), deletes complete, seats boot."""
        now = time.monotonic()
        for server in list(self.servers.values()):
            if server.get("_deleted_at") is not None and now >= server["_deleted_at"] and server["status"] != "DELETED":
                server["status"] = "DELETED"
                self._stop_stand_ins_of(server)
                for port_id in [p for p, port in self.ports.items() if port["device_id"] == server["id"]]:
                    for fip in self.floating_ips.values():
                        if fip["port_id"] == port_id:
                            fip.update(port_id=None, fixed_ip_address=None, status="DOWN")
                            self._stop_stand_in(fip["floating_ip_address"])
                    del self.ports[port_id]
            elif server.get("_transition") and now >= server["_transition"][0]:
                server.update({"status": server["_transition"][1], "OS-EXT-STS:task_state": None, "_transition": None,
                               "OS-EXT-STS:vm_state": server["_transition"][1].lower()})
            elif server["status"] == "BUILD" and server["name"] not in self.stuck and now >= server["_ready_at"]:
                if server["_fail"]:
                    server.update({"status": "ERROR", "OS-EXT-STS:vm_state": "error", "OS-EXT-STS:task_state": None,
                                   "fault": {"code": 500, "message": "No valid host was found. There are not enough hosts available.",
                                             "created": _now()}})
                else:
                    server.update({"status": "ACTIVE", "OS-EXT-STS:vm_state": "active", "OS-EXT-STS:task_state": None})
        for fip in self.floating_ips.values():
            server = self._server_of_port(fip["port_id"])
            if server and server["status"] == "ACTIVE" and fip["floating_ip_address"] not in self.stand_ins:
                self._start_stand_in(fip["floating_ip_address"], server)
        for server in self.servers.values():
            private = self._env(server, "seat.env").get("GATEWAY_PORT")
            if private and server["status"] == "ACTIVE" and not server.get("_private_stand_in"):
                self._start_private_stand_in(server, int(private))
        for server in self.servers.values():
            addresses = [f["floating_ip_address"] for f in self.floating_ips.values() if self._server_of_port(f["port_id"]) is server]
            stand_in = next((self.stand_ins[a] for a in [*addresses, server.get("_private_stand_in")] if a in self.stand_ins), None)
            if stand_in and server.get("_image_at") and now >= server["_image_at"]:
                # The updater re-ran the bootstrap: a new container on the same home folder.
                stand_in.image, stand_in.started, server["_image_at"] = server["metadata"]["coursekit-image"], _now(), None

    def _server_of_port(self, port_id: str | None) -> dict | None:
        port = self.ports.get(port_id or "")
        return self.servers.get(port["device_id"]) if port else None

    def _files(self, server: dict) -> dict[str, str]:
        """file name → content of what cloud-init writes from the server's user data (parsed once per server)."""
        if "_files" not in server:
            written = (yaml.safe_load(server["_user_data"]) or {}).get("write_files", []) if server["_user_data"] else []
            server["_files"] = {Path(f["path"]).name: f.get("content", "") for f in written}
        return server["_files"]

    def _env(self, server: dict, name: str) -> dict[str, str]:
        """The KEY=VALUE settings file `name` from the server's user data (parsed once)."""
        cache = server.setdefault("_envs", {})
        if name not in cache:
            cache[name] = dict(word.partition("=")[::2] for word in shlex.split(self._files(server).get(name, "")))
        return cache[name]

    def _start_stand_in(self, address: str, server: dict) -> None:
        if server["metadata"].get("coursekit-role") == "gateway":
            cert = self._user_data_cert(server, "gateway") or self._cert
            self.stand_ins[address] = GatewayStandIn(address, self.seat_port, self._env(server, "gateway.env").get("TOKEN", ""), cert)
            return
        settings = self._env(server, "seat.env")
        if settings.get("GATEWAY_PORT"):
            return  # behind the gateway: it serves on its private address only
        token, image = settings.get("JUPYTER_TOKEN", ""), settings.get("IMAGE", "")
        cert = self._cert if server["name"] in self.wrong_cert else (self._user_data_cert(server) or self._cert)
        self.stand_ins[address] = SeatStandIn(address, self.seat_port, token, image, cert, server["_home"])
        self.stand_ins[address].kernel_seconds = lambda: self.seat_kernel_seconds

    def _start_private_stand_in(self, server: dict, port: int) -> None:
        """A seat behind the gateway: plain HTTP on its fixed address, under its base URL."""
        settings = self._env(server, "seat.env")
        fixed = server["addresses"]["auto_allocated_network"][0]["addr"]
        address = f"{fixed}:{port}"
        self.stand_ins[address] = SeatStandIn(fixed, port, settings.get("JUPYTER_TOKEN", ""), settings.get("IMAGE", ""),
                                              None, server["_home"], prefix=settings.get("BASE_URL", "/").rstrip("/"))
        self.stand_ins[address].kernel_seconds = lambda: self.seat_kernel_seconds
        server["_private_stand_in"] = address

    def _user_data_cert(self, server: dict, name: str = "seat") -> tuple[str, str] | None:
        """The certificate and key cloud-init would write from the server's user data, if it carries them."""
        files = self._files(server)
        if f"{name}.crt" not in files or f"{name}.key" not in files:
            return None
        folder = Path(self._cert_dir.name, "tls", server["id"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.crt").write_text(files[f"{name}.crt"])
        (folder / f"{name}.key").write_text(files[f"{name}.key"])
        return str(folder / f"{name}.crt"), str(folder / f"{name}.key")

    def _stop_stand_in(self, address: str) -> None:
        if stand_in := self.stand_ins.pop(address, None):
            stand_in.stop()

    # Neutron -------------------------------------------------------------------------------------

    def _network_versions(self, body, query, _=None):
        return 200, {}, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": f"{self.url}/network/v2.0/"}]}]}

    def _filter(self, items, query, keys):
        for key in keys:
            if key == "tags" and key in query:  # Neutron: tags=a,b matches resources that have all of them
                items = [i for i in items if all(t in i.get("tags", []) for t in query[key][0].split(","))]
            elif key in query:
                items = [i for i in items if str(i.get(key)) == query[key][0]]
        return items

    def _list_networks(self, body, query):
        return 200, {}, {"networks": self._filter(list(self.networks.values()), query, ["name", "id", "router:external"])}

    def _get_network(self, body, query, network_id):
        if network_id not in self.networks:
            raise _neutron_error(404, "NetworkNotFound", f"Network {network_id} could not be found.")
        return 200, {}, {"network": self.networks[network_id]}

    def _list_ports(self, body, query):
        return 200, {}, {"ports": self._filter(list(self.ports.values()), query, ["device_id", "network_id", "id"])}

    def _fip_body(self, fip):
        return dict(fip)

    def _create_fip(self, body, query):
        spec = (body or {}).get("floatingip", {})
        if len(self.floating_ips) >= self.floating_ip_quota or self.fip_conflicts > 0:
            self.fip_conflicts = max(0, self.fip_conflicts - 1)
            raise _neutron_error(409, "OverQuota", "Quota exceeded for resources: ['floatingip'].")
        if spec.get("floating_network_id") != "net-public":
            raise _neutron_error(400, "BadRequest", "Bad floatingip request: network must be external.")
        n = next(self._fip_numbers)
        fip_id = str(uuid.uuid4())
        self.floating_ips[fip_id] = {
            "id": fip_id, "floating_ip_address": f"127.{self.floating_net}.{n // 250}.{n % 250 + 2}", "floating_network_id": "net-public",
            "port_id": None, "fixed_ip_address": None, "router_id": None, "status": "DOWN", "tags": [],
            "description": spec.get("description", ""), "project_id": PROJECT["id"], "tenant_id": PROJECT["id"],
            "created_at": _now(), "updated_at": _now(), "revision_number": 0,
        }
        return 201, {}, {"floatingip": self._fip_body(self.floating_ips[fip_id])}

    def _list_fips(self, body, query):
        return 200, {}, {"floatingips": self._filter(list(self.floating_ips.values()), query, ["tags", "port_id", "floating_ip_address"])}

    def _update_fip(self, body, query, fip_id):
        fip = self.floating_ips.get(fip_id)
        if not fip:
            raise _neutron_error(404, "FloatingIPNotFound", f"Floating IP {fip_id} could not be found")
        port_id = (body or {}).get("floatingip", {}).get("port_id")
        if port_id and port_id not in self.ports:
            raise _neutron_error(404, "PortNotFound", f"Port {port_id} could not be found.")
        fixed = self.ports[port_id]["fixed_ips"][0]["ip_address"] if port_id else None
        fip.update(port_id=port_id, fixed_ip_address=fixed, status="ACTIVE" if port_id else "DOWN", updated_at=_now())
        return 200, {}, {"floatingip": self._fip_body(fip)}

    def _delete_fip(self, body, query, fip_id):
        fip = self.floating_ips.pop(fip_id, None)
        if not fip:
            raise _neutron_error(404, "FloatingIPNotFound", f"Floating IP {fip_id} could not be found")
        self._stop_stand_in(fip["floating_ip_address"])
        return 204, {}, None

    def _set_tags(self, resources: dict, resource_id: str, body, missing: HttpError):
        """Replace all tags (Neutron's PUT /{resources}/{id}/tags)."""
        if resource_id not in resources:
            raise missing
        resources[resource_id]["tags"] = list((body or {}).get("tags", []))
        return 200, {}, {"tags": resources[resource_id]["tags"]}

    def _tag_fip(self, body, query, fip_id):
        missing = _neutron_error(404, "FloatingIPNotFound", f"Floating IP {fip_id} could not be found")
        return self._set_tags(self.floating_ips, fip_id, body, missing)

    def _list_sgs(self, body, query):
        return 200, {}, {"security_groups": self._filter(list(self.security_groups.values()), query, ["name", "id", "tags"])}

    def _tag_sg(self, body, query, sg_id):
        missing = _neutron_error(404, "SecurityGroupNotFound", f"Security group {sg_id} does not exist")
        return self._set_tags(self.security_groups, sg_id, body, missing)

    def _create_sg(self, body, query):
        spec = (body or {}).get("security_group", {})
        sg_id = str(uuid.uuid4())
        egress = [{"id": str(uuid.uuid4()), "direction": "egress", "ethertype": e, "protocol": None, "port_range_min": None,
                   "port_range_max": None, "remote_ip_prefix": None, "security_group_id": sg_id} for e in ("IPv4", "IPv6")]
        self.security_groups[sg_id] = {"id": sg_id, "name": spec.get("name"), "description": spec.get("description", ""),
                                       "security_group_rules": egress, "tags": [], "project_id": PROJECT["id"]}
        return 201, {}, {"security_group": self.security_groups[sg_id]}

    def _delete_sg(self, body, query, sg_id):
        in_use = any(sg_id in [g.get("name") for g in s["security_groups"]] or
                     self.security_groups.get(sg_id, {}).get("name") in [g.get("name") for g in s["security_groups"]]
                     for s in self.servers.values() if s["status"] != "DELETED")
        if sg_id not in self.security_groups:
            raise _neutron_error(404, "SecurityGroupNotFound", f"Security group {sg_id} does not exist")
        if in_use:
            raise _neutron_error(409, "SecurityGroupInUse", f"Security Group {sg_id} in use.")
        del self.security_groups[sg_id]
        return 204, {}, None

    def _create_rule(self, body, query):
        spec = dict((body or {}).get("security_group_rule", {}))
        group = self.security_groups.get(spec.get("security_group_id"))
        if not group:
            raise _neutron_error(404, "SecurityGroupNotFound", "Security group does not exist")
        rule = {"id": str(uuid.uuid4()), "ethertype": "IPv4", "remote_ip_prefix": None, **spec}
        group["security_group_rules"].append(rule)
        return 201, {}, {"security_group_rule": rule}

    def _network_quota(self, body, query, project_id):
        used = len(self.floating_ips)
        return 200, {}, {"quota": {"floatingip": {"limit": self.floating_ip_quota, "used": used, "reserved": 0},
                                   "security_group": {"limit": 10, "used": len(self.security_groups), "reserved": 0},
                                   "port": {"limit": 250, "used": len(self.ports), "reserved": 0}}}

    # Glance --------------------------------------------------------------------------------------

    def _image_versions(self, body, query, _=None):
        return 200, {}, {"versions": [{"id": "v2.16", "status": "CURRENT", "links": [{"rel": "self", "href": f"{self.url}/image/v2/"}]}]}

    def _list_images(self, body, query):
        return 200, {}, {"images": self._filter(list(self.images.values()), query, ["name", "id"]), "first": "/v2/images", "schema": "/v2/schemas/images"}

    def _get_image(self, body, query, image_id):
        if image_id not in self.images:
            raise HttpError(404, {"message": f"No image found with ID {image_id}", "code": "404 Not Found", "title": "Not Found"})
        return 200, {}, self.images[image_id]

    # Inspection for tests --------------------------------------------------------------------------

    def server_named(self, name: str) -> dict:
        with self._lock:
            self._advance()
            return next(s for s in self.servers.values() if s["name"] == name and s["status"] != "DELETED")

    def home(self, name: str) -> Path:
        """The home folder of the live server called name (real files on this machine)."""
        return self.server_named(name)["_home"]

    def force(self, name: str, status: str, fault: str | None = None) -> None:
        """Put a server into status behind the API's back (a power cut, an Exosphere shelve, a host failure)."""
        with self._lock:
            server = self.server_named(name)
            server.update({"status": status, "OS-EXT-STS:vm_state": status.lower(), "OS-EXT-STS:task_state": None,
                           "_transition": None})
            if fault:
                server["fault"] = {"code": 500, "message": fault, "created": _now()}
            if status != "ACTIVE":
                self._stop_stand_ins_of(server)

    def live_servers(self) -> list[dict]:
        with self._lock:
            self._advance()
            return [s for s in self.servers.values() if s["status"] != "DELETED"]
