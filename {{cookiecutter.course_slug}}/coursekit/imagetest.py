"""`coursekit test`: run the image as students get it and check it, with a report per check."""
from __future__ import annotations

import json
import secrets
import socket
from dataclasses import dataclass

import docker

from coursekit import engine, labels, probe
from coursekit.config import Course
from coursekit.image import COURSE_LABEL, IN_IMAGE, SHARE
from coursekit.seats import credential

# Runs inside the container with the image's own nbclient; prints one JSON line.
NOTEBOOK_RUNNER = r"""
import json, os, shutil, sys, tempfile
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
source, timeout = sys.argv[1], int(sys.argv[2])
work = tempfile.mkdtemp(prefix="coursekit-test-")
shutil.copytree(os.path.dirname(source), work, dirs_exist_ok=True)
path = os.path.join(work, os.path.basename(source))
nb = nbformat.read(path, as_version=4)
state = {"cell": None}
def on_cell_start(cell, cell_index):
    state["cell"] = cell_index
client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": work}},
                        on_cell_start=on_cell_start)
try:
    client.execute()
    result = {"ok": True, "cells": len(nb.cells)}
except CellTimeoutError:
    result = {"ok": False, "cell": state["cell"], "error": "timed out after %ds" % timeout}
except CellExecutionError as exc:
    result = {"ok": False, "cell": state["cell"], "error": "%s: %s" % (exc.ename, exc.evalue)}
except DeadKernelError as exc:
    result = {"ok": False, "cell": state["cell"], "error": "the kernel died: %s" % exc}
print("COURSEKIT-RESULT " + json.dumps(result))
"""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def notebooks(course: Course) -> list[str]:
    """Notebook paths relative to notebooks/, as the image holds them."""
    root = course.root / "notebooks"
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
    )


def _run_notebook(container, rel: str, timeout: int) -> Check:
    code, output = engine.exec_run(
        container, ["python3", "-c", NOTEBOOK_RUNNER, f"{IN_IMAGE}/notebooks/{rel}", str(timeout)], timeout=timeout + 30
    )
    name = f"notebook {rel}"
    lines = [line for line in output.splitlines() if line.startswith("COURSEKIT-RESULT ")]
    if code == 124:
        return Check(name, False, f"timed out after {timeout}s")
    if not lines:
        return Check(name, False, f"the runner failed (exit {code}): {output.strip()[-400:]}")
    result = json.loads(lines[-1].split(" ", 1)[1])
    if result["ok"]:
        return Check(name, True, f"{result['cells']} cells ran")
    cell = result["cell"]
    where = f"cell {cell + 1}" if cell is not None else "before the first cell"
    return Check(name, False, f"{where}: {result['error']}")


def _exec_check(container, name: str, command: list[str], passed: str) -> Check:
    code, output = engine.exec_run(container, command, timeout=300)
    return Check(name, code == 0, passed if code == 0 else output.strip()[-600:] or f"exit {code}")


def run_checks(
    client: docker.DockerClient, course: Course, image: str, network: str | None = None,
    notebook_timeout: int = 600, start_timeout: int = 180, secret: str | None = None,
) -> list[Check]:
    """Start the image like a student's seat and run every check; the container is always removed."""
    token = credential(secret or secrets.token_urlsafe(32), course.course.slug, "image-test")
    options: dict = {
        "environment": {"JUPYTER_TOKEN": token},
        "labels": {COURSE_LABEL: course.course.slug, labels.ROLE: "image-test"},
    }
    if network == "host":  # for data served on this machine's loopback, as the tests do
        port = _free_port()
        options.update(network_mode="host", environment={**options["environment"], "JUPYTER_PORT": str(port)})
    else:
        options.update(ports={"8888/tcp": ("127.0.0.1", None)})
    checks: list[Check] = []
    with engine.running(client, image, **options) as container:
        if network != "host":
            container.reload()
            port = int(container.ports["8888/tcp"][0]["HostPort"])
        url = f"http://127.0.0.1:{port}/api/status"

        try:
            probe.wait_ready(url, token, start_timeout, lambda: engine.stopped_reason(container))
        except (TimeoutError, RuntimeError) as exc:
            return [Check("server starts", False, str(exc))]
        checks.append(Check("server starts", True, f"answered on port {port}"))
        anonymous, _ = probe.get(url)
        wrong, _ = probe.get(url, token="x" + token[1:])
        checks.append(Check(
            "credential required", anonymous == 403 and wrong == 403,
            f"without a credential {anonymous}, with a wrong one {wrong} (403 expected)",
        ))
        checks.append(_exec_check(
            container, "data verified", ["python3", f"{SHARE}/data.py", "verify", f"{SHARE}/data.json", "~/data"],
            f"{len(course.data)} file(s) in ~/data match their sha256",
        ))
        checks += [_run_notebook(container, rel, notebook_timeout) for rel in notebooks(course)]
        checks.append(_exec_check(container, "pip check", ["pip", "check"], "no broken requirements"))
    return checks
