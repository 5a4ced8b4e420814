"""The Docker engine behind a small interface; SDK exceptions stop here."""
from __future__ import annotations

import io
import re
import tarfile
from collections import deque
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container

from coursekit.errors import BuildError, DockerError, PublishError

OUTPUT_TAIL = 15
# Terminal control sequences (colours, cursor moves) that pip and apt print; a message or a CI log shows them raw.
_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def plain(text: str) -> str:
    """text without terminal escape sequences or carriage-return redraws."""
    return _ANSI.sub("", text).split("\r")[-1]


def connect() -> docker.DockerClient:
    """A client for the local engine (DOCKER_HOST and friends honoured), or a DockerError saying what to do."""
    try:
        client = docker.from_env(timeout=300)
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        raise DockerError(
            f"cannot reach the Docker engine ({exc}). Start Docker (Docker Desktop, or `sudo systemctl start docker`) "
            "and check that `docker info` works for this user."
        ) from None


@dataclass
class BuildLog:
    """What a build printed: the current step and the last lines of its output."""

    step: str = ""
    tail: deque = field(default_factory=lambda: deque(maxlen=OUTPUT_TAIL))


def build(
    client: docker.DockerClient,
    context: Path,
    tag: str,
    buildargs: dict[str, str],
    labels: dict[str, str],
    on_step: Callable[[str], None] = lambda step: None,
    on_output: Callable[[str], None] = lambda line: None,
    network: str | None = None,
    nocache: bool = False,
    cache_from: list[str] | None = None,
    dockerfile: str = "Dockerfile",
) -> str:
    """Build context/dockerfile as tag, streaming progress; returns the image id or raises BuildError."""
    log = BuildLog()
    image_id = ""
    try:
        events = client.api.build(
            path=str(context), tag=tag, buildargs=buildargs, labels=labels, rm=True, forcerm=True, decode=True,
            network_mode=network, nocache=nocache, cache_from=cache_from or None, dockerfile=dockerfile,
        )
        for event in events:
            if "error" in event or "errorDetail" in event:
                detail = event.get("errorDetail", {}).get("message") or event.get("error", "unknown error")
                raise BuildError(_build_failure(log, plain(detail)))
            for line in map(plain, event.get("stream", "").splitlines()):
                if line.startswith("Step "):
                    log.step = line
                    log.tail.clear()
                    on_step(line)
                elif line.strip() and not line.startswith(" ---> "):
                    log.tail.append(line.rstrip())
                    on_output(line.rstrip())
            image_id = event.get("aux", {}).get("ID", image_id)
    except docker.errors.APIError as exc:
        raise BuildError(_build_failure(log, exc.explanation or str(exc))) from None
    except docker.errors.DockerException as exc:
        raise DockerError(f"the Docker engine failed during the build: {exc}") from None
    if not image_id:
        raise BuildError(_build_failure(log, "the engine reported no image"))
    return image_id


def _build_failure(log: BuildLog, detail: str) -> str:
    lines = [f"image build failed at {log.step or 'the start'}", f"  {detail.strip()}"]
    if log.tail:
        lines += ["last output:", *(f"  | {line}" for line in log.tail)]
    return "\n".join(lines)


def push(client: docker.DockerClient, repository: str, tag: str, auth: dict | None) -> str:
    """Push repository:tag; returns the digest the registry reported, or raises PublishError."""
    digest = ""
    try:
        for event in client.api.push(repository, tag, auth_config=auth, stream=True, decode=True):
            if "error" in event or "errorDetail" in event:
                detail = event.get("errorDetail", {}).get("message") or event.get("error")
                raise PublishError(f"the registry refused {repository}:{tag}: {detail}")
            digest = event.get("aux", {}).get("Digest", digest)
    except docker.errors.APIError as exc:
        raise PublishError(f"pushing {repository}:{tag} failed: {exc.explanation or exc}") from None
    if not digest:
        raise PublishError(f"pushing {repository}:{tag} reported no digest; the push did not complete")
    return digest


def pull(client: docker.DockerClient, reference: str, auth: dict | None = None) -> str:
    """Pull reference; returns the local image id, or raises DockerError saying why."""
    try:
        return client.images.pull(reference, auth_config=auth).id
    except docker.errors.APIError as exc:
        raise DockerError(f"cannot pull {reference}: {exc.explanation or exc}") from None


def registry_digest(client: docker.DockerClient, reference: str, auth: dict | None) -> str:
    """The manifest digest the registry now serves for reference."""
    try:
        return client.api.inspect_distribution(reference, auth_config=auth)["Descriptor"]["digest"]
    except docker.errors.APIError as exc:
        raise PublishError(f"cannot read {reference} back from the registry: {exc.explanation or exc}") from None


def login(client: docker.DockerClient, registry: str, username: str, password: str) -> dict:
    """Log in; returns the auth config for later calls. The password never reaches a message."""
    try:
        client.login(username=username, password=password, registry=registry, reauth=True)
    except docker.errors.APIError as exc:
        reason = (exc.explanation or str(exc)).replace(password, "***")
        raise PublishError(f"login to {registry} as {username} failed: {reason}; check REGISTRY_USERNAME and REGISTRY_PASSWORD") from None
    return {"username": username, "password": password, "serveraddress": registry}


