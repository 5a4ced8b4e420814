"""The Docker engine behind a small interface: every Docker SDK call of coursekit goes through Engine, and every SDK
error stops here as a DockerError (a CoursekitError) naming what was being done. Containers and volumes come back as
plain records, so the rest of coursekit, and a fake engine in the tests, never see the SDK's objects."""
from __future__ import annotations

import io
import re
import tarfile
from collections import deque
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import docker
import docker.errors
import requests.exceptions

from coursekit.errors import BuildError, DockerError, PublishError

OUTPUT_TAIL = 15
SCRATCH = "coursekit/scratch:1"
JUPYTER_PORT = "8888/tcp"
# Terminal control sequences (colours, cursor moves) that pip and apt print; a message or a CI log shows them raw.
_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def plain(text: str) -> str:
    """text without terminal escape sequences or carriage-return redraws."""
    return _ANSI.sub("", text).split("\r")[-1]


@contextmanager
def guarded(what: str) -> Iterator[None]:
    """Turn any Docker SDK failure inside the block into a DockerError that says what was being done."""
    try:
        yield
    except docker.errors.DockerException as exc:
        raise DockerError(f"{what} failed: {getattr(exc, 'explanation', None) or exc}") from None


@dataclass(frozen=True)
class Container:
    """A container as the engine last described it."""

    id: str
    name: str
    labels: dict[str, str]
    status: str  # created, running, exited, dead, restarting...
    image_id: str
    image: str  # the reference it was created from
    started_at: str = ""
    finished_at: str = ""
    exit_code: int | None = None
    restart_policy: str = ""
    oom_killed: bool = False
    host_port: int | None = None  # where Jupyter's port is published on the host


@dataclass(frozen=True)
class Volume:
    name: str
    labels: dict[str, str]
    options: dict[str, str] | None = None  # driver options (a bounded home's device)
    mountpoint: str = ""


@dataclass
class BuildLog:
    """What a build printed: the current step and the last lines of its output."""

    step: str = ""
    tail: deque = field(default_factory=lambda: deque(maxlen=OUTPUT_TAIL))


def _container(sdk) -> Container:
    attrs = sdk.attrs
    state, host = attrs.get("State") or {}, attrs.get("HostConfig") or {}
    published = ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(JUPYTER_PORT) or []
    return Container(sdk.id, sdk.name, dict(sdk.labels or {}), sdk.status, attrs.get("Image", ""),
                     (attrs.get("Config") or {}).get("Image", ""), state.get("StartedAt", ""), state.get("FinishedAt", ""),
                     state.get("ExitCode"), (host.get("RestartPolicy") or {}).get("Name", ""), bool(state.get("OOMKilled")),
                     int(published[0]["HostPort"]) if published else None)


def _volume(sdk) -> Volume:
    return Volume(sdk.name, dict(sdk.attrs.get("Labels") or {}), sdk.attrs.get("Options"), sdk.attrs.get("Mountpoint", ""))


def _id(ref: Container | str) -> str:
    return ref.id if isinstance(ref, Container) else ref


