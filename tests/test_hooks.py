"""The hooks: bad answers fail the bake cleanly, hostile answers stay data, sources parse unrendered."""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest
import yaml
from conftest import TEMPLATE, baked, run_coursekit
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

pytestmark = pytest.mark.slow  # real cookiecutter bakes

BAD_ANSWERS = [
    ({"course_slug": "Intro Course"}, "ERROR: course_slug: 'Intro Course' is not a valid course slug"),
    ({"course_slug": "a" * 33}, "is too long for a course slug (33 characters, at most 32)"),
    ({"course_slug": "-intro"}, "ERROR: course_slug: '-intro' is not a valid course slug"),
    ({"image_repository": "Me/Course"}, "ERROR: image_repository: 'Me/Course' is not a valid image repository"),
    ({"image_repository": "me/course:v1"}, "ERROR: image_repository: 'me/course:v1' must not carry a tag or digest"),
    ({"base_image": "quay.io/jupyter/datascience-notebook"}, "has no tag, so every build may get a different image"),
    ({"base_image": "quay.io/jupyter/datascience-notebook:latest"}, "uses 'latest', which changes under you"),
    ({"base_image": "quay.io/jupyter/x@sha256:abc"}, "has a malformed digest"),
    ({"course_date": "next monday"}, "ERROR: course_date: 'next monday' is not a date; write it as YYYY-MM-DD"),
    ({"instructor_name": "!!!"}, "ERROR: instructor_name: '!!!' gives no usable seat id"),
]


@pytest.mark.parametrize("answers,message", BAD_ANSWERS, ids=lambda v: ",".join(v) if isinstance(v, dict) else None)
def test_bad_answers_fail_the_bake_with_a_fix(tmp_path, capfd, answers, message):
    with pytest.raises(FailedHookException):
        cookiecutter(str(TEMPLATE), no_input=True, extra_context=answers, output_dir=str(tmp_path), default_config=True)
    assert message in capfd.readouterr().err
    assert not list(tmp_path.iterdir()), "a failed bake must leave nothing behind"


HOSTILE = "Robert'); \"\"\" DROP TABLE --\n__import__('os').system('touch PWNED') #"


def test_hostile_answers_are_data(cookies, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    answers = {"course_name": HOSTILE, "instructor_name": "O'Brien \"Ed\"\nnext line", "instructor_email": "x'\"@example.edu"}
    repo = baked(cookies.bake(extra_context=answers, template=str(TEMPLATE)))
    course = yaml.safe_load((repo / "course.yaml").read_text())
    assert course["course"]["name"] == HOSTILE
    assert course["seats"]["instructors"][0]["name"] == answers["instructor_name"]
    assert course["seats"]["instructors"][0]["email"] == answers["instructor_email"]
    assert not list(tmp_path.rglob("PWNED")) and not list(repo.rglob("PWNED"))
    assert run_coursekit(repo, "validate").returncode == 0


def test_hostile_code_in_a_checked_answer_is_refused_not_run(cookies, capfd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cookies.bake(extra_context={"base_image": "x\"; import os; os.system('touch PWNED'); \""}, template=str(TEMPLATE))
    assert isinstance(result.exception, FailedHookException)
    assert "ERROR: base_image:" in capfd.readouterr().err
    assert not list(tmp_path.rglob("PWNED"))


def test_typed_template_syntax_stays_literal(tmp_path):
    """What an instructor types at the prompts is never rendered as Jinja."""
    typed = "{{ 7*7 }} {% if x %}"
    answers = [typed, "", "", "Eve {{ x }}"] + [""] * 6  # every prompt of cookiecutter.json, defaults after these
    result = subprocess.run(
        [sys.executable, "-m", "cookiecutter", str(TEMPLATE), "--output-dir", str(tmp_path)],
        input="\n".join(answers) + "\n", capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (repo,) = tmp_path.iterdir()
    assert repo.name == "7-7-if-x"
    course = yaml.safe_load((repo / "course.yaml").read_text())
    assert course["course"]["name"] == typed
    assert f"# {typed}" in (repo / "README.md").read_text()
    assert run_coursekit(repo, "validate").returncode == 0


@pytest.mark.parametrize("hook", sorted((TEMPLATE / "hooks").glob("*.py")), ids=lambda p: p.name)
def test_unrendered_hook_source_is_valid_python(hook):
    ast.parse(hook.read_text(), filename=str(hook))


def test_pre_gen_hook_leaves_no_bytecode_in_the_template(course_repo):
    assert not list((TEMPLATE / "{{cookiecutter.course_slug}}").rglob("__pycache__"))


def test_bake_from_a_relative_template_path(tmp_path):
    """`cookiecutter .` from the template's folder, as the README's demo runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "cookiecutter", ".", "--no-input", "--output-dir", str(tmp_path)],
        cwd=TEMPLATE, env={**os.environ, "PWD": str(TEMPLATE)}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "intro-to-data-science" / "coursekit" / "course.schema.json").is_file()
