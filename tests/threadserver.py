"""The tests' own HTTP servers, each in a thread: `serve` starts one, `stop` ends it at once.

`shutdown()` returns when `serve_forever` next looks at its flag, up to a poll later (50 ms); function-scoped
servers paid that at every teardown. A connection makes the loop look now.
"""
from __future__ import annotations

import contextlib
import socket
import threading
from socketserver import BaseServer

POLL_SECONDS = 0.05


def serve(server: BaseServer) -> BaseServer:
    """Serve in a daemon thread; returns the server."""
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL_SECONDS}, daemon=True).start()
    return server


def stop(server: BaseServer) -> None:
    """Stop serving and close the listening socket, without waiting out a poll."""
    stopping = threading.Thread(target=server.shutdown)
    stopping.start()
    while stopping.is_alive():  # a connection that comes before the flag is served as an empty request: knock again
        with contextlib.suppress(OSError):
            socket.create_connection(server.server_address[:2], timeout=0.5).close()
        stopping.join(0.01)
    server.server_close()
