"""Build the docker-stacks-like stand-in base image from nothing (debootstrap, import, build), cached by recipe.

    python tests/baseimage/standin.py            # prints the image tag, and nothing else, on stdout
    python tests/baseimage/standin.py --fresh    # first removes the cached images: the path a new machine takes

The Debian mirror is the one this machine's apt already uses (DEBIAN_MIRROR overrides it).

Used by the tests and by scripts/demo when quay.io is out of reach.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import docker
import docker.errors

HERE = Path(__file__).parent
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
APT_SOURCES = Path("/etc/apt")
SUITE = "bookworm"


def _hash(*parts: bytes) -> str:
    return hashlib.sha256(b"".join(parts)).hexdigest()[:12]


def _exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def _source_entries(apt: Path) -> list[tuple[str, list[str]]]:
    """(URI, suites) of every enabled Debian source: deb822 *.sources and one-line *.list files."""
    entries = []
    for path in sorted(apt.glob("sources.list.d/*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = dict(re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, re.M))
            if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
                entries += [(uri, fields.get("Suites", "").split()) for uri in fields.get("URIs", "").split()]
    for path in [apt / "sources.list", *sorted(apt.glob("sources.list.d/*.list"))]:
        lines = path.read_text().splitlines() if path.is_file() else []
        for line in lines:
            words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()  # drop [options]
            if len(words) >= 3 and words[0] == "deb":
                entries.append((words[1], [words[2]]))
    return entries


def debian_mirror(apt: Path = APT_SOURCES, environ: dict = os.environ) -> str:
    """The Debian archive this machine's apt uses for the stand-in's suite (DEBIAN_MIRROR overrides it)."""
    if environ.get("DEBIAN_MIRROR"):
        return environ["DEBIAN_MIRROR"]
    entries = _source_entries(apt)
    # The archive that serves the suite itself; else any Debian archive (it serves every release).
    for uri, suites in entries:
        if SUITE in suites:
            return uri
    for uri, _ in entries:
        if uri.rstrip("/").endswith("/debian"):
            return uri
    sys.exit(f"standin: no Debian archive in {apt}/sources.list*; set DEBIAN_MIRROR to the URL of a Debian mirror")


def ensure_rootfs(client: docker.DockerClient) -> str:
    """A minimal Debian image made with debootstrap (no registry needed), cached by its recipe."""
    rootfs = f"coursekit-test/debian:{SUITE}-{_hash((HERE / 'rootfs.sh').read_bytes())}"
    if not _exists(client, rootfs):
        # The script's output goes to stderr: stdout carries only the base image's tag.
        subprocess.run(["bash", str(HERE / "rootfs.sh"), rootfs, debian_mirror()], check=True, timeout=1200,
                       stdout=sys.stderr)
    return rootfs


def remove_cached(client: docker.DockerClient) -> None:
    """Remove every stand-in image (base and rootfs), so the next build starts from nothing."""
    for repository in ("coursekit-test/base-notebook", "coursekit-test/debian"):
        for image in client.images.list(name=repository):
            for tag in image.tags:
                client.images.remove(tag, force=True)


def ensure_base_image(client: docker.DockerClient) -> str:
    """The stand-in base image's tag, building the rootfs and the image first if they are missing."""
    recipe = b"".join(p.name.encode() + p.read_bytes() for p in sorted(HERE.iterdir()) if p.is_file() and p.name != "standin.py")
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


def main(argv: list[str] | None = None) -> int:
    """Print the stand-in's tag, building it first if needed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true", help="remove the cached images first and build from nothing")
    args = parser.parse_args(argv)
    client = docker.from_env(timeout=600)
    if args.fresh:
        remove_cached(client)
    print(ensure_base_image(client))
    return 0


if __name__ == "__main__":
    sys.exit(main())
