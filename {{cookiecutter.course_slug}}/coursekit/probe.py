"""HTTP probes of a Jupyter server on this machine: readiness with retries, authenticated status.
(A VM's Jupyter is reached through seatclient, which checks its certificate before sending a token.)"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Callable

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


def get(url: str, token: str | None = None, timeout: float = 5) -> tuple[int, dict | None]:
    """GET url, with `Authorization: token ...` when given, all of it within timeout seconds; returns (status,
    JSON body or None). 0 = no answer (or none in time)."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = read_bounded(response, deadline)
            return response.status, json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None


def wait_ready(
    url: str, token: str, timeout: float, gone: Callable[[], str | None] = lambda: None, interval: float = 0.5
) -> dict:
    """Poll url with the token until it answers 200; TimeoutError or RuntimeError(why it is gone) otherwise."""
    deadline = time.monotonic() + timeout
    status = 0
    while time.monotonic() < deadline:
        status, body = get(url, token)
        if status == 200:
            return body or {}
        if why := gone():
            raise RuntimeError(why)
        time.sleep(interval)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s (last status {status or 'no answer'})")
