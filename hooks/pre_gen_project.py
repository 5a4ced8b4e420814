"""Refuse answers that would bake a broken course; the checks live in coursekit.names."""
import datetime
import os
import re
import sys
from pathlib import Path

# Values arrive as JSON string literals, so quotes, newlines or code in an answer stay data.
# cookiecutter passes the template's folder as given on its command line, maybe relative to
# where it started (PWD), while hooks run inside the new project.
REPO_DIR = Path(os.environ.get("PWD", "."), {{ cookiecutter._repo_dir | tojson }})
ANSWERS = {
    "course_name": {{ cookiecutter.course_name | tojson }},
    "course_slug": {{ cookiecutter.course_slug | tojson }},
    "course_date": {{ cookiecutter.course_date | tojson }},
    "instructor_name": {{ cookiecutter.instructor_name | tojson }},
    "instructor_id": {{ cookiecutter.__instructor_id | tojson }},
    "registry": {{ cookiecutter.registry | tojson }},
    "image_repository": {{ cookiecutter.image_repository | tojson }},
    "base_image": {{ cookiecutter.base_image | tojson }},
}

# The package folder's name is a template expression, so find it rather than spell it.
# No bytecode: a __pycache__ left in the template would be copied into every bake.
sys.dont_write_bytecode = True
sys.path.insert(0, str(next(REPO_DIR.glob("*cookiecutter.course_slug*"))))
from coursekit import names  # noqa: E402


def date_problem(text: str) -> str | None:
    """Why text is not YYYY-MM-DD naming a real day a course can run on (2026-13-45 and 2027-02-30 are not)."""
    try:
        day = datetime.date.fromisoformat(text) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) else None
    except ValueError:
        day = None
    if day is None:
        return f"{text!r} is not a date; write it as YYYY-MM-DD, e.g. 2027-01-11"
    return names.year_problem(day.year)


def problems(answers: dict) -> list:
    """Every answer that cannot work, with how to fix it."""
    found = []
    if not answers["course_name"].strip() or len(answers["course_name"]) > 200:
        found.append("course_name: give the course a name of 1 to 200 characters")
    for key in ("course_name", "instructor_name"):
        if answers[key].strip() and (why := names.text_problem(answers[key])):
            found.append(f"{key}: {answers[key][:60]!r} {why}")
    if why := names.slug_problem(answers["course_slug"]):
        found.append(f"course_slug: {why}")
    if why := date_problem(answers["course_date"]):
        found.append(f"course_date: {why}")
    if names.seat_id_problem(answers["instructor_id"]):
        found.append(
            f"instructor_name: {answers['instructor_name']!r} gives no usable seat id; use a name with letters or digits"
        )
    for key, check in (
        ("registry", names.registry_problem),
        ("image_repository", names.repository_problem),
        ("base_image", names.base_image_problem),
    ):
        if why := check(answers[key]):
            found.append(f"{key}: {why}")
    return found


if __name__ == "__main__":
    found = problems(ANSWERS)
    for line in found:
        print(f"ERROR: {line}", file=sys.stderr)
    sys.exit(1 if found else 0)
