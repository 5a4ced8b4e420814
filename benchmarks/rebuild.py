"""Rebuild benchmark: a clean build, then a rebuild after one notebook changes, then after one pinned package changes.

Run from the template repository (after scripts/setup, with a test base image built by the tests):
    .venv/bin/python benchmarks/rebuild.py [--base-image IMAGE]
Prints the three wall times, their ratios to the clean build, and the image size against its base.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def newest_test_base(client: docker.DockerClient) -> str:
    images = client.images.list("coursekit-test/base-notebook")
    if not images:
        sys.exit("no coursekit-test/base-notebook image: run the tests once (scripts/test) or pass --base-image")
    return max(images, key=lambda i: i.attrs["Created"]).tags[0]


def timed_build(repo: Path, base: str, *extra: str) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "coursekit", "build", "--base-image", base, "--ca-bundle", CA_BUNDLE, *extra],
        cwd=repo, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"build failed:\n{result.stderr}")
    return elapsed


def commit(repo: Path, message: str) -> None:
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@example.org", "commit", "-qm", message], cwd=repo, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-image", help="base image (default: the newest coursekit-test/base-notebook)")
    args = parser.parse_args()
    client = docker.from_env()
    base = args.base_image or newest_test_base(client)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=tmp, extra_context={"course_slug": "bench-course"}))
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
        commit(repo, "course")

        clean = timed_build(repo, base, "--no-cache")

        notebook = repo / "notebooks" / "01-welcome.ipynb"
        nb = json.loads(notebook.read_text())
        nb["cells"][0]["source"].append("\nOne more sentence.")
        notebook.write_text(json.dumps(nb, indent=1))
        commit(repo, "notebook edit")
        notebook_only = timed_build(repo, base)

        course = repo / "course.yaml"
        course.write_text(course.read_text().replace("nibabel==5.4.2", "nibabel==5.4.0"))
        commit(repo, "package bump")
        package = timed_build(repo, base)

        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()
        image = client.images.get(f"docker.io/your-user/bench-course:{sha}")
        base_size = client.images.get(base).attrs["Size"]
        size = image.attrs["Size"]

    print(f"base image: {base}")
    print(f"clean build (--no-cache):        {clean:7.2f} s")
    print(f"rebuild after a notebook change: {notebook_only:7.2f} s   ratio {notebook_only / clean:6.1%} of clean (bar: <= 5%)")
    print(f"rebuild after a package change:  {package:7.2f} s   ratio {package / clean:6.1%} of clean")
    print(f"image size {size / 1e6:,.0f} MB vs base {base_size / 1e6:,.0f} MB (+{(size - base_size) / 1e6:,.0f} MB, {size / base_size:.2f}x)")


if __name__ == "__main__":
    main()
