"""The schedule as pure functions of an injected clock: a simulated class day, edge rules, expiry notices."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

EST = timezone(timedelta(hours=-5))


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2027, 1, day, hour, minute, tzinfo=EST)


@pytest.fixture
def plan(coursekit):
    from coursekit.schedule import Schedule, parse_window

    # Class on Jan 11, keep_days 3: expires Jan 14 17:00.
    return Schedule((parse_window("08:00-18:00"),), 2, True, EST, at(14, 17))


def test_a_simulated_class_day(plan):
    """One seat from the evening before class to the next morning, the cron running every 15 minutes: each
    edge acts once; the student works until 10:30 and then leaves the notebook open."""
    from coursekit.schedule import Change, SeatClock

    seat = SeatClock("ann", paused=False, started=at(10, 16), last_activity=at(10, 16))
    log = []
    moment = at(10, 16, 15)
    while moment <= at(12, 8, 30):
        if not seat.paused and at(11, 8) <= moment <= at(11, 10, 30):
            seat = SeatClock("ann", paused=False, started=seat.started, last_activity=moment)
        if decision := plan.decide(seat, moment):
            log.append((moment.strftime("%d %H:%M"), decision.change.value))
            if decision.change is Change.PAUSE:
                seat = SeatClock("ann", paused=True, paused_at=moment)
            else:  # woken: Jupyter starts anew
                seat = SeatClock("ann", paused=False, started=moment, last_activity=moment)
        moment += timedelta(minutes=15)
    assert log == [
        ("10 18:00", "pause"),  # the window ended
        ("11 08:00", "resume"),  # the window began
        ("11 12:30", "pause"),  # 2 hours without activity
        ("12 08:00", "resume"),  # an idle-paused seat wakes with the next window
    ]


def test_idle_paused_seat_stays_paused_until_the_next_window(plan):
    from coursekit.schedule import SeatClock

    seat = SeatClock("ann", paused=True, paused_at=at(11, 12, 30))
    assert plan.decide(seat, at(11, 15)) is None
    assert plan.decide(seat, at(11, 19)) is None
    woken = plan.decide(seat, at(12, 8, 5))
    assert woken.change.value == "resume" and woken.reason == "awake hours began at Tue 2027-01-12 08:00 -0500"


def test_outside_the_windows_every_seat_is_paused_and_inside_pauses_by_hand_stand(plan):
    from coursekit.schedule import SeatClock

    # Created by a deploy (or resumed by hand) at 19:00: outside the windows, paused at the next run.
    evening = SeatClock("ann", paused=False, started=at(11, 19), last_activity=at(11, 19))
    assert plan.decide(evening, at(11, 19, 15)).change.value == "pause"
    # Paused by hand during class: it stays paused for the rest of the window.
    assert plan.decide(SeatClock("ann", paused=True, paused_at=at(11, 10)), at(11, 11)) is None
    # Shelved outside coursekit (no pause time): woken in the window, left alone outside it.
    assert plan.decide(SeatClock("ann", paused=True), at(11, 9)).change.value == "resume"
    assert plan.decide(SeatClock("ann", paused=True), at(11, 22)) is None


def test_a_missed_cron_run_still_acts_on_the_edge(plan):
    from coursekit.schedule import SeatClock

    # The 18:00 and 18:15 runs never happened (GitHub delays cron jobs): 19:40 still pauses, and the
    # 08:00 run missed the next morning still wakes the seat at 09:10.
    seat = SeatClock("ann", paused=False, started=at(11, 8), last_activity=at(11, 17, 55))
    assert plan.decide(seat, at(11, 19, 40)).reason == "outside the awake hours (next wake Tue 2027-01-12 08:00 -0500)"
    assert plan.decide(SeatClock("ann", paused=True, paused_at=at(11, 19, 40)), at(12, 9, 10)).change.value == "resume"


def test_without_windows_only_idleness_pauses_and_nothing_wakes_by_itself(coursekit):
    from coursekit.schedule import Schedule, SeatClock

    always = Schedule((), 1.5, False, EST, at(14, 17))
    assert always.decide(SeatClock("ann", False, None, at(11, 8), at(11, 9)), at(11, 10)) is None
    assert always.decide(SeatClock("ann", False, None, at(11, 8), at(11, 9)), at(11, 10, 31)).change.value == "pause"
    assert always.decide(SeatClock("ann", True, at(11, 10, 31)), at(12, 9)) is None
    assert always.next_change(SeatClock("ann", True, at(11, 10, 31)), at(12, 9)) == "paused until `coursekit resume`"


def test_status_says_when_each_seat_next_changes(plan):
    from coursekit.schedule import SeatClock

    busy = SeatClock("ann", False, None, at(11, 8), at(11, 16, 30))
    assert plan.next_change(busy, at(11, 16, 45)) == "awake until Mon 2027-01-11 18:00 -0500"
    quiet = SeatClock("ben", False, None, at(11, 8), at(11, 9))
    assert plan.next_change(quiet, at(11, 10)) == "awake until Mon 2027-01-11 11:00 -0500"  # idle limit first
    assert plan.next_change(SeatClock("cy", True, at(11, 18)), at(11, 23)) == "paused until Tue 2027-01-12 08:00 -0500"


def test_expiry_is_announced_a_day_ahead(plan):
    assert plan.expiry_warning(at(13, 16, 59)) is None
    assert plan.expiry_warning(at(13, 17)) == ("the course expires at Thu 2027-01-14 17:00 -0500 (course.end + keep_days): "
                                               "every seat is then archived and removed")
    assert not plan.expired(at(14, 16, 59)) and plan.expired(at(14, 17))
    assert plan.expiry_warning(at(15, 0)).startswith("the course expired at Thu 2027-01-14 17:00 -0500")


@pytest.mark.parametrize("text,why", [
    ("8-18", "is not a window"), ("08:00-24:01", "ends after 24:00"), ("24:00-08:00", "is not a window"),
    ("10:00-10:00", "is empty"), (" 08:00-18:00x", "is not a window"),
])
def test_window_syntax(coursekit, text, why):
    from coursekit.schedule import parse_window

    with pytest.raises(ValueError, match=why):
        parse_window(text)


def test_windows_crossing_midnight_and_whole_days(coursekit):
    from coursekit.schedule import Schedule, parse_window

    night = Schedule((parse_window("22:00-02:00"),), 0, False, EST, at(20, 0))
    assert night.awake_interval(at(11, 1)) == (at(10, 22), at(11, 2))
    assert night.awake_interval(at(11, 3)) is None and night.next_wake(at(11, 3)) == at(11, 22)
    whole = Schedule((parse_window("00:00-24:00"),), 0, False, EST, at(20, 0))
    assert whole.awake_hours(at(11, 0), at(13, 0)) == 48
