"""Build the docker-stacks-like stand-in base image from nothing (debootstrap, import, build), cached by recipe.

    python tests/baseimage/standin.py    # prints the image tag

Used by the tests and by scripts/demo when quay.io is out of reach.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import docker
import docker.errors

HERE = Path(__file__).parent
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def _hash(*parts: bytes) -> str:
    return hashlib.sha256(b"".join(parts)).hexdigest()[:12]


def _exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def ensure_rootfs(client: docker.DockerClient) -> str:
    """A minimal Debian image made with debootstrap (no registry needed), cached by its recipe."""
    rootfs = f"coursekit-test/debian:bookworm-{_hash((HERE / 'rootfs.sh').read_bytes())}"
    if not _exists(client, rootfs):
        subprocess.run(["bash", str(HERE / "rootfs.sh"), rootfs], check=True, timeout=1200)
    return rootfs


def ensure_base_image(client: docker.DockerClient) -> str:
    """The stand-in base image's tag, building the rootfs and the image first if they are missing."""
    recipe = b"".join(p.name.encode() + p.read_bytes() for p in sorted(HERE.iterdir()) if p.is_file() and p.suffix != ".py")
    ca = SYSTEM_CA.read_bytes() if SYSTEM_CA.exists() else b""
    tag = f"coursekit-test/base-notebook:{_hash(recipe, ca)}"
    if _exists(client, tag):
        return tag
    rootfs = ensure_rootfs(client)
    with tempfile.TemporaryDirectory() as context:
        shutil.copytree(HERE, context, dirs_exist_ok=True)
        # Containers must trust this machine's CA bundle (a TLS-intercepting proxy may sit in front of PyPI).
        Path(context, "ca-certificates.crt").write_bytes(ca)
        client.images.build(path=context, tag=tag, buildargs={"ROOTFS": rootfs}, rm=True, forcerm=True)
    return tag


if __name__ == "__main__":
    print(ensure_base_image(docker.from_env(timeout=600)))
    sys.exit(0)
