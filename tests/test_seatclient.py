"""The seat client against a real HTTP/1.1 server on loopback: one connection carries a seat's requests in a row
(each new one is a TLS handshake on a real seat), and a connection the seat closed while idle costs nothing."""
from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from threadserver import serve, stop


class _Seat:
    """A Jupyter-like server counting the connections it accepts; close_after ends each one after that many answers
    without saying so (as a server's idle timeout does)."""

    def __init__(self, close_after: int = 0):
        self.connections = 0
        seat = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                seat.connections += 1
                self.answered = 0

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ok = self.headers.get("Authorization") == "token right"
                body = json.dumps({"path": self.path} if ok else {"message": "Forbidden"}).encode()
                self.send_response(200 if ok else 403)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.answered += 1
                if close_after and self.answered >= close_after:
                    self.close_connection = True

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/ann"
        serve(self.httpd)

    def stop(self) -> None:
        stop(self.httpd)


@pytest.fixture
def seat_server(request):
    servers: list[_Seat] = []

    def make(close_after: int = 0) -> _Seat:
        servers.append(_Seat(close_after))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


def test_a_seats_requests_share_one_connection_whatever_credential_they_carry(coursekit, seat_server):
    from coursekit.seatclient import SeatClient

    seat = seat_server()
    client = SeatClient("ann", seat.url, "right")
    assert client.get("/api/status") == (200, {"path": "/ann/api/status"})
    assert client.with_token("wrong").get("/api/status")[0] == 403
    assert client.get("/api/kernels", method="POST", body=b'{"name": "python3"}')[0] == 200
    assert client.get("/api/kernels/1", method="DELETE")[0] == 200
    client.close()
    assert seat.connections == 1


def test_a_connection_the_seat_closed_while_idle_is_replaced_without_an_error(coursekit, seat_server):
    from coursekit.seatclient import SeatClient

    seat = seat_server(close_after=1)
    client = SeatClient("ann", seat.url, "right")
    answers = [client.get(f"/api/status?n={n}")[1] for n in range(4)]
    assert answers == [{"path": f"/ann/api/status?n={n}"} for n in range(4)]
    assert seat.connections == 4
