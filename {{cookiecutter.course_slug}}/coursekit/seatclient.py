"""The one client for a Jupyter server coursekit runs (a seat, an image under test, a VM's own endpoints), carrying a
seat's token only to that seat; every answer read within its time and size.

Plain HTTP for servers on this machine (a Docker host's seats, `coursekit test`); HTTPS for VMs, checked before the token is sent: against
the public CAs when the seat has a DNS name, else against the seat's pinned public key (keys.py).
"""
from __future__ import annotations

import functools
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
from typing import BinaryIO, Callable, Iterator

import websocket

from coursekit import keys
from coursekit.errors import CoursekitError

CHUNK = 1 << 20
MAX_BODY = 1 << 20  # a status answer is a few hundred bytes


class TooSlow(OSError):
    """An answer that did not finish within its time, or grew past its size."""


def read_bounded(response, deadline: float, limit: int = MAX_BODY) -> bytes:
    """The response body, read before deadline (time.monotonic) and at most limit bytes; TooSlow otherwise.
    A socket timeout bounds one read only: a server that drips a byte at a time must not hold us forever."""
    chunks, size = [], 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TooSlow("the answer did not finish in time")
        sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
        if sock is not None:
            sock.settimeout(left)
        chunk = response.read1(65536) if hasattr(response, "read1") else response.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise TooSlow(f"the answer is over {limit:,} bytes")
        chunks.append(chunk)


def _address(host: str) -> str:
    """Where to connect for host: every *.localhost name is this machine (RFC 6761), as browsers resolve it."""
    return "127.0.0.1" if host == "localhost" or host.endswith(".localhost") else host


class _Loopback(http.client.HTTPConnection):
    def connect(self) -> None:
        self.sock = socket.create_connection((_address(self.host), self.port), self.timeout)


