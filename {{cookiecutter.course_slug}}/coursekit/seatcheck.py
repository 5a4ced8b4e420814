"""`coursekit check`: every seat, through the door its student uses, as its student would.

Per seat: its own credential opens it and another seat's does not; a kernel of the course's kernelspec starts
and runs a short probe (each pinned package imports, every ~/data file matches its sha256, by the image's own
data.py); the kernel is shut down again. Seats are checked a few at once; one seat's trouble is its own row.
"""
from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

import websocket
from packaging.requirements import InvalidRequirement, Requirement

from coursekit.config import Course
from coursekit.errors import CoursekitError
from coursekit.image import SHARE
from coursekit.parallel import each
from coursekit.seatclient import SeatClient
from coursekit.validate import list_notebooks

WORKERS = 64  # seats checked at once: each waits on its own kernel for a few seconds
KERNEL_SECONDS = 120  # a kernel's start and the probe's run, together
MARK = "COURSEKIT-CHECK "
# Run in the seat's kernel: NAMES and the data check's paths are filled in. Prints one line: what failed.
PROBE = """\
import importlib, importlib.metadata as md, json, subprocess, sys
failed = []
for name in NAMES:
    try:
        dist = md.distribution(name)
        tops = (dist.read_text("top_level.txt") or "").split() or sorted(
            {f.parts[0].removesuffix(".py") for f in dist.files or () if f.suffix == ".py" and len(f.parts) < 3
             and not f.parts[0].endswith((".dist-info", ".data", ".egg-info"))})
        for top in tops[:1]:
            importlib.import_module(top)
    except Exception as exc:
        failed.append(f"import {name}: {type(exc).__name__}: {exc}"[:300])
if DATA:
    done = subprocess.run([sys.executable, DATA_PY, "verify", DATA_JSON, "~/data"], capture_output=True, text=True)
    if done.returncode:
        failed.append("data: " + " ".join((done.stdout + done.stderr).split())[-400:])
print(MARK + json.dumps(failed))
"""


@dataclass(frozen=True)
class SeatCheck:
    seat: str
    url: str
    problems: tuple[str, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.problems


def kernel_name(course: Course) -> str:
    """The kernelspec most of the course's notebooks name (python3 when none does)."""
    names: Counter[str] = Counter()
    for rel in list_notebooks(course.root):
        try:
            spec = json.loads((course.root / "notebooks" / rel).read_text()).get("metadata", {}).get("kernelspec") or {}
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            names[spec["name"]] += 1
    return names.most_common(1)[0][0] if names else "python3"


def probe_code(course: Course) -> str:
    """The probe for this course's packages and data (pure)."""
    names = []
    for text in course.image.python_packages:
        try:
            names.append(Requirement(text).name)
        except InvalidRequirement:
            continue  # validate refuses these; a check never stops on one
    return (f"NAMES = {names!r}\nDATA = {bool(course.data)!r}\nDATA_PY = {f'{SHARE}/data.py'!r}\nDATA_JSON = {f'{SHARE}/data.json'!r}\n"
            f"MARK = {MARK!r}\n{PROBE}")


def _message(session: str, code: str) -> tuple[str, str]:
    msg_id = uuid.uuid4().hex
    return msg_id, json.dumps({
        "header": {"msg_id": msg_id, "username": "coursekit-check", "session": session, "msg_type": "execute_request",
                   "version": "5.3", "date": datetime.now(timezone.utc).isoformat()},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False,
                    "stop_on_error": True},
    })


def run_in_kernel(client: SeatClient, kernel: str, code: str, timeout: float = KERNEL_SECONDS) -> str:
    """code's standard output, run in a new kernel of the seat (shut down after); CoursekitError saying what broke."""
    deadline = time.monotonic() + timeout
    status, started = client.get("/api/kernels", timeout=timeout, method="POST", body=json.dumps({"name": kernel}).encode())
    if status != 201 or not isinstance(started, dict) or not isinstance(started.get("id"), str):
        raise CoursekitError(f"kernel {kernel!r} did not start (HTTP {status or 'no answer'})")
    kernel_id, session = started["id"], uuid.uuid4().hex
    try:
        channel = client.websocket(f"/api/kernels/{kernel_id}/channels?session_id={session}",
                                   timeout=max(1.0, deadline - time.monotonic()))
        try:
            msg_id, message = _message(session, code)
            channel.send(message)
            output: list[str] = []
            while time.monotonic() < deadline:
                channel.settimeout(max(0.1, deadline - time.monotonic()))
                reply = json.loads(channel.recv())
                kind, content = reply.get("msg_type") or reply["header"]["msg_type"], reply.get("content") or {}
                if kind == "status" and content.get("execution_state") in ("dead", "restarting"):
                    raise CoursekitError(f"kernel {kernel!r} died ({content['execution_state']}) before it ran the probe")
                if (reply.get("parent_header") or {}).get("msg_id") != msg_id:
                    continue
                if kind == "stream":
                    output.append(str(content.get("text", "")))
                elif kind == "error":
                    raise CoursekitError(f"the probe failed in the kernel: {content.get('ename')}: {content.get('evalue')}"[:400])
                elif kind == "status" and content.get("execution_state") == "idle":
                    return "".join(output)
            raise CoursekitError(f"the kernel did not finish the probe in {timeout:.0f} s")
        except (OSError, ValueError, KeyError, websocket.WebSocketException) as exc:
            raise CoursekitError(f"the kernel's channel broke ({type(exc).__name__}: {exc})"[:400]) from None
        finally:
            channel.close()
    finally:
        client.get(f"/api/kernels/{kernel_id}", timeout=10, method="DELETE")


def check_seat(client: SeatClient, other_token: str, kernel: str, code: str) -> SeatCheck:
    """One seat, as its student: its credential, another's refused, a kernel running the probe."""
    started = time.monotonic()

    def done(*problems: str) -> SeatCheck:
        return SeatCheck(client.seat, f"{client.base_url}/", problems, time.monotonic() - started)

    try:
        status, _ = client.get("/api/status", timeout=20)
        if status != 200:
            return done(f"its credential does not open it (HTTP {status or 'no answer'})")
        other, _ = client.with_token(other_token).get("/api/status", timeout=20)
        problems = [] if other in (401, 403) else [f"another seat's credential is not refused (HTTP {other or 'no answer'})"]
        output = run_in_kernel(client, kernel, code)
        line = next((x for x in output.splitlines() if x.startswith(MARK)), None)
        if line is None:
            return done(*problems, f"the probe printed no result: {output.strip()[-200:]!r}")
        return done(*problems, *json.loads(line[len(MARK):]))
    except CoursekitError as exc:
        return done(str(exc))
    finally:
        client.close()


def check_all(course: Course, clients: dict[str, SeatClient], other: dict[str, str], workers: int = WORKERS) -> list[SeatCheck]:
    """Every seat in clients, other[seat] the credential it must refuse; in the clients' order."""
    kernel, code = kernel_name(course), probe_code(course)
    return each(lambda seat: check_seat(clients[seat], other[seat], kernel, code), list(clients), workers)
