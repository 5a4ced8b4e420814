"""Real bakes across cookiecutter.json's own choices: exact tree, clean render, the baked repo's own checks pass."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import yaml
from conftest import TEMPLATE, actionlint, baked, run_coursekit

pytestmark = pytest.mark.slow  # a matrix of real bakes, each linted by actionlint

CHOICES = {key: value for key, value in json.loads((TEMPLATE / "cookiecutter.json").read_text()).items() if isinstance(value, list)}


def _matrix() -> list[dict]:
    """Every value of every choice (others at their defaults), plus every registry × provider pair."""
    combos = [{key: value} for key, values in CHOICES.items() for value in values[1:]]
    combos += [dict(zip(("registry", "fleet_provider"), pair, strict=True)) for pair in itertools.product(CHOICES["registry"], CHOICES["fleet_provider"])]
    unique = {json.dumps(c, sort_keys=True): c for c in [{}, *combos]}
    return list(unique.values())


MATRIX = _matrix()
_PACKAGE_DIR = TEMPLATE / "{{cookiecutter.course_slug}}" / "coursekit"
PACKAGE = sorted(str(p.relative_to(_PACKAGE_DIR)) for p in _PACKAGE_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
COMMON_FILES = {
    ".github/workflows/build.yml",
    ".github/dependabot.yml",
    ".dockerignore",
    ".gitignore",
    "Dockerfile",
    "README.md",
    "STUDENTS.md",
    "course.yaml",
    "data/brain_volumes.csv",
    "notebooks/01-welcome.ipynb",
    *(f"coursekit/{name}" for name in PACKAGE),
    "coursekit/course.schema.json",
}


def _files(repo: Path) -> set[str]:
    return {str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module", params=MATRIX, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "defaults")
def bake_with(request, cookies_session):
    answers = request.param
    return answers, baked(cookies_session.bake(extra_context=answers, template=str(TEMPLATE)))


def test_matrix_covers_every_choice():
    for key, values in CHOICES.items():
        assert {c.get(key, values[0]) for c in MATRIX} == set(values), key


def test_exact_file_tree(bake_with):
    answers, repo = bake_with
    expected = set(COMMON_FILES)
    if answers.get("fleet_provider") == "openstack":
        expected |= {"clouds.yaml.example", ".github/workflows/deploy.yml", ".github/workflows/teardown.yml",
                     ".github/workflows/schedule.yml"}
    assert _files(repo) == expected


def test_nothing_left_unrendered(bake_with):
    _, repo = bake_with
    for path in repo.rglob("*"):
        if path.is_file() and path.suffix != ".pyc":
            text = path.read_text(encoding="utf-8")
            assert "{{ cookiecutter" not in text and "{{cookiecutter" not in text and "{%" not in text, path


def test_every_yaml_file_parses(bake_with):
    _, repo = bake_with
    files = [*repo.rglob("*.yml"), *repo.rglob("*.yaml"), repo / "clouds.yaml.example"]
    for path in files:
        if path.exists():
            assert yaml.safe_load(path.read_text()) is not None, path


def test_course_yaml_carries_the_answers(bake_with):
    answers, repo = bake_with
    data = yaml.safe_load((repo / "course.yaml").read_text())
    assert data["fleet"]["provider"] == answers.get("fleet_provider", "docker")
    assert data["fleet"]["openstack"]["flavor"] == answers.get("jetstream2_flavor", "m3.medium")
    assert data["image"]["registry"] == answers.get("registry", "docker.io")
    assert data["image"]["base"] == "quay.io/jupyter/datascience-notebook:2026-05-31"
    assert "FROM ${BASE_IMAGE}" in (repo / "Dockerfile").read_text()


def test_validate_passes_in_the_baked_repo(bake_with):
    _, repo = bake_with
    result = run_coursekit(repo, "validate")
    assert result.returncode == 0, result.stderr
    assert "course.yaml is valid" in result.stdout


# 5 seats × 80 hours (8 h class + 3 keep_days) × SU/hour, hand-computed against the 10,000 SU default.
def test_cost_and_roster_work_in_the_baked_repo(bake_with):
    _, repo = bake_with
    cost = run_coursekit(repo, "cost")
    # Every flavor on offer fits the default 10,000 SU with the default schedule (m3.xl: 6,240 with the gateway; always on, 12,960).
    assert cost.returncode == 0, cost.stdout + cost.stderr
    assert "with the schedule (awake 08:00-18:00 daily): 38.0 hours per seat" in cost.stdout
    roster = run_coursekit(repo, "roster", env={"COURSEKIT_SECRET": "baked-roster-secret-7Qx2Lm9Kp4"})
    assert roster.returncode == 0, roster.stderr
    assert len(roster.stdout.splitlines()) == 1 + 5  # header + 3 students, 1 instructor, 1 spare


def test_workflows_pass_actionlint(bake_with):
    _, repo = bake_with
    workflows = sorted((repo / ".github" / "workflows").glob("*.yml"))
    assert workflows
    result = actionlint(*workflows)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_reaches_the_bake_unchanged(course_repo):
    assert (course_repo / "coursekit" / "course.schema.json").read_bytes() == (TEMPLATE / "schema" / "course.schema.json").read_bytes()
    # One source of truth: the template itself holds no copy of the schema.
    assert not list((TEMPLATE / "{{cookiecutter.course_slug}}").rglob("*.schema.json"))


def test_sample_notebook_reads_the_sample_data(course_repo):
    notebook = json.loads((course_repo / "notebooks" / "01-welcome.ipynb").read_text())
    source = "".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    data = yaml.safe_load((course_repo / "course.yaml").read_text())["data"]
    assert [entry["path"] for entry in data] == ["brain_volumes.csv"]
    assert '"brain_volumes.csv"' in source and '"data"' in source


def test_actionlint_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n")
    result = actionlint(broken)
    assert result.returncode == 1 and "nope" in result.stdout


def test_fleet_workflows_are_tag_driven_and_no_tag_is_ever_dropped(cookies_session):
    repo = baked(cookies_session.bake(extra_context={"fleet_provider": "openstack"}, template=str(TEMPLATE)))
    workflows = {name: yaml.safe_load((repo / ".github" / "workflows" / f"{name}.yml").read_text()) for name in ("deploy", "teardown")}
    for name, workflow in workflows.items():
        assert workflow[True] == {"push": {"tags": [f"{name}-*"]}}  # YAML 1.1 reads the key `on` as True
        # A group per tag: GitHub cancels an older *pending* run of a group when another arrives, so a group shared
        # with the 15-minute schedule could drop a waiting deploy or teardown.
        assert workflow["concurrency"] == {"group": "fleet-${{ github.ref }}", "cancel-in-progress": False}
        text = (repo / ".github" / "workflows" / f"{name}.yml").read_text()
        assert "roster" not in text  # the roster (credentials) never leaves the instructor's machine
        assert "${{ secrets.COURSEKIT_SECRET }}" in text
        assert "python -m coursekit cloud-config" in text and "${{ vars.OS_AUTH_URL }}" in text
    steps = workflows["teardown"]["jobs"]["teardown"]["steps"]
    refuse = next(s for s in steps if s.get("name", "").startswith("Refuse"))
    # no student work in public artifacts: refused unless the archives go to the object store
    assert refuse["if"] == "${{ !github.event.repository.private && steps.target.outputs.swift != 'swift' }}"
    schedule = yaml.safe_load((repo / ".github" / "workflows" / "schedule.yml").read_text())
    assert schedule[True]["schedule"] == [{"cron": "*/15 * * * *"}]
    assert schedule["concurrency"] == {"group": "schedule", "cancel-in-progress": False}
    assert schedule["jobs"]["schedule"]["needs"] == "yield"  # it yields to a running deploy or teardown


@pytest.mark.parametrize("provider", ["docker", "openstack"])
def test_zizmor_finds_nothing_in_the_workflows(cookies, provider):
    """The static security auditor for GitHub Actions (pinned, offline: no GitHub API here) on a bake of each provider."""
    import subprocess
    import sys

    repo = baked(cookies.bake(template=str(TEMPLATE), extra_context={"fleet_provider": provider}))
    zizmor = Path(sys.executable).with_name("zizmor")
    result = subprocess.run([str(zizmor), "--offline", "--format", "plain", str(repo / ".github")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout + result.stderr
