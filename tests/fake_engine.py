"""A Docker engine in memory, behind coursekit's own Engine interface, for the fast lane.

It keeps what the real engine keeps for the docker provider: images (id, ENV), containers (name, labels, options,
state, restart policy, start and finish times), volumes (a real folder each, the home's content) and networks,
found by the same label filters. Names conflict as the engine's do, and every failure is a DockerError. A started
seat container serves its Jupyter like the emulator's seats (os_emulator.SeatStandIn: /api/status and the contents
API, guarded by its JUPYTER_TOKEN) on the host port its options publish, so readiness, tokens and links are tested
over real HTTP. Archives of volumes go through the VM home streamer's own tar writer and reader (any name, links,
hidden folders).

A container on a network that does not exist is refused, as the engine refuses it.

Faults (attributes, switchable while it runs):
    broken_images   image references whose containers exit at once (exit code 1, a log line), as a bad image does
    fail_creates    the next N container creates fail, as an engine that refuses an option does
"""
from __future__ import annotations

import io
import itertools
import tempfile
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from os_emulator import SeatStandIn, homestream

HOME = "/home/jovyan"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Box:
    """One container and what it was created with."""

    id: str
    name: str
    image: str
    image_id: str
    labels: dict
    env: dict
    volumes: dict
    port: tuple[str, int] | None
    restart_policy: str
    status: str = "created"
    started_at: str = "0001-01-01T00:00:00Z"
    finished_at: str = "0001-01-01T00:00:00Z"
    exit_code: int | None = 0
    serving: SeatStandIn | None = None
    log: list[str] = field(default_factory=list)


