"""`coursekit validate` on a corpus of broken course.yaml files: exact messages, never a traceback."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import run_coursekit
from helpers import copy_course, edit_course

CASES = yaml.safe_load((Path(__file__).parent / "data" / "bad_courses.yaml").read_text())
FIXED_DATES = {r'start: "[0-9-]+T09:00:00"': 'start: "2027-01-11T09:00:00"', r'end: "[0-9-]+T17:00:00"': 'end: "2027-01-11T17:00:00"'}


@pytest.fixture
def workdir(course_repo: Path, tmp_path: Path, monkeypatch) -> Path:
    """A private copy of the baked course with fixed dates, as the cwd."""
    repo = copy_course(course_repo, tmp_path / "course")
    text = (repo / "course.yaml").read_text()
    for pattern, fixed in FIXED_DATES.items():
        text = re.sub(pattern, fixed, text)
    (repo / "course.yaml").write_text(text)
    monkeypatch.chdir(repo)
    return repo


def _apply(base: str, case: dict) -> str:
    if "text" in case:
        return case["text"]
    for old, new in case["replace"].items():
        assert base.count(old) >= 1, f"{case['id']}: {old!r} is not in the baked course.yaml"
        base = base.replace(old, new)
    return base


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 25
    assert len({case["id"] for case in CASES}) == len(CASES)


def test_the_unedited_copy_is_valid(workdir, coursekit, capsys):
    assert coursekit.cli.main(["validate"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_bad_course_yaml_gets_exact_messages(workdir, coursekit, capsys, case):
    (workdir / "course.yaml").write_text(_apply((workdir / "course.yaml").read_text(), case))
    assert coursekit.cli.main(["validate"]) == 1
    captured = capsys.readouterr()
    count = len(case["expect"])
    head = f"error: {count} problem{'s' if count != 1 else ''} in course.yaml:"
    assert captured.err.splitlines() == [head, *(f"  {line}" for line in case["expect"])]
    assert captured.out == ""


def test_as_a_subprocess_errors_have_no_traceback_unless_debug(workdir):
    (workdir / "course.yaml").write_text(_apply((workdir / "course.yaml").read_text(), CASES[0]))
    plain = run_coursekit(workdir, "validate")
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.startswith("error: 1 problem in course.yaml:")
    debug = run_coursekit(workdir, "validate", "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr


def test_missing_file_is_a_clear_error(workdir):
    result = run_coursekit(workdir, "validate", "--config", "nowhere/course.yaml")
    assert result.returncode == 1
    assert result.stderr == (
        "error: nowhere/course.yaml: no such file. Run coursekit from your course repository's root, "
        "or point at the file with --config path/to/course.yaml\n"
    )


def test_non_utf8_file_is_a_clear_error(workdir):
    (workdir / "course.yaml").write_bytes(b"course:\n  name: caf\xe9\n")
    result = run_coursekit(workdir, "validate")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "course.yaml:2: byte 0xe9 is not UTF-8 text; save the file as UTF-8" in result.stderr


def test_usage_errors_exit_2(workdir):
    assert run_coursekit(workdir, "validat").returncode == 2
    assert run_coursekit(workdir).returncode == 2


def test_notebook_settings_merge_in_order_and_a_later_false_wins(coursekit, course_repo, tmp_path):
    from coursekit.config import load_course

    repo = copy_course(course_repo, tmp_path / "course")
    (repo / "notebooks" / "labs").mkdir()
    for name in ("labs/strict.ipynb", "labs/loose.ipynb", "deep.ipynb"):
        (repo / "notebooks" / name).write_text((repo / "notebooks" / "01-welcome.ipynb").read_text())
    edit_course(repo, lambda d: d.update(test={"timeout": 60, "notebooks": {
        "labs/*.ipynb": {"allow_errors": True, "timeout": 120},
        "labs/strict.ipynb": {"allow_errors": False},
        "**/deep.ipynb": {"skip": "needs a GPU"},
    }}))
    test = load_course(repo / "course.yaml").test
    strict, loose, deep = (test.for_notebook(n) for n in ("labs/strict.ipynb", "labs/loose.ipynb", "deep.ipynb"))
    assert (strict.allow_errors, strict.timeout) == (False, 120)
    assert (loose.allow_errors, loose.timeout) == (True, 120)
    assert deep.skip == "needs a GPU" and not deep.allow_errors and deep.timeout is None
