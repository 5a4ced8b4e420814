"""Hostile input beyond course.yaml's text: files, secrets, URLs, answers and outputs that try to smuggle or crash."""
from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys

import pytest
import yaml
from conftest import TEMPLATE, run_coursekit
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter
from helpers import copy_course

GOOD_SECRET = "hostile-tests-7Qx2Lm9Kp4Zt"


@pytest.fixture
def repo(course_repo, tmp_path):
    return copy_course(course_repo, tmp_path / "course")


def _edit(repo, change) -> None:
    data = yaml.safe_load((repo / "course.yaml").read_text())
    change(data)
    (repo / "course.yaml").write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def test_a_data_file_linking_out_of_the_repository_is_refused(repo):
    (repo / "data" / "brain_volumes.csv").unlink()
    (repo / "data" / "brain_volumes.csv").symlink_to("/etc/hostname")
    result = run_coursekit(repo, "validate")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "data[0].url: 'data/brain_volumes.csv' is a link to /etc/hostname, outside this repository; " \
           "copy the file into the repository instead" in result.stderr


def test_a_data_url_that_is_a_folder_is_refused(repo):
    _edit(repo, lambda d: d["data"][0].update(url="data"))
    result = run_coursekit(repo, "validate")
    assert result.returncode == 1
    assert "data[0].url: 'data' is not a regular file" in result.stderr


def test_requirement_markers_and_bracketed_ipv6_registries_are_valid(repo):
    def change(data):
        data["image"]["python_packages"] = ['six==1.16.0; python_version >= "3"', "pandas[excel]==2.2.3"]
        data["image"]["registry"] = "[::1]:5000"
    _edit(repo, change)
    result = run_coursekit(repo, "validate")
    assert result.returncode == 0, result.stderr


def test_the_build_installs_requirements_one_per_line_with_markers_intact(coursekit, repo):
    from coursekit.config import load_course
    from coursekit.image import stage

    _edit(repo, lambda d: d["image"].update(python_packages=['six==1.16.0; python_version >= "3"']))
    stage_dir = stage(load_course(repo / "course.yaml"), None)
    assert (stage_dir / "python-requirements.txt").read_text() == 'six==1.16.0; python_version >= "3"\n'


@pytest.mark.parametrize("secret,why", [
    ("a" * 16, "does not look random"),
    ("a" * 64, "does not look random"),
    ("ab" * 20, "does not look random"),
    (" " * 16, "contains spaces or line breaks"),
    (GOOD_SECRET + "\n", "contains spaces or line breaks"),
    ("abcdefghijklmnop", "does not look random"),
    ("1234567890123456789012", "does not look random"),  # 22 characters, as long as a 16-byte URL-safe token
    ("AbAbAbAbAbAbAbAbAbAbAb", "does not look random"),
    ("PasswordPasswordPass", "does not look random"),
])
def test_weak_secrets_are_refused(repo, secret, why):
    result = run_coursekit(repo, "roster", env={"COURSEKIT_SECRET": secret})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: COURSEKIT_SECRET {why}")
    assert secret.strip() not in result.stderr or not secret.strip()


def test_strong_secrets_of_every_usual_kind_are_accepted(coursekit):
    import secrets

    from coursekit.seats import read_secret

    # Drawn once and once refused: a 16-byte token with no digit, '-' or '_' (about 1 in 80), a hex token of low spread (1 in 10,000)
    seen = ("KLQhUSkJFPimmmEoilNHiQ", "469b982e4a4b46a2e94924744aa4e9ed", "7a70972ae83e377327a77f37eeeace67")
    for secret in (secrets.token_urlsafe(16), secrets.token_urlsafe(32), secrets.token_hex(16), GOOD_SECRET, *seen):
        assert read_secret({"COURSEKIT_SECRET": secret}) == secret


def test_a_secret_that_is_not_utf8_is_used_as_bytes(repo):
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "COURSEKIT_SECRET")}
    env = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    env[b"COURSEKIT_SECRET"] = b"\xff\xfe" + os.urandom(8).hex().encode() + b"-Zq7\xc3"
    result = subprocess.run([sys.executable, "-m", "coursekit", "roster"], cwd=repo, env=env, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    rows = list(csv.DictReader(io.StringIO(result.stdout.decode())))
    assert len({r["credential"] for r in rows}) == len(rows) == 5


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(repo, tmp_path):
    names = ["=HYPERLINK(\"http://evil.example\",\"click\")", "+1+1", "-2+3", "@SUM(A1)", "\tTab", "\rCR"]
    _edit(repo, lambda d: d["seats"].update(students=[{"id": f"s{i}", "name": n} for i, n in enumerate(names)]))
    result = run_coursekit(repo, "roster", "--output", str(tmp_path / "r.csv"), env={"COURSEKIT_SECRET": GOOD_SECRET})
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "r.csv", newline="", encoding="utf-8") as handle:  # keep the \r as written
        rows = list(csv.DictReader(handle))
    shown = [r["name"] for r in rows if r["role"] == "student"]
    assert shown == ["'" + n for n in names]


