"""Rebuild benchmark: how long a build takes clean, after a notebook edit, after a pin change, and on a CI runner.

    .venv/bin/python benchmarks/rebuild.py [--base-image IMAGE]

In one run, on a fresh bake whose course installs a dozen scientific packages (locked with
`coursekit lock`, committed, so tags are git shas):
  1. a clean build (`--no-cache`; the base image is already here);
  2. a rebuild after one notebook changes, and the engine's own floor beside it: a `docker build`
     that copies one changed file onto the course image;
  3. a pin change: `coursekit lock` again (uv resolving in a container) and a rebuild;
  4. what a CI runner does, which starts with no course layers: the image is published to a
     registry on 127.0.0.1, the course's layers are removed, a notebook changes, and the build
     runs once without and once with `--cache-from latest` (the pull is part of the time);
  5. the same course without a lock: a notebook edit and a pin change.
Every coursekit time is the wall time of `python -m coursekit ...`, Python start-up included.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
from _common import timed_coursekit
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TEMPLATE / "tests"))
sys.path.insert(0, str(TEMPLATE / "tests" / "baseimage"))
from services import Registry, remove_course_layers  # noqa: E402
from standin import SYSTEM_CA, ensure_base_image  # noqa: E402

SLUG = "bench-rebuild"
# A neuroimaging and data-science course's packages; the stand-in base has only Jupyter and pandas.
PACKAGES = ["scipy==1.16.3", "matplotlib==3.10.7", "scikit-learn==1.7.2", "scikit-image==0.25.2", "statsmodels==0.14.5",
            "seaborn==0.13.2", "sympy==1.14.0", "networkx==3.5", "nibabel==5.3.2", "nilearn==0.12.1", "dipy==1.11.0",
            "mne==1.10.2"]
BUMP = ("nibabel==5.3.2", "nibabel==5.3.1")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=b", "-c", "user.email=b@example.org", "commit", "-qm", message)


def edit_notebook(repo: Path, sentence: str) -> None:
    notebook = repo / "notebooks" / "01-welcome.ipynb"
    nb = json.loads(notebook.read_text())
    nb["cells"][0]["source"].append(f"\n{sentence}")
    notebook.write_text(json.dumps(nb, indent=1))
    commit(repo, "notebook edit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-image", help="base image (default: the tests' stand-in, built if missing)")
    args = parser.parse_args()
    client = docker.from_env(timeout=600)
    base = args.base_image or ensure_base_image(client)
    remove_course_layers(client, SLUG)
    with tempfile.TemporaryDirectory() as tmp:
        registry_root = Path(tmp, "registry")
        registry_root.mkdir()
        registry = Registry(registry_root)
        try:
            repo = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=tmp, extra_context={"course_slug": SLUG}))
            course = repo / "course.yaml"
            course.write_text(course.read_text().replace('registry: "docker.io"', f'registry: "{registry.host}"'))
            git(repo, "init", "-q", "-b", "main")
            commit(repo, "course")
            env = dict(os.environ)
            course.write_text(course.read_text().replace("    - nibabel==5.4.2\n", "".join(f"    - {p}\n" for p in PACKAGES)))
            build = ("build", "--base-image", base, "--ca-bundle", str(SYSTEM_CA))
            lock = ("lock", "--base-image", base, "--ca-bundle", str(SYSTEM_CA))
            first_lock = timed_coursekit(repo, env, *lock)
            commit(repo, "course with a dozen packages, locked")

            clean = timed_coursekit(repo, env, *build, "--no-cache")
            edit_notebook(repo, "One more sentence.")
            notebook_only = timed_coursekit(repo, env, *build)
            floor = engine_floor(client, f"{registry.host}/your-user/{SLUG}:{git(repo, 'rev-parse', '--short', 'HEAD')}")
            course.write_text(course.read_text().replace(*BUMP))
            relock = timed_coursekit(repo, env, *lock)
            commit(repo, "package bump")
            package = timed_coursekit(repo, env, *build)

            timed_coursekit(repo, env, "publish")
            remove_course_layers(client, SLUG)
            edit_notebook(repo, "Edited on a branch.")
            ci_no_cache = timed_coursekit(repo, env, *build)
            remove_course_layers(client, SLUG)
            ci_cache_from = timed_coursekit(repo, env, *build, "--cache-from", "latest")

            image = client.images.get(f"{registry.host}/your-user/{SLUG}:{git(repo, 'rev-parse', '--short', 'HEAD')}")
            size, base_size = image.attrs["Size"], client.images.get(base).attrs["Size"]

            # The same course without a lock: a first build, then a notebook edit and a pin change.
            (repo / "requirements.lock").unlink()
            commit(repo, "no lock")
            timed_coursekit(repo, env, *build)
            edit_notebook(repo, "Edited without a lock.")
            unlocked_notebook = timed_coursekit(repo, env, *build)
            course.write_text(course.read_text().replace(BUMP[1], BUMP[0]))
            commit(repo, "package bump without a lock")
            unlocked_pin = timed_coursekit(repo, env, *build)
        finally:
            registry.stop()
            remove_course_layers(client, SLUG)

    pin_change = relock + package
    print(f"base image: {base}; {len(PACKAGES)} packages: {' '.join(PACKAGES)}")
    print(f"lock (first, {len(PACKAGES)} packages and what they need): {first_lock:7.2f} s")
    print(f"clean build (--no-cache):                       {clean:7.2f} s")
    print(f"rebuild after a notebook change:                {notebook_only:7.2f} s  {notebook_only / clean:6.1%} of clean "
          f"(bar: <= 5%, or <= 1.5x the floor: {notebook_only / floor:.2f}x)")
    print(f"  floor: docker build copying one file onto it: {floor:7.2f} s")
    print(f"pin change {BUMP[0]} -> {BUMP[1]}: lock {relock:.2f} s + build {package:.2f} s = "
          f"{pin_change:7.2f} s  {pin_change / clean:6.1%} of clean (bar: <= 30%); build alone {package / clean:.1%}")
    print(f"without a lock: notebook change {unlocked_notebook:.2f} s ({unlocked_notebook / clean:.1%} of clean), "
          f"pin change {unlocked_pin:.2f} s ({unlocked_pin / clean:.1%} of clean: every package reinstalled)")
    print(f"CI runner, notebook change, no cache:           {ci_no_cache:7.2f} s  {ci_no_cache / clean:6.1%} of clean")
    print(f"CI runner, notebook change, --cache-from latest:{ci_cache_from:7.2f} s  {ci_cache_from / clean:6.1%} of clean (pull included)")
    print(f"image size {size / 1e6:,.0f} MB vs base {base_size / 1e6:,.0f} MB (+{(size - base_size) / 1e6:,.0f} MB, {size / base_size:.2f}x)")


def engine_floor(client: docker.DockerClient, image: str) -> float:
    """Wall time of the smallest build on the course image: one changed file copied onto it."""
    with tempfile.TemporaryDirectory() as context:
        Path(context, "Dockerfile").write_text(f"FROM {image}\nCOPY changed.txt /tmp/changed.txt\n")
        Path(context, "changed.txt").write_text(f"{time.time()}\n")
        start = time.perf_counter()
        image_built, _ = client.images.build(path=context, rm=True, forcerm=True)
        elapsed = time.perf_counter() - start
        client.images.remove(image_built.id, force=True)
    return elapsed

if __name__ == "__main__":
    main()