class _LoopbackTLS(http.client.HTTPSConnection):
    """HTTPS that sends the host's name (SNI, Host) while connecting to its address, loopback for *.localhost."""

    def connect(self) -> None:
        sock = socket.create_connection((_address(self.host), self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


@functools.lru_cache(maxsize=8)
def _context(ca_pem: str | None, pinned: bool) -> ssl.SSLContext:
    """One TLS context per kind of trust, shared by every connection (loading the system's CAs costs ~20 ms of CPU, and
    a check opens a few connections per seat)."""
    context = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    if pinned:  # a bare address: no name to check, the key itself is checked after the handshake
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


class UntrustedSeat(CoursekitError):
    """The server did not prove it is the seat: the token was not sent."""


class _Idle:
    """One idle connection to a seat, handed to the next request (keep-alive), shared by clients of one seat."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connection: http.client.HTTPConnection | None = None

    def take(self) -> http.client.HTTPConnection | None:
        with self.lock:
            connection, self.connection = self.connection, None
            return connection

    def give(self, connection: http.client.HTTPConnection) -> None:
        with self.lock:
            old, self.connection = self.connection, connection
        if old is not None:
            old.close()


class SeatClient:
    """Requests to one seat, with `Authorization: token ...` once the server is known to be the seat. JSON requests
    reuse one idle connection (a seat answers several in a row, and each new one costs a TLS handshake); close()
    ends it."""

    def __init__(self, seat: str, base_url: str, token: str, pinned_key: bytes | None = None, ca_pem: str | None = None,
                 idle: _Idle | None = None):
        parts = urllib.parse.urlsplit(base_url)
        self.seat, self.token, self.pinned_key, self.ca_pem = seat, token, pinned_key, ca_pem  # ca_pem: trusted instead of the public CAs
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname or "", parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")  # behind a gateway: /<seat>
        self.base_url = base_url.rstrip("/")
        self._idle = idle or _Idle()

    def with_token(self, token: str) -> SeatClient:
        """The same seat, asked with another credential (over the same verified connection)."""
        return SeatClient(self.seat, self.base_url, token, self.pinned_key, self.ca_pem, self._idle)

    def _headers(self, body: object, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The seat's token (none when asked as anyone), a JSON body's type, then extra."""
        return {**({"Authorization": f"token {self.token}"} if self.token else {}),
                **({"Content-Type": "application/json"} if body else {}), **(extra or {})}

    def wait_ready(self, timeout: float, gone: Callable[[], str | None] = lambda: None, interval: float = 0.5,
                   path: str = "/api/status") -> dict:
        """Poll path until it answers 200 (its JSON); TimeoutError, or RuntimeError(why the server is gone)."""
        deadline = time.monotonic() + timeout
        status = 0
        try:
            while time.monotonic() < deadline:
                status, body = self.get(path)
                if status == 200:
                    return body or {}
                if why := gone():
                    raise RuntimeError(why)
                time.sleep(interval)
        finally:
            self.close()
        raise TimeoutError(f"{self.base_url}{path} did not answer within {timeout:.0f}s (last status {status or 'no answer'})")

    def close(self) -> None:
        """Close the idle connection, if any."""
        if (connection := self._idle.take()) is not None:
            connection.close()

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if not self.https:
            connection = _Loopback(self.host, self.port, timeout=timeout)
            connection.connect()
            return connection
        connection = _LoopbackTLS(self.host, self.port, timeout=timeout, context=_context(self.ca_pem, self.pinned_key is not None))
        try:
            connection.connect()
        except ssl.SSLCertVerificationError as exc:
            raise UntrustedSeat(f"seat {self.seat}: {self.base_url} presents a certificate that does not verify "
                                f"({exc.verify_message}); its token was not sent") from None
        if self.pinned_key is not None:
            presented = connection.sock.getpeercert(binary_form=True)
            if presented is None or keys.certificate_public_key(presented) != self.pinned_key:
                connection.close()
                raise UntrustedSeat(f"seat {self.seat}: {self.base_url} presents a certificate that is not this seat's; "
                                    "its token was not sent (is the address someone else's now?)")
        return connection

    def _open(self, path: str, timeout: float, method: str = "GET", body: bytes | BinaryIO | None = None,
              headers: dict[str, str] | None = None) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        connection = self._connect(timeout)
        connection.request(method, self.prefix + path, body=body, headers=self._headers(body, headers))
        return connection, connection.getresponse()

    def _exchange(self, path: str, timeout: float, method: str, body: bytes | None, deadline: float
                  ) -> tuple[http.client.HTTPResponse, bytes]:
        """One request: on the idle connection if there is one (again on a new one if the seat had closed it while
        idle), else on a new one."""
        if (idle := self._idle.take()) is not None:
            try:
                return self._send(idle, path, timeout, method, body, deadline)
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                pass  # it never reached the seat: a new connection carries it
        return self._send(self._connect(timeout), path, timeout, method, body, deadline)

    def _send(self, connection: http.client.HTTPConnection, path: str, timeout: float, method: str, body: bytes | None,
              deadline: float) -> tuple[http.client.HTTPResponse, bytes]:
        """The answer on connection, which is kept for the next request when the seat keeps it open."""
        try:
            connection.sock.settimeout(timeout)
            connection.request(method, self.prefix + path, body=body, headers=self._headers(body))
            response = connection.getresponse()
            answer = read_bounded(response, deadline)
            response.close()  # read to its end: the connection is free for the next request
        except BaseException:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        else:
            self._idle.give(connection)
        return response, answer

    def get(self, path: str, timeout: float = 5, method: str = "GET", body: bytes | None = None) -> tuple[int, dict | None]:
        """(status, JSON body or None), all within timeout seconds; 0 when nothing answers in time. UntrustedSeat when
        the server is not the seat."""
        deadline = time.monotonic() + timeout
        try:
            response, answer = self._exchange(path, timeout, method, body, deadline)
        except UntrustedSeat:
            raise
        except (OSError, http.client.HTTPException, socket.timeout):
            return 0, None
        try:
            return response.status, json.loads(answer) if answer else None
        except ValueError:
            return response.status, None

    def websocket(self, path: str, timeout: float = 30) -> websocket.WebSocket:
        """A websocket to path (a kernel's channels), over a connection checked as every request's is."""
        connection = self._connect(timeout)
        scheme = "wss" if self.https else "ws"
        try:
            return websocket.create_connection(f"{scheme}://{self.host}:{self.port}{self.prefix}{path}", timeout=timeout,
                                               socket=connection.sock, header=[f"Authorization: token {self.token}"])
        except (OSError, websocket.WebSocketException) as exc:
            connection.close()
            raise CoursekitError(f"seat {self.seat}: no websocket at {path} ({exc})") from None

    def upload(self, path: str, body: BinaryIO, size: int, content_type: str, timeout: float = 300) -> dict | None:
        """PUT size bytes of body to path; the JSON answer. CoursekitError unless the seat answers 200."""
        try:
            connection, response = self._open(path, timeout, "PUT", body,
                                              {"Content-Type": content_type, "Content-Length": str(size)})
            try:
                answer = read_bounded(response, time.monotonic() + timeout)
            finally:
                connection.close()
        except UntrustedSeat:
            raise
        except (OSError, http.client.HTTPException) as exc:
            raise CoursekitError(f"seat {self.seat}: sending to {self.base_url}{path} broke off ({exc})") from None
        if response.status != 200:
            why = answer.decode("utf-8", "replace").strip()[:300]
            raise CoursekitError(f"seat {self.seat}: {self.base_url}{path} answered HTTP {response.status} {why}".rstrip())
        try:
            return json.loads(answer)
        except ValueError:
            return None

    def stream(self, path: str, timeout: float = 60) -> Iterator[bytes]:
        """The body of path in chunks; CoursekitError unless the seat answers 200 to the end."""
        try:
            connection, response = self._open(path, timeout)
        except (OSError, http.client.HTTPException) as exc:
            raise CoursekitError(f"seat {self.seat}: cannot reach {self.base_url}{path} ({exc})") from None
        try:
            if response.status != 200:
                raise CoursekitError(f"seat {self.seat}: {self.base_url}{path} answered HTTP {response.status}")
            while chunk := response.read(CHUNK):
                yield chunk
        except (OSError, http.client.HTTPException) as exc:
            raise CoursekitError(f"seat {self.seat}: reading {path} broke off ({exc})") from None
        finally:
            connection.close()