def test_roster_output_is_private_even_over_an_existing_file(repo, tmp_path):
    target = tmp_path / "roster.csv"
    target.write_text("old")
    os.chmod(target, 0o644)
    result = run_coursekit(repo, "roster", "--output", str(target), env={"COURSEKIT_SECRET": GOOD_SECRET})
    assert result.returncode == 0, result.stderr
    assert os.stat(target).st_mode & 0o777 == 0o600


def test_brackets_in_names_are_text_not_console_markup(repo):
    """rich would read "[/]" or "[link=...]" in a name as markup: a crash, or a hidden link in the instructor's terminal."""
    _edit(repo, lambda d: (d["course"].update(name="[/]Intro [link=http://evil.example]x"),
                           d["seats"]["students"][0].update(name="[bold]Al[/] [/]")))
    env = {"COURSEKIT_SECRET": GOOD_SECRET}
    for command in (("validate",), ("cost",), ("roster", "--format", "md")):
        result = run_coursekit(repo, *command, env=env)
        assert result.returncode == 0, (command, result.stderr)
    assert "[/]Intro [link=http://evil.example]x" in run_coursekit(repo, "validate").stdout
    assert "[/]Intro [link=http://evil.example]x" in run_coursekit(repo, "cost").stdout
    assert r"\[bold\]Al\[/\] \[/\]" in run_coursekit(repo, "roster", "--format", "md", env=env).stdout  # Markdown's escapes


def test_archives_never_close_a_folder_that_holds_more_than_archives(coursekit, tmp_path):
    from coursekit.archive import private_folder
    from coursekit.errors import ArchiveError

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    (shared / "notes.txt").write_text("someone else's")
    os.chmod(shared, 0o755)
    with pytest.raises(ArchiveError, match="open to other users .mode 0755. and holds more than archives .'notes.txt'."):
        private_folder(shared)
    assert os.stat(shared).st_mode & 0o777 == 0o755
    old = tmp_path / "archives"
    old.mkdir()
    (old / "alice.tar.gz").write_bytes(b"")
    os.chmod(old, 0o755)
    private_folder(old)  # an archive folder of an earlier release is closed
    assert os.stat(old).st_mode & 0o777 == 0o700
    private_folder(tmp_path / "new" / "archives")
    assert os.stat(tmp_path / "new" / "archives").st_mode & 0o777 == 0o700


def test_a_redirect_to_another_scheme_is_not_followed(coursekit, data_server, tmp_path):
    from coursekit import data

    url, sha = data_server.add("scan.csv", b"payload")
    data_server.redirects["/moved.csv"] = "ftp://127.0.0.1/scan.csv"
    data_server.redirects["/loop.csv"] = "/loop.csv"
    data_server.redirects["/ok.csv"] = "/scan.csv"
    assert data.fetch([{"url": f"{data_server.url}/ok.csv", "sha256": sha, "path": "ok.csv"}], tmp_path) == []
    (moved,) = data.fetch([{"url": f"{data_server.url}/moved.csv", "sha256": sha, "path": "a.csv"}], tmp_path)
    assert "redirected to a ftp:// address, which is not followed" in moved
    (loop,) = data.fetch([{"url": f"{data_server.url}/loop.csv", "sha256": sha, "path": "b.csv"}], tmp_path)
    assert "HTTP 30" in loop
    assert data_server.requests.count("/loop.csv") <= data.MAX_REDIRECTS + 1


