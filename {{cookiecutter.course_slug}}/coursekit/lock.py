"""`coursekit lock`: the whole Python dependency set, resolved once against the base image, pinned with hashes.

pip resolves image.python_packages inside a container of the base image (so what the base already has
stays as it is), and reports every package it would install, the transitive ones included, with the
sha256 of the exact file. requirements.lock holds them as `name==version --hash=sha256:...`; `build`
installs from it (pip's hash-checking mode), so a rebuild a year later gets the same files or fails.
Its first line records what it was made from; `validate` says when course.yaml no longer matches.
"""
from __future__ import annotations

import json
from pathlib import Path

import docker

from coursekit import engine
from coursekit.config import Course
from coursekit.errors import CoursekitError
from coursekit.validate import LOCK_FILE, lock_inputs

MARK = "COURSEKIT-REPORT "
RESOLVE = r"""
import json, subprocess, sys, tempfile
reqs = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
reqs.write(sys.argv[1]); reqs.close()
done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--disable-pip-version-check",
                       "--report", "-", "-r", reqs.name], capture_output=True, text=True)
if done.returncode:
    print("COURSEKIT-ERROR " + json.dumps(done.stderr[-3000:]))
else:
    print("COURSEKIT-REPORT " + json.dumps(json.loads(done.stdout)["install"]))
"""


def _line(item: dict) -> str:
    meta, info = item["metadata"], item.get("download_info", {})
    digest = info.get("archive_info", {}).get("hashes", {}).get("sha256")
    if not digest:
        raise CoursekitError(
            f"pip reported no sha256 for {meta['name']} {meta['version']} ({info.get('url', 'no URL')}); "
            "a lock needs every file's hash: use packages from an index, not from a folder or a VCS"
        )
    return f"{meta['name']}=={meta['version']} --hash=sha256:{digest}"


def resolve(client: docker.DockerClient, course: Course, base_image: str, ca_bundle: Path | None = None,
            network: str | None = None) -> list[str]:
    """The lock's requirement lines, resolved by pip in a container of base_image (sorted by name)."""
    requirements = "".join(f"{r}\n" for r in course.image.python_packages)
    options: dict = {"command": ["python3", "-c", RESOLVE, requirements], "labels": {"org.coursekit.role": "lock"}}
    if network:
        options["network_mode"] = network
    if ca_bundle is not None:
        options.update(volumes={str(ca_bundle.resolve()): {"bind": "/tmp/coursekit-ca.crt", "mode": "ro"}},
                       environment={"PIP_CERT": "/tmp/coursekit-ca.crt"})
    with engine.running(client, base_image, **options) as container:
        exited = engine.wait(container, 1800)
        output = engine.logs_tail(container, 50)
    if exited is None:
        raise CoursekitError("resolving the packages took more than 30 minutes; check the network and try again")
    for line in output.splitlines():
        if line.startswith("COURSEKIT-ERROR "):
            raise CoursekitError("pip cannot resolve image.python_packages against the base image:\n"
                                 + engine.plain(json.loads(line.split(" ", 1)[1])).strip())
        if line.startswith(MARK):
            return sorted((_line(item) for item in json.loads(line[len(MARK):])), key=str.lower)
    raise CoursekitError(f"resolving the packages failed (exit {exited['code']}): {output.strip()[-400:]}")


def write_lock(course: Course, base_image: str, lines: list[str]) -> Path:
    """requirements.lock, its first line naming what it was resolved from."""
    path = course.root / LOCK_FILE
    header = (f"# coursekit lock {lock_inputs(list(course.image.python_packages))}: made by `python -m coursekit lock`"
              f" from image.python_packages, resolved on {base_image}; do not edit\n")
    path.write_text(header + "".join(f"{line}\n" for line in lines))
    return path


def locked_requirements(course: Course) -> str | None:
    """What build installs when the course has a lock: its lines (with hashes), else None."""
    path = course.root / LOCK_FILE
    return path.read_text() if path.is_file() else None

