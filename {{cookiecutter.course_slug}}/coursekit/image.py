"""Build and publish the course image through the Docker SDK."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from coursekit import buildinputs, history, labels
from coursekit.config import Course
from coursekit.engine import Engine
from coursekit.errors import CoursekitError, DockerError, PublishError
from coursekit.lock import read_lock
from coursekit.ui import err, warn
from coursekit.validate import LOCK_FILE

STAGE = ".coursekit"
IN_IMAGE = "/opt/course"
SHARE = "/usr/local/share/coursekit"
PACKAGE = Path(__file__).parent
COURSE_LABEL = labels.COURSE
REVISION_LABEL = labels.REVISION


def _git(root: Path, *args: str) -> subprocess.CompletedProcess | None:
    """`git ARGS` in root's checkout; None when git cannot run there."""
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None


def git_revision(root: Path) -> str | None:
    """Short commit id of root's checkout, or None outside git."""
    result = _git(root, "rev-parse", "--short", "HEAD")
    return result.stdout.strip() if result and result.returncode == 0 else None


def image_tag(course: Course) -> str:
    """The tag a build of this checkout gets: the git short sha, or dev outside git."""
    return git_revision(course.root) or "dev"


def image_ref(course: Course, tag: str | None = None) -> str:
    """registry/repository:tag for this course."""
    return f"{course.image.name}:{tag or image_tag(course)}"


def data_manifests(course: Course) -> tuple[list[dict], list[dict]]:
    """(what the build prefetches, what a container fetches at start) as JSON-ready lists (pure)."""
    prefetch, start = [], []
    for entry in course.data:
        if "://" not in entry.url:
            url = f"file://{IN_IMAGE}/repo-data/{entry.url}"  # shipped in the repository, so in the image
        elif entry.when == "build":
            prefetch.append({"url": entry.url, "sha256": entry.sha256, "path": entry.path})  # archives stay whole here
            url = f"file://{IN_IMAGE}/prefetched/{entry.path}"
        else:
            url = entry.url
        start.append({"url": url, "sha256": entry.sha256, "path": entry.path, **({"unpack": True} if entry.unpack else {})})
    return prefetch, start


def _dockerfile_value(value: str) -> str:
    """A value for a Dockerfile ENV instruction: quoted, with no variable substitution."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def course_dockerfile(course: Course) -> str:
    """The course's Dockerfile with image.env as one ENV instruction right after its first FROM (pure)."""
    lines = (course.root / "Dockerfile").read_text().splitlines(keepends=True)
    if not course.image.env:
        return "".join(lines)
    env = "ENV " + " ".join(f"{name}={_dockerfile_value(value)}" for name, value in course.image.env) + "\n"
    at = next((i + 1 for i, line in enumerate(lines) if line.lstrip().upper().startswith("FROM ")), 0)
    return "".join([*lines[:at], "# image.env in course.yaml, added by coursekit\n", env, *lines[at:]])