def test_a_large_local_data_file_is_hashed_once(coursekit, repo, tmp_path, monkeypatch):
    from coursekit import data as data_module
    from coursekit.config import load_course

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    big = repo / "data" / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(64 * 2**20)  # 64 MiB of zeros, streamed, never in memory at once
    sha = "3b6a07d0d404fab4e23b6d34bc6696a6a312dd92821332385e5af7c01c421351"
    _edit(repo, lambda d: d["data"].append({"url": "data/big.bin", "sha256": sha, "path": "big.bin"}))
    reads = []
    real = data_module.sha256_file
    monkeypatch.setattr("coursekit.filehash.sha256_file", lambda p: reads.append(p) or real(p))
    load_course(repo / "course.yaml")
    load_course(repo / "course.yaml")
    assert [p.name for p in reads] == ["brain_volumes.csv", "big.bin"]  # the second run read nothing
    os.utime(big, ns=(1, 1))
    load_course(repo / "course.yaml")
    assert [p.name for p in reads][-1] == "big.bin"  # a changed mtime is read again


@pytest.mark.parametrize("answers,message", [
    ({"course_date": "2026-13-45"}, "ERROR: course_date: '2026-13-45' is not a date; write it as YYYY-MM-DD"),
    ({"course_date": "2027-02-30"}, "ERROR: course_date: '2027-02-30' is not a date"),
    ({"course_name": "Data " * 41}, "ERROR: course_name: give the course a name of 1 to 200 characters"),
    ({"course_date": "9999-01-11"}, "ERROR: course_date: 9999 is not a year a course runs in; give a date between 2000 and 2199"),
    ({"instructor_name": "Ada \x1b]8;;http://evil.example\x07Lovelace"},
     "ERROR: instructor_name: 'Ada \\x1b]8;;http://evil.example\\x07Lovelace' contains control characters (U+0007, U+001B)"),
])
def test_the_answers_are_checked_as_strictly_as_course_yaml(tmp_path, capfd, answers, message):
    with pytest.raises(FailedHookException):
        cookiecutter(str(TEMPLATE), no_input=True, extra_context=answers, output_dir=str(tmp_path), default_config=True)
    assert message in capfd.readouterr().err


def test_instance_names_never_collide_and_stay_dns_labels(coursekit):
    from coursekit import names

    pairs = [("a-b", "c"), ("a", "b-c"), ("x" * 32, "y" * 30), ("x" * 32, "y" * 29 + "z"), ("ab", "c"), ("a", "bc")]
    made = [names.instance_name(slug, seat) for slug, seat in pairs]
    assert len(set(made)) == len(made)
    assert all(len(n) <= 63 and names.label_problem(n, "name", 63) is None for n in made)


def test_a_course_without_a_notebooks_folder_says_so_at_build(coursekit, repo):
    import shutil as sh

    from coursekit.config import load_course
    from coursekit.errors import CoursekitError
    from coursekit.image import stage

    sh.rmtree(repo / "notebooks")
    with pytest.raises(CoursekitError, match="notebooks is missing: every student gets that folder's notebooks"):
        stage(load_course(repo / "course.yaml"), None)


def test_huge_values_and_many_problems_give_a_bounded_report(repo):
    def change(data):
        data["seats"]["students"] = [{"id": f"Bad Id {n}", "name": "x"} for n in range(300)]
        data["course"]["slug"] = "X" * 100_000
    _edit(repo, change)
    result = run_coursekit(repo, "validate")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "error: 301 problems in course.yaml:"
    assert len(lines) == 102 and lines[-1] == "  ... and 201 more; fix these first"
    assert max(len(line) for line in lines) <= 602
    assert any(re.search(r"\.\.\. \(100,\d{3} characters\)$", line) for line in lines)


def test_a_glob_built_to_backtrack_is_matched_in_no_time(coursekit):
    import time

    from coursekit.validate import glob_matches

    started = time.monotonic()
    assert not glob_matches("*a" * 40 + "*b", "a" * 300)
    assert time.monotonic() - started < 0.5


def test_the_wrong_credential_probe_always_differs_from_the_token(coursekit):
    # A random token starts with "x" once in 64 runs; "x" + token[1:] was then the token itself (a CI run met it).
    from coursekit.imagetest import wrong_token

    for token in ("xAbc-_9", "yAbc", "Abc", "x"):
        assert wrong_token(token) != token and wrong_token(token)[1:] == token[1:]


@pytest.mark.parametrize("command", [("archives", "--fetch", "../../etc/passwd"), ("pause", "--seat", "a/b"),
                                     ("deploy", "--discard", "*")])
def test_seat_arguments_are_seat_ids_never_paths(repo, command):
    result = run_coursekit(repo, *command, env={"COURSEKIT_SECRET": GOOD_SECRET})
    assert result.returncode == 2 and "is not a valid seat id" in result.stderr, result.stderr


