"""Multi-day classes: a class from course.start to course.end on different days meets from the start's time to the
end's time on each day (or as course.sessions lists); the awake windows must cover the sessions, not the nights."""
from __future__ import annotations

from datetime import datetime

import pytest
from conftest import run_coursekit
from helpers import copy_course, edit_course

SECRET = "sessions-tests-secret-Kp4Zt7Qx2Lm9"


@pytest.fixture
def three_days(course_repo, tmp_path):
    repo = copy_course(course_repo, tmp_path / "course")
    edit_course(repo, lambda d: (
        d["course"].update(slug="sessions-course", start="2027-01-11T09:00:00-05:00", end="2027-01-13T17:00:00-05:00",
                           keep_days=2),
        d["schedule"].update(awake=["08:00-18:00"]),
    ))
    return repo


def test_a_three_day_workshop_validates_and_meets_each_day(three_days, coursekit):
    from coursekit.config import load_course

    result = run_coursekit(three_days, "validate")
    assert result.returncode == 0, result.stderr
    meets = load_course(three_days / "course.yaml").course.meets()
    assert [(b.isoformat(), e.isoformat()) for b, e in meets] == [
        ("2027-01-11T09:00:00-05:00", "2027-01-11T17:00:00-05:00"),
        ("2027-01-12T09:00:00-05:00", "2027-01-12T17:00:00-05:00"),
        ("2027-01-13T09:00:00-05:00", "2027-01-13T17:00:00-05:00"),
    ]


def test_its_schedule_pauses_at_night_and_wakes_for_the_next_session(three_days, coursekit):
    from coursekit.config import load_course
    from coursekit.schedule import Change, SeatClock, schedule_of

    plan = schedule_of(load_course(three_days / "course.yaml"))
    night = datetime.fromisoformat("2027-01-11T23:00:00-05:00")
    assert plan.decide(SeatClock("ann", False), night).change is Change.PAUSE
    paused = SeatClock("ann", True, paused_at=datetime.fromisoformat("2027-01-11T18:00:00-05:00"))
    assert plan.decide(paused, datetime.fromisoformat("2027-01-12T08:05:00-05:00")).change is Change.RESUME
    assert plan.decide(SeatClock("ann", False), datetime.fromisoformat("2027-01-12T12:00:00-05:00")) is None


def test_cost_counts_awake_hours_over_the_real_days(three_days):
    result = run_coursekit(three_days, "cost")
    assert result.returncode == 0, result.stderr
    # 08:00-18:00 on the 11th to the 15th (keep_days 2 after the 13th's 17:00): 10 + 10 + 10 + 10 + 10 hours, from
    # the first session's start at 09:00, to the 15th at 17:00: 9 + 10 + 10 + 10 + 9 = 48 hours per seat.
    assert "48.0 hours per seat" in result.stdout, result.stdout


def test_a_session_outside_the_windows_is_refused_by_name(three_days):
    edit_course(three_days, lambda d: d["course"].update(sessions=[
        {"start": "2027-01-11T08:00:00-05:00", "end": "2027-01-11T20:00:00-05:00"},  # a long first day
        {"start": "2027-01-12T09:00:00-05:00", "end": "2027-01-12T17:00:00-05:00"},
        {"start": "2027-01-13T09:00:00-05:00", "end": "2027-01-13T17:00:00-05:00"},
    ], start="2027-01-11T08:00:00-05:00"))
    result = run_coursekit(three_days, "validate")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "the session 2027-01-11 08:00 to 20:00 is not all inside the awake windows" in result.stderr
    edit_course(three_days, lambda d: d["schedule"].update(awake=["07:30-20:30"]))
    assert run_coursekit(three_days, "validate").returncode == 0


@pytest.mark.parametrize("session,why", [
    ({"start": "2027-01-12T17:00:00-05:00", "end": "2027-01-12T09:00:00-05:00"}, "before it starts"),
    ({"start": "2027-02-12T09:00:00-05:00", "end": "2027-02-12T17:00:00-05:00"}, "must lie between course.start and course.end"),
    ({"start": "tomorrow", "end": "2027-01-12T17:00:00-05:00"}, "must be ISO 8601 moments"),
])
def test_a_wrong_session_is_named(three_days, session, why):
    edit_course(three_days, lambda d: d["course"].update(sessions=[session]))
    result = run_coursekit(three_days, "validate")
    assert result.returncode == 1 and "course.sessions[0]" in result.stderr and why in result.stderr, result.stderr


@pytest.mark.docker  # asks the (empty) Docker fleet of this course what to do
def test_schedule_says_when_the_next_session_starts(three_days):
    result = run_coursekit(three_days, "schedule", "--at", "2027-01-11T23:00:00-05:00", env={"COURSEKIT_SECRET": SECRET})
    assert "next session: Tue 2027-01-12 09:00 -0500 to Tue 2027-01-12 17:00 -0500" in result.stderr, result.stderr
