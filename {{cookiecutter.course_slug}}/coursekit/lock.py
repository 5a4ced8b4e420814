"""`coursekit lock`: the whole Python dependency set, resolved once against the base image, pinned with hashes.

uv resolves image.python_packages inside a container of the base image, for its interpreter and preferring what
the base already has (which stays as it is), and reports every package pip would install, the transitive ones
included, with the sha256 of each of its files. requirements.lock holds them as `name==version --hash=sha256:...`; `build`
installs from it (pip's hash-checking mode), so a rebuild a year later gets the same files or fails.
Its first line records what it was made from; `validate` says when course.yaml no longer matches.

A lock made again after a pin change keeps its settled lines as they were and lists what changed below
them, so the build reinstalls only those in a small layer of their own, on top of the cached one;
`--settle`, a new base image, or a package leaving the set (the base's own version must come back, which
only a fresh install restores) fold everything back into one block.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name
from uv import find_uv_bin

from coursekit.config import Course
from coursekit.engine import Engine, plain
from coursekit.errors import CoursekitError
from coursekit.validate import LOCK_FILE, lock_inputs

MARK = "COURSEKIT-PACKAGE "
CACHE_VOLUME = "coursekit-pip-cache"
UV_CACHE_VOLUME = "coursekit-uv-cache"
UV_IN_CONTAINER = "/coursekit-uv"
# Run in the base image with `python3 -c`: uv resolves the course's pins for this interpreter, preferring the versions
# the base already has (the output file it is given holds them: uv keeps an output file's pins where it can, as pip
# keeps what is installed), with every file's hash; what the base already has at that version is left out, so the
# lock lists exactly what pip would install. Where uv cannot run (a base without glibc), pip's own dry run does.
# One short line per package (the engine's log splits lines over 16 kB).
RESOLVE = r"""
import importlib.metadata as md, json, os, re, subprocess, sys, tempfile
requirements = sys.argv[1]
installed = {}
for dist in md.distributions():
    name = dist.metadata["Name"]
    if name:
        installed[re.sub(r"[-_.]+", "-", name).lower()] = dist.version
work = tempfile.mkdtemp()
with open(os.path.join(work, "requirements.in"), "w") as handle:
    handle.write(requirements)
with open(os.path.join(work, "requirements.txt"), "w") as handle:
    handle.write("".join(f"{name}=={version}\n" for name, version in sorted(installed.items())))
def report(name, version, hashes, url=""):
    print("COURSEKIT-PACKAGE " + json.dumps({"name": name, "version": version, "hashes": hashes, "url": url}))
try:
    done = subprocess.run([UV, "pip", "compile", "requirements.in", "--output-file", "requirements.txt",
                           "--generate-hashes", "--python", sys.executable, "--no-header", "--no-annotate", "--quiet"],
                          cwd=work, capture_output=True, text=True)
except OSError:
    done = None
if done is not None and done.returncode == 0:
    current = None
    for line in open(os.path.join(work, "requirements.txt")).read().replace("\\\n", " ").splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("#") or "==" not in parts[0]:
            continue
        name, version = parts[0].split("==", 1)
        name = re.sub(r"[-_.]+", "-", name.split("[", 1)[0]).lower()
        if installed.get(name) == version:
            continue
        report(name, version, [p.split(":", 1)[1] for p in parts[1:] if p.startswith("--hash=sha256:")])
    print("COURSEKIT-DONE")
elif done is not None and "No solution found" in done.stderr:
    print("COURSEKIT-ERROR " + json.dumps(done.stderr[-3000:]))
else:
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--disable-pip-version-check",
                           "--report", "-", "-r", os.path.join(work, "requirements.in")], capture_output=True, text=True)
    if done.returncode:
        print("COURSEKIT-ERROR " + json.dumps(done.stderr[-3000:]))
    else:
        for item in json.loads(done.stdout)["install"]:
            info = item.get("download_info", {})
            sha = info.get("archive_info", {}).get("hashes", {}).get("sha256")
            report(item["metadata"]["name"], item["metadata"]["version"], [sha] if sha else [], info.get("url", ""))
        print("COURSEKIT-DONE")
