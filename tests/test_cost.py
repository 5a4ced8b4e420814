"""Cost arithmetic against hand-computed cases, and the allocation guard."""
from __future__ import annotations

import re

import pytest
from conftest import run_coursekit
from helpers import copy_course


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
    from coursekit.fleet.openstack.section import flavor as lookup

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
    # The gateway (m3.small, 2 SU/h) stays up all 80 hours: it shows paused seats their page.
    assert [(i.what, i.seats, i.hours, i.su) for i in result.items] == [
        ("students", 3, 38.0, 912.0), ("instructors", 1, 38.0, 304.0), ("spares", 1, 38.0, 304.0), ("gateway", 1, 80.0, 160.0)
    ]
    assert result.total_su == 1680
    # Always on: 8 h of class + 3 keep_days × 24 h = 80 h.
    assert result.always_on_hours == 80 and result.always_on_su == 3360
    assert result.affordable_hours == pytest.approx(10_000 / 42)  # 5 × 8 + 2 SU an hour
    # Day 1 (from 09:00): 9 awake hours × 42 + 14 asleep × 2 to 08:00 = 406; then 448 a day (10 × 42 + 14 × 2).
    # 10,000 - 406 = 9,594 = 21 days × 448 + 186: 186 / 42 = 4.43 awake hours into day 23, at 12:25:42.
    start = _course(coursekit, course_repo).course.start
    assert (result.runs_out.date() - start.date()).days == 22
    assert result.runs_out.strftime("%H:%M:%S") == "12:25:42"


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
    course = replace(course, seats=seats, fleet=replace(course.fleet, sections={**course.fleet.sections, "openstack": openstack}))
    result = estimate(course)
    # 50 VMs × 4 SU/h × 80 h = 16,000 SU, and the gateway 2 × 80 = 160: 16,160 > 10,000; affordable 10,000 / 202 = 49.5 h.
    assert result.total_su == 16_160 and result.affordable_hours == pytest.approx(49.50, abs=0.01)
    with pytest.raises(BudgetError, match=r"needs 16,160 SU but budget.allocation_su is 10,000: 51 VMs \(202 SU/hour in all\) can run only 49.5 hours"):
        check_budget(result)


def test_cost_command_prints_items_and_total(course_repo):
    result = run_coursekit(course_repo, "cost")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(re.search(r"students\s.*\b3\b.*\b8\b.*38\.0.*912", line) for line in lines)
    assert any(re.search(r"gateway\s.*\b1\b.*\b2\b.*80\.0.*160", line) for line in lines)
    assert any(re.search(r"total\s.*\b6\b.*1,680", line) for line in lines)
    assert "always on: 80.0 hours per seat" in result.stdout and ": 3,360 SU" in result.stdout
    assert "with the schedule (awake 08:00-18:00 daily): 38.0 hours per seat, 1,680 SU; shelving outside the windows saves 1,680 SU (50%)" in result.stdout
    assert "the whole fleet could run 238.1 hours" in result.stdout


def test_cost_command_exits_1_over_budget(course_repo, tmp_path):
    repo = copy_course(course_repo, tmp_path / "course")
    text = (repo / "course.yaml").read_text().replace("allocation_su: 10000", "allocation_su: 1000")
    (repo / "course.yaml").write_text(text)
    result = run_coursekit(repo, "cost")
    assert result.returncode == 1
    assert "error: the course needs 1,680 SU but budget.allocation_su is 1,000" in result.stderr  # with the schedule
    assert "can run only 23.8 hours" in result.stderr  # 1,000 / 42


def test_unknown_flavor_is_a_clear_error(course_repo, tmp_path):
    repo = copy_course(course_repo, tmp_path / "course")
    (repo / "course.yaml").write_text((repo / "course.yaml").read_text().replace('"m3.medium"', "m3.huge"))
    result = run_coursekit(repo, "cost")
    assert result.returncode == 1
    assert result.stderr.startswith("error: course.yaml: fleet.openstack.flavor: 'm3.huge' is not a Jetstream2 flavor; use one of m3.tiny, ")
