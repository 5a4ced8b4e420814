"""Cost arithmetic against hand-computed cases, and the allocation guard."""
from __future__ import annotations

import re
import shutil

import pytest
from conftest import run_coursekit


def test_the_papers_sanity_row(coursekit):
    from coursekit.cost import affordable_hours

    # 50 VMs of 6 SU/hour burn 300 SU/hour: 10,000 SU last 33 1/3 hours.
    assert affordable_hours(10_000, 50, 6) == pytest.approx(33.333, abs=1e-3)


@pytest.mark.parametrize(
    "flavor,su_per_hour",
    [("m3.tiny", 1), ("m3.small", 2), ("m3.quad", 4), ("m3.medium", 8), ("m3.large", 16), ("m3.xl", 32),
     ("r3.large", 128), ("g3.small", 16), ("g3.xl", 128)],
)
def test_flavor_table(coursekit, flavor, su_per_hour):
    from coursekit.cost import flavor as lookup

    assert lookup(flavor).su_per_hour == su_per_hour


def _course(coursekit, course_repo, **changes):
    from dataclasses import replace

    from coursekit.config import load_course

    course = load_course(course_repo / "course.yaml")
    return replace(course, **changes)


def test_default_course_estimate(coursekit, course_repo):
    from coursekit.cost import estimate

    result = estimate(_course(coursekit, course_repo))
    # Awake 08:00-18:00 from 09:00 on day 1 to 17:00 on day 4: 9 + 10 + 10 + 9 = 38 h; m3.medium = 8 SU/h.
    assert [(i.what, i.seats, i.hours, i.su) for i in result.items] == [
        ("students", 3, 38.0, 912.0), ("instructors", 1, 38.0, 304.0), ("spares", 1, 38.0, 304.0)
    ]
    assert result.total_su == 1520
    # Always on: 8 h of class + 3 keep_days × 24 h = 80 h.
    assert result.always_on_hours == 80 and result.always_on_su == 3200
    assert result.affordable_hours == 250  # 10,000 / (5 × 8)
    # 250 awake hours at 10 a day: day 1 gives 9 (from 09:00), then 24 days of 10 = 249, and 1 more on day 26.
    start = result.runs_out.replace(hour=0, minute=0)
    assert (result.runs_out - start).total_seconds() == 9 * 3600 and (start.date() - _course(coursekit, course_repo).course.start.date()).days == 25


def test_schedule_hours_cross_midnight_and_offsets(coursekit):
    from datetime import datetime, timedelta, timezone

    from coursekit.schedule import Schedule, parse_window

    tz = timezone(timedelta(hours=-5))
    plan = Schedule((parse_window("22:00-02:00"), parse_window("01:00-03:00")), 0, False, tz, datetime(2027, 1, 13, tzinfo=tz))
    # 22:00 to 03:00 every night (the two windows merge): 5 h a night, two nights in [Jan 11 12:00, Jan 13 12:00).
    assert plan.awake_hours(datetime(2027, 1, 11, 12, tzinfo=tz), datetime(2027, 1, 13, 12, tzinfo=tz)) == 10
    # The same span seen in UTC is the same hours.
    assert plan.awake_hours(datetime(2027, 1, 11, 17, tzinfo=timezone.utc), datetime(2027, 1, 13, 17, tzinfo=timezone.utc)) == 10


def test_papers_workshop_over_budget(coursekit, course_repo):
    from dataclasses import replace

    from coursekit.config import Person, ScheduleSettings
    from coursekit.cost import BudgetError, check_budget, estimate

    course = _course(coursekit, course_repo, schedule=ScheduleSettings())  # always on, as the paper's class ran
    students = tuple(Person(f"s{n:02d}", f"Student {n}") for n in range(40))
    instructors = tuple(Person(f"i{n}", f"Instructor {n}") for n in range(5))
    seats = replace(course.seats, students=students, instructors=instructors, spares=5)
    openstack = replace(course.fleet.openstack, flavor="m3.quad")
    course = replace(course, seats=seats, fleet=replace(course.fleet, openstack=openstack))
    result = estimate(course)
    # 50 VMs × 4 SU/h × 80 h = 16,000 SU > 10,000; affordable 10,000 / 200 = 50 h.
    assert result.total_su == 16_000 and result.affordable_hours == 50
    with pytest.raises(BudgetError, match=r"needs 16,000 SU but budget.allocation_su is 10,000: 50 VMs of m3.quad \(4 SU/hour each\) can run only 50.0 hours"):
        check_budget(result)


def test_cost_command_prints_items_and_total(course_repo):
    result = run_coursekit(course_repo, "cost")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(re.search(r"students\s.*\b3\b.*\b8\b.*38\.0.*912", line) for line in lines)
    assert any(re.search(r"total\s.*\b5\b.*1,520", line) for line in lines)
    assert "always on: 80.0 hours per seat" in result.stdout and ": 3,200 SU" in result.stdout
    assert "with the schedule (awake 08:00-18:00 daily): 38.0 hours per seat, 1,520 SU; shelving outside the windows saves 1,680 SU (52%)" in result.stdout
    assert "the whole fleet could run 250.0 hours" in result.stdout


def test_cost_command_exits_1_over_budget(course_repo, tmp_path):
    repo = shutil.copytree(course_repo, tmp_path / "course", ignore=shutil.ignore_patterns("__pycache__"))
    text = (repo / "course.yaml").read_text().replace("allocation_su: 10000", "allocation_su: 1000")
    (repo / "course.yaml").write_text(text)
    result = run_coursekit(repo, "cost")
    assert result.returncode == 1
    assert "error: the course needs 1,520 SU but budget.allocation_su is 1,000" in result.stderr  # with the schedule
    assert "can run only 25.0 hours" in result.stderr  # 1,000 / 40


def test_unknown_flavor_is_a_clear_error(course_repo, tmp_path):
    repo = shutil.copytree(course_repo, tmp_path / "course", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "course.yaml").write_text((repo / "course.yaml").read_text().replace('"m3.medium"', "m3.huge"))
    result = run_coursekit(repo, "cost")
    assert result.returncode == 1
    assert result.stderr.startswith("error: course.yaml: fleet.openstack.flavor: 'm3.huge' is not a Jetstream2 flavor; use one of m3.tiny, ")
