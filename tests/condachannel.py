"""A conda channel made in the test: packages written as conda's .tar.bz2 format defines them, indexed by py-rattler."""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
from pathlib import Path

from rattler.index import index_fs


def conda_package(channel: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """Write a noarch: generic package holding files (paths relative to the environment's prefix)."""
    build = "0"
    index = {"name": name, "version": version, "build": build, "build_number": 0, "subdir": "noarch",
             "noarch": "generic", "depends": [], "license": "BSD-3-Clause", "timestamp": 1_767_225_600_000}
    paths = [{"_path": path, "path_type": "hardlink", "sha256": hashlib.sha256(data).hexdigest(), "size_in_bytes": len(data)}
             for path, data in files.items()]
    members = {
        **files,
        "info/index.json": json.dumps(index).encode(),
        "info/paths.json": json.dumps({"paths_version": 1, "paths": paths}).encode(),
        "info/files": "".join(f"{path}\n" for path in files).encode(),
    }
    out = channel / "noarch" / f"{name}-{version}-{build}.tar.bz2"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:bz2") as tar:
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out


def index_channel(channel: Path) -> None:
    """Write repodata.json for noarch and linux-64, as a channel serves them."""
    (channel / "linux-64").mkdir(parents=True, exist_ok=True)
    asyncio.run(index_fs(channel))