class FakeEngine:
    """coursekit.engine.Engine's interface over state in memory and folders under root."""

    def __init__(self, root: Path, ncpu: int = 2, memory: int = 8 << 30):
        from coursekit.engine import Container, Volume
        from coursekit.errors import DockerError

        self._Container, self._Volume, self._Error = Container, Volume, DockerError
        self.root, self.ncpu, self.memory = root, ncpu, memory
        self.base_url = "http+docker://fake"  # not this machine's socket: homes are not bounded here
        self.images: dict[str, dict] = {}
        self.boxes: dict[str, _Box] = {}
        self.volumes_: dict[str, dict] = {}
        self.networks_: dict[str, dict] = {}
        self.broken_images: set[str] = set()
        self.fail_creates = 0
        self.calls: list[str] = []
        self._lock = threading.RLock()
        self._ids = itertools.count(1)

    # What a test sets up and looks at ----------------------------------------------------------------

    def add_image(self, ref: str, env: dict[str, str] | None = None) -> str:
        """An image here under ref (as `docker build` or a pull leaves it); returns its id."""
        image_id = f"sha256:{uuid.uuid4().hex}{uuid.uuid4().hex}"
        self.images[ref] = {"id": image_id, "env": dict(env or {})}
        return image_id

    def home(self, volume: str) -> Path:
        """The folder that is the volume (what /home/jovyan holds in a seat)."""
        return self.volumes_[volume]["path"]

    def stop_all(self) -> None:
        for box in list(self.boxes.values()):
            self._halt(box)

    # The interface ------------------------------------------------------------------------------------

    def info(self) -> dict:
        return {"NCPU": self.ncpu, "MemTotal": self.memory}

    def image_id(self, ref: str) -> str | None:
        found = self.images.get(ref) or next((i for i in self.images.values() if i["id"] == ref), None)
        return found["id"] if found else None

    def pull(self, reference: str, auth: dict | None = None) -> str:
        raise self._Error(f"cannot pull {reference}: pull access denied (this engine has no registry)")

    def image_env(self, ref: str) -> dict[str, str]:
        return dict(self._image(ref)["env"])

    def image_name(self, image_id: str) -> str:
        return next((ref for ref, i in self.images.items() if i["id"] == image_id), image_id[:19])

    def _image(self, ref: str) -> dict:
        found = self.images.get(ref) or next((i for i in self.images.values() if i["id"] == ref), None)
        if found is None:
            raise self._Error(f"No such image: {ref}")
        return found

    def containers(self, filters: dict, what: str = "") -> list:
        with self._lock:
            return [self._record(b) for b in self.boxes.values() if self._matches(b.labels, filters)]

    def container(self, ref) -> object:
        return self._record(self._box(ref))

    def create(self, image: str, what: str = "creating a container", **options) -> object:
        with self._lock:
            self.calls.append(f"create {options.get('name')}")
            if self.fail_creates:
                self.fail_creates -= 1
                raise self._Error(f"{what} failed: the engine refused the container's options (a fault of the fake)")
            found = self._image(image)
            name = options.get("name") or f"fake-{next(self._ids)}"
            if any(b.name == name for b in self.boxes.values()):
                raise self._Error(f'{what} failed: Conflict. The container name "/{name}" is already in use')
            network = options.get("network")
            if network and network not in self.networks_:
                raise self._Error(f"{what} failed: network {network} not found")
            for volume in options.get("volumes", {}):
                if volume not in self.volumes_:
                    self.create_volume(volume, {})
            published = (options.get("ports") or {}).get("8888/tcp")
            box = _Box(uuid.uuid4().hex, name, image, found["id"], dict(options.get("labels") or {}),
                       {**found["env"], **(options.get("environment") or {})}, dict(options.get("volumes") or {}),
                       tuple(published) if published else None, (options.get("restart_policy") or {}).get("Name", ""))
            self.boxes[box.id] = box
            return self._record(box)

    def start(self, ref, what: str = "") -> None:
        box = self._box(ref)
        with self._lock:
            if box.status == "running":
                return
            box.started_at, box.status = _now(), "running"
            if box.image in self.broken_images or box.image_id in {self.image_id(r) for r in self.broken_images}:
                box.log.append("start-notebook.sh: exec failed: this image cannot start Jupyter")
                box.status, box.exit_code, box.finished_at = "exited", 1, _now()
                return
        if box.port is not None:
            home = next((self.home(v) for v, m in box.volumes.items() if m["bind"] == HOME), self.root / "no-home")
            base = next((a.split("=", 1)[1] for a in box.env.get("NOTEBOOK_ARGS", "").split() if a.startswith("--ServerApp.base_url=")), "/")
            try:
                box.serving = SeatStandIn(box.port[0], box.port[1], box.env.get("JUPYTER_TOKEN", ""), box.image, None, home,
                                          prefix=base.rstrip("/"))
            except OSError as exc:
                box.status, box.exit_code = "created", 128
                raise self._Error(f"{what or 'starting a container'} failed: driver failed programming external connectivity: "
                                  f"Bind for {box.port[0]}:{box.port[1]} failed: {exc.strerror}") from None

    def stop(self, ref, what: str = "", timeout: int = 10) -> None:
        self._halt(self._box(ref), 0)

    def restart(self, ref, what: str = "", timeout: int = 10) -> None:
        self.stop(ref)
        self.start(ref, what)

    def set_restart(self, ref, policy: str, what: str = "") -> None:
        self._box(ref).restart_policy = policy

    def rename(self, ref, name: str) -> None:
        with self._lock:
            if any(b.name == name for b in self.boxes.values()):
                raise self._Error(f'renaming a container to {name} failed: Conflict. The name "/{name}" is already in use')
            self._box(ref).name = name

    def remove(self, ref, what: str = "", volumes: bool = False) -> None:
        with self._lock:
            box = self._find(ref)
            if box is None:
                return
            self._halt(box)
            del self.boxes[box.id]

    def put_archive(self, ref, path: str, data, what: str) -> None:
        raise self._Error(f"{what} failed: this fake engine has no container filesystems")

    def get_archive(self, ref, path: str, what: str) -> Iterator[bytes]:
        raise self._Error(f"{what} failed: this fake engine has no container filesystems")

    def stopped_reason(self, ref) -> str | None:
        box = self._box(ref)
        if box.status in ("exited", "dead", "restarting"):
            return f"the container stopped before Jupyter answered:\n{self.logs_tail(ref)}"
        return None

    def logs_tail(self, ref, lines: int = 20) -> str:
        return "\n".join(self._box(ref).log[-lines:])

    # Volumes and networks -------------------------------------------------------------------------------

    def volumes(self, filters: dict, what: str = "") -> list:
        with self._lock:
            return [self._Volume(name, dict(v["labels"]), v["options"], str(v["path"]))
                    for name, v in self.volumes_.items() if self._matches(v["labels"], filters)]

    def volume(self, name: str) -> object:
        if name not in self.volumes_:
            raise self._Error(f"reading volume {name} failed: get {name}: no such volume")
        v = self.volumes_[name]
        return self._Volume(name, dict(v["labels"]), v["options"], str(v["path"]))

    def create_volume(self, name: str, labels: dict, driver_opts: dict | None = None, what: str = "") -> str:
        with self._lock:
            if name not in self.volumes_:
                path = Path(tempfile.mkdtemp(prefix="volume-", dir=self.root))
                self.volumes_[name] = {"labels": dict(labels), "options": driver_opts, "path": path}
            return name

    def remove_volume(self, name: str, what: str = "") -> None:
        with self._lock:
            users = [b.name for b in self.boxes.values() if name in b.volumes]
            if users:
                raise self._Error(f"{what or 'removing a volume'} failed: remove {name}: volume is in use - [{', '.join(users)}]")
            self.volumes_.pop(name, None)

    def volume_sizes(self) -> dict[str, int]:
        return {name: sum(p.lstat().st_size for p in v["path"].rglob("*")) for name, v in self.volumes_.items()}

    def volume_tar(self, volume: str, mount: str, labels: dict) -> Iterator[bytes]:
        buffer = io.BytesIO()
        homestream.write_tar(str(self.home(volume)), buffer)
        yield buffer.getvalue()

    def volume_put(self, volume: str, mount: str, data, labels: dict) -> None:
        source = data if hasattr(data, "read") else io.BytesIO(data if isinstance(data, bytes) else b"".join(data))
        homestream.read_tar(str(self.home(volume)), source)

    def networks(self, filters: dict, names: list[str] | None = None) -> list[str]:
        return [n for n, v in self.networks_.items() if self._matches(v["labels"], filters) and (names is None or n in names)]

    def create_network(self, name: str, labels: dict, options: dict) -> None:
        if name in self.networks_:
            raise self._Error(f"creating network {name} failed: network with name {name} already exists")
        self.networks_[name] = {"labels": dict(labels), "options": dict(options)}

    def remove_network(self, name: str) -> None:
        self.networks_.pop(name, None)

    @contextmanager
    def running(self, image: str, before_start=None, **options) -> Iterator[object]:
        box = self.create(image, **options)
        try:
            self.start(box)
            yield self.container(box)
        finally:
            self.remove(box)

    # Inside ------------------------------------------------------------------------------------------------

    @staticmethod
    def _matches(labels: dict, filters: dict) -> bool:
        """The engine's label filter: every "key=value" (or "key") in filters["label"] holds."""
        for wanted in filters.get("label", []):
            key, _, value = wanted.partition("=")
            if key not in labels or (value and labels[key] != value):
                return False
        return True

    def _find(self, ref) -> _Box | None:
        key = getattr(ref, "id", ref)
        return self.boxes.get(key) or next((b for b in self.boxes.values() if b.name == key), None)

    def _box(self, ref) -> _Box:
        box = self._find(ref)
        if box is None:
            raise self._Error(f"No such container: {getattr(ref, 'name', ref)}")
        return box

    def _halt(self, box: _Box, code: int | None = None) -> None:
        if box.serving is not None:
            box.serving.stop()
            box.serving = None
        if box.status == "running":
            box.status, box.finished_at, box.exit_code = "exited", _now(), 0 if code is None else code

    def _record(self, box: _Box) -> object:
        return self._Container(box.id, box.name, dict(box.labels), box.status, box.image_id, box.image, box.started_at,
                               box.finished_at, box.exit_code, box.restart_policy, False, box.port[1] if box.port else None)

