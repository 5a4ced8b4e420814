"""`coursekit test`: run the image as students get it and check it, with a report per check."""
from __future__ import annotations

import json
import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from coursekit import labels
from coursekit.config import Course, NotebookSettings
from coursekit.engine import Container, Engine
from coursekit.fleet import registry
from coursekit.image import COURSE_LABEL, IN_IMAGE, SHARE
from coursekit.nbrunner import MARK
from coursekit.seatclient import SeatClient
from coursekit.seats import SeatTokens
from coursekit.sizes import memory_bytes
from coursekit.ui import warn
from coursekit.validate import list_notebooks

RUNNER = (Path(__file__).parent / "nbrunner.py").read_text()  # run in the image with `python3 -c`
HOME = "/home/jovyan"

@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float | None = None  # notebooks: wall time of the run, container start included
    skipped: bool = False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def notebooks(course: Course) -> list[str]:
    """Notebook paths relative to notebooks/, as the image holds them."""
    return list_notebooks(course.root)


@dataclass(frozen=True)
class SeatLimits:
    """What one seat may use, applied to each notebook's container."""

    cpus: float
    memory: str
    source: str = ""  # where course.yaml sets it, for messages

    @property
    def memory_bytes(self) -> int:
        return memory_bytes(self.memory) or 0


def seat_limits(course: Course) -> SeatLimits:
    """What one seat of the course's provider has (its section says: limits as set, or a VM's whole flavor)."""
    size = registry.section(course.fleet.provider).seat_size(course.fleet)
    return SeatLimits(size.cpus, size.memory, size.source)


def within_engine(docker: Engine, limits: SeatLimits) -> SeatLimits:
    """The seat's limits, cut to what this engine has (a CI runner has 2 or 4 CPUs, a VM seat may have 8), with a
    warning saying so: the notebooks still run, with less than a seat will have."""
    info = docker.info()
    cpus, total = float(info.get("NCPU") or limits.cpus), int(info.get("MemTotal") or 0)
    fitted = SeatLimits(min(limits.cpus, cpus), limits.memory if not total or limits.memory_bytes <= total
                        else f"{total // 2**20}m", limits.source)
    if fitted != limits:
        warn(f"a seat has {limits.cpus:g} CPUs and {limits.memory} of memory; this machine has {cpus:g} CPUs and "
             f"{total / 2**30:.1f} GiB, so the notebooks run with {fitted.cpus:g} CPUs and {fitted.memory} "
             "(a notebook that fits here fits a seat)")
    return fitted