@contextmanager
def running(client: docker.DockerClient, image: str, before_start: Callable[[Container], None] | None = None,
            **options) -> Iterator[Container]:
    """Create a container, let before_start prepare it (e.g. copy files in), start it, and always remove it
    (with its anonymous volumes), also on Ctrl-C."""
    container = None
    try:
        container = client.containers.create(image, **options)
        if before_start is not None:
            before_start(container)
        container.start()
        yield container
    except docker.errors.ImageNotFound:
        raise DockerError(f"image {image} is not here; build it first with `python -m coursekit build`") from None
    except docker.errors.APIError as exc:
        raise DockerError(f"the Docker engine refused to run {image}: {exc.explanation or exc}") from None
    finally:
        if container is not None:
            with suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)


def image_env(client: docker.DockerClient, reference: str) -> dict[str, str]:
    """The environment an image sets (ENV), as its containers start with it."""
    with guarded(f"reading the settings of {reference}"):
        pairs = client.images.get(reference).attrs.get("Config", {}).get("Env") or []
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def exec_run(container: Container, command: list[str], timeout: float | None = None) -> tuple[int, str]:
    """Run a command in a running container; returns (exit code, combined output)."""
    if timeout:
        command = ["timeout", "--kill-after=10", str(int(timeout)), *command]
    try:
        result = container.exec_run(command, demux=False)
    except docker.errors.APIError as exc:
        raise DockerError(f"cannot run {command[0]} in the container: {exc.explanation or exc}") from None
    return result.exit_code, (result.output or b"").decode("utf-8", "replace")


def wait(container: Container, timeout: float) -> dict | None:
    """Wait for a container to exit: {"code": exit code, "oom": killed for memory}, or None after timeout (then it is killed)."""
    try:
        code = container.wait(timeout=timeout)["StatusCode"]
    except (requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout):
        with suppress(docker.errors.DockerException):
            container.kill()
        return None
    except docker.errors.DockerException as exc:
        raise DockerError(f"waiting for container {container.name} failed: {exc}") from None
    container.reload()
    return {"code": code, "oom": bool(container.attrs["State"].get("OOMKilled"))}


def stopped_reason(container: Container) -> str | None:
    """Why a container that should be serving has stopped (with its last output), or None while it runs."""
    container.reload()
    if container.status in ("exited", "dead", "restarting"):
        return f"the container stopped before Jupyter answered:\n{logs_tail(container)}"
    return None


def logs_tail(container: Container, lines: int = 20) -> str:
    """The last lines the container printed."""
    try:
        return container.logs(tail=lines).decode("utf-8", "replace")
    except docker.errors.APIError:
        return ""


@contextmanager
def guarded(what: str) -> Iterator[None]:
    """Turn any Docker SDK failure inside the block into a DockerError that says what was being done."""
    try:
        yield
    except docker.errors.DockerException as exc:
        raise DockerError(f"{what} failed: {getattr(exc, 'explanation', None) or exc}") from None


SCRATCH = "coursekit/scratch:1"


def scratch_image(client: docker.DockerClient) -> str:
    """An empty image made here (no registry): the root of helper containers that are never started."""
    with guarded("preparing the archive helper image"):
        try:
            return client.images.get(SCRATCH).id
        except docker.errors.ImageNotFound:
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as tar:
                info = tarfile.TarInfo("home")
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            repository, tag = SCRATCH.split(":")
            client.api.import_image_from_data(buffer.getvalue(), repository=repository, tag=tag)
            return client.images.get(SCRATCH).id


@contextmanager
def _volume_helper(client: docker.DockerClient, volume: str, mount: str, mode: str, labels: dict[str, str], what: str):
    """A container holding the volume at mount, created but never started (no process, no network); always removed."""
    with guarded(what):
        helper = client.containers.create(
            scratch_image(client), command=["none"], volumes={volume: {"bind": mount, "mode": mode}},
            network_disabled=True, labels=labels,
        )
    try:
        with guarded(what):
            yield helper
    finally:
        with suppress(docker.errors.DockerException):
            helper.remove(force=True)


def volume_put(client: docker.DockerClient, volume: str, mount: str, data, labels: dict[str, str]) -> None:
    """Unpack a tar (top folder: mount's last part; bytes, chunks or a file) into a volume through a helper."""
    with _volume_helper(client, volume, mount, "rw", labels, f"writing into volume {volume}") as helper:
        if not helper.put_archive(mount.rsplit("/", 1)[0] or "/", data):
            raise DockerError(f"the engine did not unpack the home into volume {volume}")


def volume_tar(client: docker.DockerClient, volume: str, mount: str, labels: dict[str, str]) -> Iterator[bytes]:
    """Stream a volume's content as a tar (top folder: mount's last part) through a helper, the volume read-only."""
    with _volume_helper(client, volume, mount, "ro", labels, f"reading volume {volume}") as helper:
        chunks, _ = helper.get_archive(mount)
        yield from chunks
