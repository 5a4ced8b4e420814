"""Helpers the tests share: course copies, git, builds, and HTTP(S) calls to a seat."""
from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import ssl
import subprocess
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import yaml
from conftest import run_coursekit

SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def copy_course(course_repo: Path, dest: Path) -> Path:
    """A private, writable copy of a baked course. Its coursekit package is hard-linked to the bake's, which no test
    writes: a copy costs a tenth of a full one, and removing it frees no data (the fast lane makes about a hundred)."""
    def rest(folder: str, names: list[str]) -> set[str]:  # the package is linked below; any other "coursekit" is copied
        return {"__pycache__"} | ({"coursekit"} if Path(folder) == course_repo else set())

    repo = shutil.copytree(course_repo, dest, ignore=rest)
    shutil.copytree(course_repo / "coursekit", repo / "coursekit", ignore=shutil.ignore_patterns("__pycache__"),
                    copy_function=os.link)
    return repo


def edit_course(repo: Path, change: Callable[[dict], object]) -> None:
    """Apply change to course.yaml's data and write it back."""
    data = yaml.safe_load((repo / "course.yaml").read_text())
    change(data)
    (repo / "course.yaml").write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def make_course(course_repo: Path, dest: Path, slug: str, students: list[str] | None = None, **seats) -> Path:
    """A committed course copy with its own slug and roster (no instructors, no spares unless given)."""
    repo = copy_course(course_repo, dest)
    shutil.copytree(_committed_bake(course_repo), repo / ".git")

    def change(data: dict) -> None:
        data["course"]["slug"] = slug
        data["seats"].update({"instructors": [], "spares": 0, **seats})
        if students is not None:
            data["seats"]["students"] = [{"id": s, "name": s.title()} for s in students]
    edit_course(repo, change)
    commit(repo, "course")
    return repo


@functools.cache
def _committed_bake(course_repo: Path) -> Path:
    """A packed repository of the bake as it is, made once per process beside it: a course copy then commits only
    what its test changed (20 ms) instead of writing every file's object again (over 100 ms)."""
    work = copy_course(course_repo, course_repo.parent / f"{course_repo.name}.committed")
    commit(work, "the bake")
    git(work, "gc", "-q")
    return work / ".git"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, message: str) -> str:
    """Commit everything (a new repository on main if there is none); returns the short sha."""
    if not (repo / ".git").exists():
        git(repo, "init", "-q", "-b", "main", "--template=")  # no sample hooks
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", message)
    return git(repo, "rev-parse", "--short", "HEAD")


BUILT: list[str] = []  # image references this test session built; the session removes these and nothing else


def build(repo: Path, base_image: str, *extra: str) -> subprocess.CompletedProcess:
    result = run_coursekit(repo, "build", "--base-image", base_image, "--ca-bundle", str(SYSTEM_CA), *extra)
    if result.returncode == 0:
        BUILT.append(result.stdout.strip())
    return result


def insecure_tls() -> ssl.SSLContext:
    """For stand-ins that serve Caddy's internal certificate."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def http(url: str, token: str | None = None, data: bytes | None = None, method: str = "GET",
         context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """(status, body) of one request, with `Authorization: token ...` when given; errors are statuses too."""
    headers = {"Authorization": f"token {token}"} if token else {}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_status(url: str, token: str | None) -> int:
    return http(url, token)[0]


def put_file(url: str, token: str, name: str, content: bytes) -> None:
    """Save a file into a seat through Jupyter's contents API, as the student's browser does."""
    body = json.dumps({"type": "file", "format": "base64", "content": base64.b64encode(content).decode()})
    code, _ = http(f"{url}api/contents/{name}", token, body.encode(), "PUT")
    assert code in (200, 201), code


def read_contents(url: str, token: str, path: str) -> dict:
    code, body = http(f"{url}api/contents/{path}", token)
    assert code == 200, code
    return json.loads(body)


def archive_file(archive: Path, name: str, top: bool = False) -> bytes:
    """A student's file of the archive (under home/), or with top one of coursekit's own beside it (MANIFEST.*)."""
    with tarfile.open(archive) as tar:
        return tar.extractfile(name if top else f"home/{name}").read()
