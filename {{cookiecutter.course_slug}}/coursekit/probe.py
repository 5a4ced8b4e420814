"""HTTP probes of a Jupyter server on this machine: readiness with retries, authenticated status.
(A VM's Jupyter is reached through seatclient, which checks its certificate before sending a token.)"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Callable


def get(url: str, token: str | None = None, timeout: float = 5) -> tuple[int, dict | None]:
    """GET url, with `Authorization: token ...` when given; returns (status, JSON body or None). 0 = no answer."""
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
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