def stage(course: Course, ca_bundle: Path | None) -> Path:
    """Write .coursekit/ for the Dockerfile: CA bundle, tooling/ and content/ (each mirrors the image's /)."""
    if not (course.root / "notebooks").is_dir():
        raise CoursekitError(
            f"{course.root / 'notebooks'} is missing: every student gets that folder's notebooks; create it (it may be empty)"
        )
    local_data = tuple(entry.url for entry in course.data if "://" not in entry.url)
    buildinputs.require_clean(course.root, ("Dockerfile", LOCK_FILE, *local_data))
    stage_dir = course.root / STAGE
    shutil.rmtree(stage_dir, ignore_errors=True)
    tooling, content = stage_dir / "tooling", stage_dir / "content"
    prefetch, start = data_manifests(course)
    lock = read_lock(course)
    files: dict[Path, bytes] = {
        stage_dir / "Dockerfile": course_dockerfile(course).encode(),
        stage_dir / "ca-bundle.crt": _read_ca_bundle(ca_bundle),
        # The lock's settled lines when there is one (pip checks every file's hash), else the pins as course.yaml
        # has them; then what the lock changed since it was settled, a layer of its own.
        stage_dir / "python-requirements.txt": _lines(lock.settled if lock else course.image.python_packages),
        stage_dir / "python-changes.txt": _lines(lock.changed if lock else ()),
        tooling / SHARE.lstrip("/") / "data.py": (PACKAGE / "data.py").read_bytes(),
        tooling / SHARE.lstrip("/") / "prefetch.json": json.dumps(prefetch, indent=1).encode(),
        tooling / "usr/local/bin/before-notebook.d/10-coursekit.sh": (PACKAGE / "start-hook.sh").read_bytes(),
        content / SHARE.lstrip("/") / "data.json": json.dumps(start, indent=1).encode(),
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for entry in course.data:  # the repository's own data files, copied (not read into memory: they may be large)
        if "://" not in entry.url:
            target = content / IN_IMAGE.lstrip("/") / "repo-data" / entry.url
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(course.root / entry.url, target)
    shutil.copytree(course.root / "notebooks", stage_dir / "course" / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    history.build_repo(course.root, stage_dir / "course" / "notebooks.git")
    return stage_dir


def _lines(lines: tuple[str, ...]) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode()


def _read_ca_bundle(ca_bundle: Path | None) -> bytes:
    if ca_bundle is None:
        return b""
    if not ca_bundle.is_file():
        raise CoursekitError(f"--ca-bundle {ca_bundle}: no such file (give a PEM bundle, e.g. /etc/ssl/certs/ca-certificates.crt)")
    return ca_bundle.read_bytes()


def build(
    docker: Engine, course: Course, base_image: str | None = None, ca_bundle: Path | None = None,
    network: str | None = None, nocache: bool = False, cache_from: list[str] = (),
) -> str:
    """Build the course image with live progress; returns its reference (registry/repository:tag)."""
    stage(course, ca_bundle)
    ref = image_ref(course)
    buildargs = {
        "BASE_IMAGE": base_image or course.image.base,
        "APT_PACKAGES": " ".join(course.image.apt_packages),
        "CONDA_PACKAGES": " ".join(course.image.conda_packages),
        "CONDA_CHANNELS": " ".join(f"--channel {channel}" for channel in course.image.conda_channels),
        "COURSE_SLUG": course.course.slug,
    }
    # The legacy builder adds API labels as the last step, so the per-commit label costs one step.
    api_labels = {REVISION_LABEL: git_revision(course.root) or ""}
    err.print(f"building {ref} from {buildargs['BASE_IMAGE']}")
    if course.image.python_packages and read_lock(course) is None:
        err.print(f"no {LOCK_FILE}: a change to any pin reinstalls all {len(course.image.python_packages)} Python packages; "
                  "`python -m coursekit lock` pins everything with hashes and makes a pin change a one-layer rebuild",
                  highlight=False)
    sources = pull_cache_sources(docker, course, cache_from)
    with err.status("starting the build") as status:
        def on_step(step: str) -> None:
            err.print(step)
            status.update(step[:100])

        def on_output(line: str) -> None:
            status.update(f"{line[-100:]}")

        image_id = docker.build(
            course.root, ref, buildargs, api_labels, on_step, on_output,
            network=network, nocache=nocache, cache_from=sources, dockerfile=f"{STAGE}/Dockerfile",
        )
    err.print(f"built {ref} ({image_id[:19]})")
    return ref


def pull_cache_sources(docker: Engine, course: Course, cache_from: list[str]) -> list[str]:
    """Pull each --cache-from image (a bare tag means this course's image); skip, with a warning, any not pullable."""
    credentials = auth_from_env(course.image.registry) if cache_from else None
    auth = {"username": credentials[0], "password": credentials[1]} if credentials else None
    sources = []
    for source in cache_from:
        reference = source if ("/" in source or "@" in source) else f"{course.image.name}:{source}"
        err.print(f"pulling {reference} to reuse its layers")
        try:
            docker.pull(reference, auth)
        except DockerError as exc:
            warn(f"{exc}; building without it")
            continue
        sources.append(reference)
    return sources


def reached_main(root: Path) -> bool | None:
    """Whether the checkout's commit is on origin/main (what build.yml publishes); None without that ref."""
    known = _git(root, "rev-parse", "--verify", "-q", "refs/remotes/origin/main")
    if known is None or known.returncode != 0:
        return None
    contained = _git(root, "merge-base", "--is-ancestor", "HEAD", "refs/remotes/origin/main")
    return contained is not None and contained.returncode == 0


def wait_published(docker: Engine, ref: str, minutes: float, poll: float = 15, on_main: bool | None = None) -> str:
    """The registry's digest of ref, waiting up to minutes for a build that is still publishing it (progress on
    stderr); CoursekitError naming the image and what to do when it never appears. A commit known not to be on
    main is never published by build.yml: no wait then."""
    if on_main is False:
        minutes = 0
    registry = ref.split("/", 1)[0]
    credentials = auth_from_env(registry)
    auth = docker.login(registry, *credentials) if credentials else None
    deadline = time.monotonic() + minutes * 60
    while True:
        try:
            return docker.registry_digest(ref, auth)
        except PublishError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                why = ("this commit is not on main, and build.yml publishes only commits on main: merge it, let build.yml "
                       "finish, then tag the merged commit" if on_main is False else
                       "build.yml publishes it for each commit pushed to main: push the commit to main, let build.yml "
                       "finish, then push the tag again (a tag on a commit that never reached main has no image)")
                raise CoursekitError(f"the image {ref} is not in its registry ({str(exc).split(': ', 1)[-1][:200]}); {why}") from None
            err.print(f"waiting for {ref} to be published (build.yml); {left / 60:.0f} min left")
            time.sleep(min(poll, max(left, 0.1)))


def auth_from_env(registry: str, environ: dict = os.environ) -> tuple[str, str] | None:
    """(username, password) from REGISTRY_USERNAME/REGISTRY_PASSWORD, None if neither is set."""
    username, password = environ.get("REGISTRY_USERNAME", ""), environ.get("REGISTRY_PASSWORD", "")
    if bool(username) != bool(password):
        missing = "REGISTRY_PASSWORD" if username else "REGISTRY_USERNAME"
        raise PublishError(f"{missing} is not set; set both REGISTRY_USERNAME and REGISTRY_PASSWORD (a token) to log in to {registry}")
    return (username, password) if username else None


def on_main_branch(root: Path, environ: dict = os.environ) -> bool:
    """True on the main branch: GitHub's ref when in Actions, else the checkout's branch."""
    if environ.get("GITHUB_REF"):
        return environ["GITHUB_REF"] == "refs/heads/main"
    result = _git(root, "branch", "--show-current")
    return result is not None and result.stdout.strip() == "main"


def publish_tags(course: Course, latest: bool, today: datetime | None = None) -> list[str]:
    """The tags a publish pushes: the build's tag, the date, and latest when asked (pure)."""
    date = (today or datetime.now(timezone.utc)).strftime("%Y-%m-%d")
    return [image_tag(course), date, *(["latest"] if latest else [])]


def publish(docker: Engine, course: Course, latest: bool) -> dict[str, str]:
    """Log in, push every tag, and check the registry serves the pushed digest; returns tag -> digest."""
    name = course.image.name
    source = image_ref(course)
    if docker.image_id(source) is None:
        raise PublishError(f"{source} is not here; build it first with `python -m coursekit build`")
    credentials = auth_from_env(course.image.registry)
    auth = docker.login(course.image.registry, *credentials) if credentials else None
    pushed = {}
    for tag in publish_tags(course, latest):
        docker.tag(source, name, tag)
        err.print(f"pushing {name}:{tag}")
        digest = docker.push(name, tag, auth)
        served = docker.registry_digest(f"{name}:{tag}", auth)
        if served != digest:
            raise PublishError(f"{name}:{tag}: pushed {digest} but the registry serves {served}; push again")
        pushed[tag] = digest
    if len(set(pushed.values())) != 1:
        raise PublishError(f"the tags of {name} point at different digests: {pushed}")
    return pushed