def parallelism(docker: Engine, limits: SeatLimits, count: int) -> int:
    """How many notebooks run at once: as many seats as the engine's CPUs and memory hold, at least one."""
    info = docker.info()
    by_cpu = int(info.get("NCPU", 1) // max(1.0, limits.cpus))
    by_memory = int(info.get("MemTotal", 0) // max(1, limits.memory_bytes))
    return max(1, min(count, by_cpu, by_memory))


def _summary(result: dict) -> str:
    parts = [f"{result['ran']} code cell{'s' if result['ran'] != 1 else ''} ran"]
    if result.get("skipped"):
        parts.append(f"{result['skipped']} skipped by tag")
    if result.get("expected_errors"):
        parts.append(f"{result['expected_errors']} expected error{'s' if result['expected_errors'] != 1 else ''} (raises-exception)")
    if result.get("allowed_errors"):
        parts.append(f"{result['allowed_errors']} error{'s' if result['allowed_errors'] != 1 else ''} allowed")
    return ", ".join(parts) + f" ({result['kernel']} kernel)"


def _describe_failure(result: dict) -> str:
    if "cell" not in result:
        return result["error"]
    where = f"code cell {result['cell']}" if result["cell"] else "before the first cell"
    lines = [f"{where}: {result['error']}"]
    if result.get("line"):
        lines.append(f"  at: {result['line']}")
    lines += [f"  | {line}" for line in result.get("traceback", [])]
    return "\n".join(lines)


def _run_notebook(docker: Engine, image: str, rel: str, settings: NotebookSettings, timeout: int,
                  limits: SeatLimits, options: dict, seed: Callable[[Container], None] | None) -> Check:
    """One notebook in a container of its own with the seat's limits, started like a seat (hooks, data)."""
    name = f"notebook {rel}"
    if settings.skip:
        return Check(name, True, f"skipped: {settings.skip}", skipped=True)
    command = ["/usr/local/bin/start.sh", "python3", "-c", RUNNER, f"{IN_IMAGE}/notebooks/{rel}", str(timeout),
               "1" if settings.allow_errors else "0"]
    started = time.monotonic()
    with docker.running(image, seed, command=command, nano_cpus=int(limits.cpus * 1e9), mem_limit=limits.memory,
                        memswap_limit=limits.memory, **options) as container:
        exited = docker.wait(container, timeout + 120)
        output = docker.logs_tail(container, 200)
    seconds = time.monotonic() - started
    if exited is None:
        return Check(name, False, f"timed out after {timeout}s", seconds)
    if exited.get("oom"):
        return Check(name, False, f"ran out of memory: the seat's limit is {limits.memory} ({limits.source})", seconds)
    marks = [line for line in output.splitlines() if line.startswith(MARK)]
    if not marks:
        return Check(name, False, f"the runner failed (exit {exited['code']}): {output.strip()[-400:]}", seconds)
    result = json.loads(marks[-1][len(MARK):])
    return Check(name, result["ok"], _summary(result) if result["ok"] else _describe_failure(result), seconds)


def run_notebooks(docker: Engine, course: Course, image: str, options: dict, timeout: int | None = None,
                  seed: Callable[[Container], None] | None = None) -> tuple[list[Check], float, int]:
    """Every notebook as course.yaml's test settings say, in parallel; (checks, wall seconds, workers).
    seed prepares each notebook's container before it starts (run_checks copies the verified data in)."""
    limits = within_engine(docker, seat_limits(course))
    found = notebooks(course)
    workers = parallelism(docker, limits, len(found))
    started = time.monotonic()

    def one(rel: str) -> Check:
        settings = course.test.for_notebook(rel)
        return _run_notebook(docker, image, rel, settings, settings.timeout or timeout or course.test.timeout, limits, options, seed)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        checks = list(pool.map(one, found))
    return checks, time.monotonic() - started, workers


def wrong_token(token: str) -> str:
    """A credential that differs from token in its first character only (a random token may start with "x")."""
    return ("y" if token[0] == "x" else "x") + token[1:]


def _answer(client: SeatClient, tries: int = 3) -> int:
    """The HTTP status /api/status answers (0: none); a moment without an answer on a busy machine is asked again."""
    try:
        for _ in range(tries):
            status, _ = client.get("/api/status", timeout=10)
            if status:
                return status
            time.sleep(1)
        return 0
    finally:
        client.close()


def _exec_check(docker: Engine, container: Container, name: str, command: list[str], passed: str) -> Check:
    code, output = docker.exec_run(container, command, timeout=300)
    return Check(name, code == 0, passed if code == 0 else output.strip()[-600:] or f"exit {code}")


def run_checks(
    docker: Engine, course: Course, image: str, network: str | None = None,
    notebook_timeout: int | None = None, start_timeout: int = 180, tokens: SeatTokens | None = None,
) -> list[Check]:
    """Start the image like a student's seat and run every check; the container is always removed."""
    token = (tokens or SeatTokens(secrets.token_urlsafe(32), course.course.slug)).token("image-test")
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
    with docker.running(image, **options) as container:
        if network != "host":
            port = container.host_port
        jupyter = SeatClient("image-test", f"http://127.0.0.1:{port}", token)
        try:
            jupyter.wait_ready(start_timeout, lambda: docker.stopped_reason(container))
        except (TimeoutError, RuntimeError) as exc:
            return [Check("server starts", False, str(exc))]
        checks.append(Check("server starts", True, f"answered on port {port}"))
        anonymous, wrong = _answer(jupyter.with_token("")), _answer(jupyter.with_token(wrong_token(token)))
        checks.append(Check(
            "credential required", anonymous == 403 and wrong == 403,
            f"without a credential {anonymous}, with a wrong one {wrong} (403 expected)",
        ))
        checks.append(_exec_check(
            docker, container, "data verified", ["python3", f"{SHARE}/data.py", "verify", f"{SHARE}/data.json", "~/data"],
            f"{len(course.data)} file(s) in ~/data match their sha256",
        ))
        checks.append(_exec_check(docker, container, "pip check", ["pip", "check"], "no broken requirements"))
        notebook_options = {k: v for k, v in options.items() if k in ("labels", "network_mode")}

        def seed(notebook_container) -> None:
            """The data this container fetched and verified, so each notebook's start finds it there."""
            what = "copying the course data into a notebook's container"
            docker.put_archive(notebook_container, HOME, docker.get_archive(container, f"{HOME}/data", what), what)

        ran, wall, workers = run_notebooks(docker, course, image, notebook_options, notebook_timeout,
                                           seed if course.data else None)
    return [*checks, *ran, _timing(ran, wall, workers)]


def _timing(checks: list[Check], wall: float, workers: int) -> Check:
    """Serial (the notebooks' own times added up) against parallel (the wall clock) time."""
    serial = sum(c.seconds or 0 for c in checks)
    return Check("notebook timing", True,
                 f"{len(checks)} notebooks in {wall:.1f}s with {workers} at a time; one after another they took {serial:.1f}s")