class Engine:
    """One Docker engine (DOCKER_HOST and friends honoured)."""

    def __init__(self, client: docker.DockerClient):
        self.client = client

    @classmethod
    def connect(cls) -> Engine:
        """The local engine, or a DockerError saying what to do."""
        try:
            client = docker.from_env(timeout=300)
            client.ping()
            return cls(client)
        except docker.errors.DockerException as exc:
            raise DockerError(
                f"cannot reach the Docker engine ({exc}). Start Docker (Docker Desktop, or `sudo systemctl start docker`) "
                "and check that `docker info` works for this user."
            ) from None

    @property
    def base_url(self) -> str:
        """Where the engine is reached (http+docker://localhost for its own machine's socket)."""
        return self.client.api.base_url

    def info(self) -> dict:
        """The engine's own description (NCPU, MemTotal...)."""
        with guarded("reading the Docker engine's resources"):
            return self.client.info()

    # Images ---------------------------------------------------------------------------------------

    def image_id(self, ref: str) -> str | None:
        """The local image id of ref, None when it is not here."""
        try:
            return self.client.images.get(ref).id
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.DockerException as exc:
            raise DockerError(f"cannot look up image {ref}: {getattr(exc, 'explanation', None) or exc}") from None

    def image_env(self, ref: str) -> dict[str, str]:
        """The environment an image sets (ENV), as its containers start with it."""
        with guarded(f"reading the settings of {ref}"):
            pairs = self.client.images.get(ref).attrs.get("Config", {}).get("Env") or []
        return dict(pair.split("=", 1) for pair in pairs if "=" in pair)

    def image_name(self, image_id: str) -> str:
        """An image's first tag, else its short id."""
        with suppress(docker.errors.DockerException):
            return (self.client.images.get(image_id).tags or [image_id[:19]])[0]
        return image_id[:19]

    def image_size(self, ref: str) -> int:
        with guarded(f"reading the size of {ref}"):
            return int(self.client.images.get(ref).attrs.get("Size") or 0)

    def tag(self, ref: str, repository: str, tag: str) -> None:
        with guarded(f"tagging {repository}:{tag}"):
            self.client.images.get(ref).tag(repository, tag)

    def build(self, context: Path, tag: str, buildargs: dict[str, str], labels: dict[str, str],
              on_step: Callable[[str], None] = lambda step: None, on_output: Callable[[str], None] = lambda line: None,
              network: str | None = None, nocache: bool = False, cache_from: list[str] | None = None,
              dockerfile: str = "Dockerfile") -> str:
        """Build context/dockerfile as tag, streaming progress; returns the image id or raises BuildError."""
        log = BuildLog()
        image_id = ""
        try:
            events = self.client.api.build(
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

    def push(self, repository: str, tag: str, auth: dict | None) -> str:
        """Push repository:tag; returns the digest the registry reported, or raises PublishError."""
        digest = ""
        try:
            for event in self.client.api.push(repository, tag, auth_config=auth, stream=True, decode=True):
                if "error" in event or "errorDetail" in event:
                    detail = event.get("errorDetail", {}).get("message") or event.get("error")
                    raise PublishError(f"the registry refused {repository}:{tag}: {detail}")
                digest = event.get("aux", {}).get("Digest", digest)
        except docker.errors.APIError as exc:
            raise PublishError(f"pushing {repository}:{tag} failed: {exc.explanation or exc}") from None
        if not digest:
            raise PublishError(f"pushing {repository}:{tag} reported no digest; the push did not complete")
        return digest

    def pull(self, reference: str, auth: dict | None = None) -> str:
        """Pull reference; returns the local image id, or raises DockerError saying why."""
        try:
            return self.client.images.pull(reference, auth_config=auth).id
        except docker.errors.APIError as exc:
            raise DockerError(f"cannot pull {reference}: {exc.explanation or exc}") from None

    def registry_digest(self, reference: str, auth: dict | None) -> str:
        """The manifest digest the registry now serves for reference."""
        try:
            return self.client.api.inspect_distribution(reference, auth_config=auth)["Descriptor"]["digest"]
        except docker.errors.APIError as exc:
            raise PublishError(f"cannot read {reference} back from the registry: {exc.explanation or exc}") from None

    def login(self, registry: str, username: str, password: str) -> dict:
        """Log in; returns the auth config for later calls. The password never reaches a message."""
        try:
            self.client.login(username=username, password=password, registry=registry, reauth=True)
        except docker.errors.APIError as exc:
            reason = (exc.explanation or str(exc)).replace(password, "***")
            raise PublishError(f"login to {registry} as {username} failed: {reason}; check REGISTRY_USERNAME and REGISTRY_PASSWORD") from None
        return {"username": username, "password": password, "serveraddress": registry}

    def scratch_image(self) -> str:
        """An empty image made here (no registry): the root of helper containers that are never started."""
        if found := self.image_id(SCRATCH):
            return found
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo("home")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        repository, tag = SCRATCH.split(":")
        with guarded("preparing the archive helper image"):
            self.client.api.import_image_from_data(buffer.getvalue(), repository=repository, tag=tag)
            return self.client.images.get(SCRATCH).id

    # Containers -----------------------------------------------------------------------------------

    def containers(self, filters: dict, what: str = "listing containers") -> list[Container]:
        """Every container (running or not) matching the engine's filters."""
        with guarded(what):
            return [_container(c) for c in self.client.containers.list(all=True, filters=filters)]

    def container(self, ref: Container | str) -> Container:
        """A container as it is now."""
        with guarded(f"reading container {getattr(ref, 'name', ref)}"):
            return _container(self.client.containers.get(_id(ref)))

    def create(self, image: str, what: str = "creating a container", **options: Any) -> Container:
        """A container created, not started (the engine checks every option here)."""
        with guarded(what):
            return _container(self.client.containers.create(image, **options))

    def start(self, ref: Container | str, what: str = "starting a container") -> None:
        with guarded(what):
            self.client.containers.get(_id(ref)).start()

    def stop(self, ref: Container | str, what: str = "stopping a container", timeout: int = 10) -> None:
        with guarded(what):
            self.client.containers.get(_id(ref)).stop(timeout=timeout)

    def restart(self, ref: Container | str, what: str = "restarting a container", timeout: int = 10) -> None:
        with guarded(what):
            self.client.containers.get(_id(ref)).restart(timeout=timeout)

    def set_restart(self, ref: Container | str, policy: str, what: str = "changing a container's restart policy") -> None:
        with guarded(what):
            self.client.containers.get(_id(ref)).update(restart_policy={"Name": policy})

    def rename(self, ref: Container | str, name: str) -> None:
        with guarded(f"renaming a container to {name}"):
            self.client.containers.get(_id(ref)).rename(name)

    def remove(self, ref: Container | str, what: str = "removing a container", volumes: bool = False) -> None:
        """Remove a container (running or not); one already gone is no error."""
        with guarded(what), suppress(docker.errors.NotFound):
            self.client.containers.get(_id(ref)).remove(force=True, v=volumes)

    def put_archive(self, ref: Container | str, path: str, data: bytes | Iterable[bytes] | io.IOBase, what: str) -> None:
        """Unpack a tar into the container at path."""
        with guarded(what):
            if not self.client.containers.get(_id(ref)).put_archive(path, data):
                raise DockerError(f"{what} failed: the engine did not unpack it")

    def get_archive(self, ref: Container | str, path: str, what: str) -> Iterator[bytes]:
        """path in the container as a tar stream."""
        with guarded(what):
            chunks, _ = self.client.containers.get(_id(ref)).get_archive(path)
            yield from chunks

    def exec_run(self, ref: Container | str, command: list[str], timeout: float | None = None) -> tuple[int, str]:
        """Run a command in a running container; returns (exit code, combined output)."""
        if timeout:
            command = ["timeout", "--kill-after=10", str(int(timeout)), *command]
        try:
            result = self.client.containers.get(_id(ref)).exec_run(command, demux=False)
        except docker.errors.APIError as exc:
            raise DockerError(f"cannot run {command[0]} in the container: {exc.explanation or exc}") from None
        return result.exit_code, (result.output or b"").decode("utf-8", "replace")

    def wait(self, ref: Container | str, timeout: float) -> dict | None:
        """Wait for a container to exit: {"code": exit code, "oom": killed for memory}, or None after timeout (then it
        is killed)."""
        try:
            sdk = self.client.containers.get(_id(ref))
            code = sdk.wait(timeout=timeout)["StatusCode"]
        except (requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout):
            with suppress(docker.errors.DockerException):
                self.client.containers.get(_id(ref)).kill()
            return None
        except docker.errors.DockerException as exc:
            raise DockerError(f"waiting for container {getattr(ref, 'name', ref)} failed: {exc}") from None
        return {"code": code, "oom": self.container(ref).oom_killed}

    def stopped_reason(self, ref: Container | str) -> str | None:
        """Why a container that should be serving has stopped (with its last output), or None while it runs."""
        if self.container(ref).status in ("exited", "dead", "restarting"):
            return f"the container stopped before Jupyter answered:\n{self.logs_tail(ref)}"
        return None

    def logs_tail(self, ref: Container | str, lines: int = 20) -> str:
        """The last lines the container printed."""
        try:
            return self.client.containers.get(_id(ref)).logs(tail=lines).decode("utf-8", "replace")
        except docker.errors.DockerException:
            return ""

    @contextmanager
    def running(self, image: str, before_start: Callable[[Container], None] | None = None, **options) -> Iterator[Container]:
        """Create a container, let before_start prepare it (e.g. copy files in), start it, and always remove it (with
        its anonymous volumes), also on Ctrl-C. Yields it as it is once started."""
        created = None
        try:
            try:
                created = self.client.containers.create(image, **options)
                if before_start is not None:
                    before_start(_container(created))
                created.start()
                created.reload()
            except docker.errors.ImageNotFound:
                raise DockerError(f"image {image} is not here; build it first with `python -m coursekit build`") from None
            except docker.errors.APIError as exc:
                raise DockerError(f"the Docker engine refused to run {image}: {exc.explanation or exc}") from None
            yield _container(created)
        finally:
            if created is not None:
                with suppress(docker.errors.DockerException):
                    created.remove(force=True, v=True)

    # Volumes and networks -------------------------------------------------------------------------

    def volumes(self, filters: dict, what: str = "listing volumes") -> list[Volume]:
        with guarded(what):
            return [_volume(v) for v in self.client.volumes.list(filters=filters)]

    def volume(self, name: str) -> Volume:
        with guarded(f"reading volume {name}"):
            return _volume(self.client.volumes.get(name))

    def create_volume(self, name: str, labels: dict[str, str], driver_opts: dict[str, str] | None = None,
                      what: str = "creating a volume") -> str:
        with guarded(what):
            return self.client.volumes.create(name, labels=labels, **({"driver_opts": driver_opts} if driver_opts else {})).name

    def remove_volume(self, name: str, what: str = "removing a volume") -> None:
        """Remove a volume; one already gone is no error."""
        with guarded(what), suppress(docker.errors.NotFound):
            self.client.volumes.get(name).remove(force=True)

    def volume_sizes(self) -> dict[str, int]:
        """volume name → bytes the engine counts in it (-1: not counted); empty when the engine cannot say."""
        try:
            return {v["Name"]: v.get("UsageData", {}).get("Size", -1) for v in self.client.df().get("Volumes") or []}
        except docker.errors.DockerException:
            return {}

    @contextmanager
    def _volume_helper(self, volume: str, mount: str, mode: str, labels: dict[str, str], what: str) -> Iterator[Any]:
        """A container holding the volume at mount, created but never started (no process, no network); always removed."""
        with guarded(what):
            helper = self.client.containers.create(
                self.scratch_image(), command=["none"], volumes={volume: {"bind": mount, "mode": mode}},
                network_disabled=True, labels=labels,
            )
        try:
            with guarded(what):
                yield helper
        finally:
            with suppress(docker.errors.DockerException):
                helper.remove(force=True)

    def volume_put(self, volume: str, mount: str, data, labels: dict[str, str]) -> None:
        """Unpack a tar (top folder: mount's last part; bytes, chunks or a file) into a volume through a helper."""
        with self._volume_helper(volume, mount, "rw", labels, f"writing into volume {volume}") as helper:
            if not helper.put_archive(mount.rsplit("/", 1)[0] or "/", data):
                raise DockerError(f"the engine did not unpack the home into volume {volume}")

    def volume_tar(self, volume: str, mount: str, labels: dict[str, str]) -> Iterator[bytes]:
        """Stream a volume's content as a tar (top folder: mount's last part) through a helper, the volume read-only."""
        with self._volume_helper(volume, mount, "ro", labels, f"reading volume {volume}") as helper:
            chunks, _ = helper.get_archive(mount)
            yield from chunks

    def networks(self, filters: dict, names: list[str] | None = None) -> list[str]:
        """Names of the networks matching filters (and names)."""
        with guarded("listing networks"):
            return [n.name for n in self.client.networks.list(names=names, filters=filters)]

    def create_network(self, name: str, labels: dict[str, str], options: dict[str, str]) -> None:
        with guarded(f"creating network {name}"):
            self.client.networks.create(name, driver="bridge", labels=labels, options=options)

    def remove_network(self, name: str) -> None:
        with guarded(f"removing network {name}"), suppress(docker.errors.NotFound):
            self.client.networks.get(name).remove()


def _build_failure(log: BuildLog, detail: str) -> str:
    lines = [f"image build failed at {log.step or 'the start'}", f"  {detail.strip()}"]
    if log.tail:
        lines += ["last output:", *(f"  | {line}" for line in log.tail)]
    return "\n".join(lines)