"""


def _line(item: dict) -> str:
    if not item["hashes"]:
        raise CoursekitError(
            f"no sha256 for {item['name']} {item['version']} ({item['url'] or 'no URL'}); "
            "a lock needs every file's hash: use packages from an index, not from a folder or a VCS"
        )
    return f"{item['name']}=={item['version']} " + " ".join(f"--hash=sha256:{h}" for h in item["hashes"])


def resolve(docker: Engine, course: Course, base_image: str, ca_bundle: Path | None = None,
            network: str | None = None) -> list[str]:
    """The lock's requirement lines, resolved in a container of base_image (sorted by name)."""
    requirements = "".join(f"{r}\n" for r in course.image.python_packages)
    # uv's and pip's caches live in named volumes, kept between locks: a lock after one pin change asks the index
    # only about what changed. Root in the container, so the volumes need no ownership set up.
    volumes = {CACHE_VOLUME: {"bind": "/coursekit-pip-cache", "mode": "rw"},
               UV_CACHE_VOLUME: {"bind": "/coursekit-uv-cache", "mode": "rw"},
               find_uv_bin(): {"bind": UV_IN_CONTAINER, "mode": "ro"}}
    environment = {"PIP_CACHE_DIR": "/coursekit-pip-cache", "PIP_ROOT_USER_ACTION": "ignore", "UV_CACHE_DIR": "/coursekit-uv-cache",
                   "UV_NO_CONFIG": "1", "UV_PYTHON_DOWNLOADS": "never"}
    if ca_bundle is not None:
        volumes[str(ca_bundle.resolve())] = {"bind": "/tmp/coursekit-ca.crt", "mode": "ro"}
        environment.update(PIP_CERT="/tmp/coursekit-ca.crt", SSL_CERT_FILE="/tmp/coursekit-ca.crt")
    script = f"UV = {UV_IN_CONTAINER!r}\n{RESOLVE}"
    options: dict = {"command": ["python3", "-c", script, requirements], "labels": {"org.coursekit.role": "lock"},
                     "user": "root", "volumes": volumes, "environment": environment}
    if network:
        options["network_mode"] = network
    with docker.running(base_image, **options) as container:
        exited = docker.wait(container, 1800)
        output = docker.logs_tail(container, 10_000).splitlines()
    if exited is None:
        raise CoursekitError("resolving the packages took more than 30 minutes; check the network and try again")
    for line in output:
        if line.startswith("COURSEKIT-ERROR "):
            raise CoursekitError("image.python_packages cannot be resolved against the base image:\n"
                                 + plain(json.loads(line.split(" ", 1)[1])).strip())
    if "COURSEKIT-DONE" in output:
        return sorted((_line(json.loads(line[len(MARK):])) for line in output if line.startswith(MARK)), key=str.lower)
    raise CoursekitError(f"resolving the packages failed (exit {exited['code']}): {chr(10).join(output)[-400:]}")


CHANGED = "# coursekit lock: changed since the lines above were settled"


@dataclass(frozen=True)
class Lock:
    """A lock's blocks: settled lines (one cached layer) and lines changed since (a layer on top)."""

    base_image: str
    settled: tuple[str, ...]
    changed: tuple[str, ...] = ()


def _name(line: str) -> str:
    return canonicalize_name(line.split("==", 1)[0])


def parse(text: str) -> Lock:
    """A Lock from requirements.lock's text (pure)."""
    header, *lines = text.splitlines() or [""]
    base = header.split(" resolved on ", 1)[1].split(";", 1)[0] if " resolved on " in header else ""
    settled, changed, block = [], [], None
    for line in lines:
        if line == CHANGED:
            block = changed
        elif line.strip() and not line.startswith("#"):
            (settled if block is None else block).append(line)
    return Lock(base, tuple(settled), tuple(changed))


def updated(previous: Lock | None, base_image: str, lines: list[str], settle: bool = False) -> Lock:
    """The lock for newly resolved lines: the previous settled block kept, what differs from it listed apart (pure).

    One block instead when asked, on a new base image (the old layer would not be reused anyway), or when a
    settled package is no longer wanted (a plain uninstall would also remove the base image's own version)."""
    if previous is None or settle or previous.base_image != base_image or not previous.settled:
        return Lock(base_image, tuple(lines))
    if {_name(line) for line in previous.settled} - {_name(line) for line in lines}:
        return Lock(base_image, tuple(lines))
    kept = set(previous.settled)
    return Lock(base_image, previous.settled, changed=tuple(line for line in lines if line not in kept))


def render(course: Course, lock: Lock) -> str:
    """requirements.lock's text, its first line naming what it was resolved from (pure)."""
    text = (f"# coursekit lock {lock_inputs(list(course.image.python_packages))}: made by `python -m coursekit lock`"
            f" from image.python_packages, resolved on {lock.base_image}; do not edit\n")
    text += "".join(f"{line}\n" for line in lock.settled)
    if lock.changed:
        text += (f"{CHANGED}\n# (installed in a layer of their own, so the one above stays cached;"
                 " `python -m coursekit lock --settle` folds them in)\n")
        text += "".join(f"{line}\n" for line in lock.changed)
    return text


def read_lock(course: Course) -> Lock | None:
    """The course's lock, None when it has none."""
    path = course.root / LOCK_FILE
    return parse(path.read_text()) if path.is_file() else None


def write_lock(course: Course, lock: Lock) -> Path:
    """Write requirements.lock."""
    path = course.root / LOCK_FILE
    path.write_text(render(course, lock))
    return path