@pytest.mark.slow
def test_five_hundred_globs_over_sixty_thousand_notebooks_validate_in_seconds(repo):
    import time

    for week in range(600):
        folder = repo / "notebooks" / f"week{week:03d}"
        folder.mkdir()
        for lesson in range(100):
            (folder / f"lesson-{lesson:03d}.ipynb").write_text("{}")
    forms = ["week{i:03d}/*.ipynb", "**/lesson-{j:03d}.ipynb", "week{i:03d}/lesson-0[0-4]?.ipynb", "**/*-{j:03d}.ipynb"]
    globs = {forms[i % 4].format(i=i, j=i % 100): {"timeout": 100} for i in range(500)}
    _edit(repo, lambda d: d.setdefault("test", {}).update(notebooks=globs))
    started = time.monotonic()
    result = run_coursekit(repo, "validate")
    took = time.monotonic() - started
    print(f"\nvalidate: 500 globs over 60,000 notebooks in {took:.2f} s")
    assert result.returncode == 0, result.stderr
    assert took < 5


def test_a_merge_key_then_an_override_is_no_duplicate(repo):
    lines = (repo / "course.yaml").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  docker:"))
    lines.insert(at + 1, "    <<: {cpus: 1, memory: 1g}")
    (repo / "course.yaml").write_text("\n".join(lines) + "\n")
    result = run_coursekit(repo, "validate")
    assert result.returncode == 0, result.stderr


def test_a_five_thousand_digit_number_is_one_clear_problem(repo):
    lines = (repo / "course.yaml").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("cpus:"))
    lines[at] = lines[at].split(":")[0] + ": " + "1" * 5001
    (repo / "course.yaml").write_text("\n".join(lines) + "\n")
    result = run_coursekit(repo, "validate")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"course.yaml:{at + 1}: a number of 5,001 digits, far more than any setting takes" in result.stderr
    assert "set_int_max_str_digits" not in result.stderr


def test_an_image_name_longer_than_docker_allows_is_refused(repo):
    _edit(repo, lambda d: d["image"].update(repository="a" * 250))
    result = run_coursekit(repo, "validate")
    assert result.returncode == 1 and "Docker takes at most 255: shorten image.repository" in result.stderr


def test_a_secret_that_is_one_word_twice_is_refused(repo):
    result = run_coursekit(repo, "roster", env={"COURSEKIT_SECRET": "Xk3p9QzT2wY" * 2})
    assert result.returncode == 1 and "is one shorter string repeated" in result.stderr
    assert "Xk3p9QzT2wY" not in result.stderr


def test_a_huge_unknown_key_is_named_as_unknown(repo):
    text = (repo / "course.yaml").read_text()
    (repo / "course.yaml").write_text("? " + "x" * 300_000 + "\n: 1\n" + text)
    result = run_coursekit(repo, "validate")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "unknown key 'xxxx" in result.stderr and "(300,000 characters)" in result.stderr
    assert len(result.stderr) < 2000


@pytest.mark.parametrize("args,why", [
    (("status", "--at", "9999-12-31T23:59:59Z"), "is not a moment between the years 2000 and 2200"),
    (("archives", "--fetch", "alice", "--to", "/dev/null"), "no archive of seat 'alice'"),
])
def test_arguments_that_once_escaped_as_exceptions_are_clear_errors(repo, args, why):
    result = run_coursekit(repo, *args, env={"COURSEKIT_SECRET": GOOD_SECRET})
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr and "unexpected" not in result.stderr
    assert why in result.stderr, result.stderr


def test_a_dangling_link_in_the_archive_folder_is_listed_past(repo):
    (repo / "archives").mkdir(mode=0o700)
    (repo / "archives" / "alice.tar.gz").symlink_to(repo / "gone.tar.gz")
    result = run_coursekit(repo, "archives")
    assert result.returncode == 0 and "0 archives" in result.stdout, result.stderr


@pytest.mark.parametrize("change,where", [
    (lambda d: d["image"].setdefault("env", {}).update({"DATA_HOME\n": "/home/jovyan/data"}), "image.env"),
    (lambda d: d["fleet"]["openstack"].update(cloud="openstack\n    verify: false"), "fleet.openstack.cloud"),
])
def test_a_trailing_newline_cannot_slip_past_a_schema_pattern(repo, change, where):
    """JSON Schema's `$` is the end of the text; Python's also matches before a final newline."""
    _edit(repo, change)
    result = run_coursekit(repo, "validate")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert where in result.stderr, result.stderr
