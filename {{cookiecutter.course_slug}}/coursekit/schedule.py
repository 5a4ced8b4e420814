"""When seats should be awake: daily windows, idleness and expiry, as pure functions of an injected clock.

Outside the awake windows every seat is paused, whoever started it. Inside a window a seat is paused
when its Jupyter has been idle too long, and a paused seat wakes only if it was paused before the window
began (so a seat paused for idleness, or by hand, stays paused until the next window). Decisions depend on
the seat's own clocks, not on when the cron job last ran, so a missed or delayed run changes nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from enum import Enum
from typing import Iterator

_WINDOW = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])")
_MOMENT = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?")
DAY = timedelta(days=1)
WARN_BEFORE = timedelta(days=1)


@dataclass(frozen=True)
class Window:
    """A daily window in minutes from midnight; an end at or before the start crosses midnight."""

    start: int
    end: int

    def on(self, day: date, tz: tzinfo) -> tuple[datetime, datetime]:
        """This window's interval that starts on day."""
        begin = datetime.combine(day, time(), tz) + timedelta(minutes=self.start)
        length = (self.end - self.start) % 1440 or 1440
        return begin, begin + timedelta(minutes=length)


def parse_window(text: str) -> Window:
    """'08:00-18:00' → Window; ValueError saying what is wrong otherwise."""
    match = _WINDOW.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{text!r} is not a window; write it as HH:MM-HH:MM in 24-hour time, like 08:00-18:00")
    start, end = int(match[1]) * 60 + int(match[2]), int(match[3]) * 60 + int(match[4])
    if end > 1440:
        raise ValueError(f"{text!r} ends after 24:00; a window crossing midnight is written like 22:00-02:00")
    if start == end % 1440 and end != 1440:
        raise ValueError(f"{text!r} is empty; for a seat that never sleeps, leave schedule.awake empty")
    return Window(start, end)


class Change(str, Enum):
    PAUSE = "pause"
    RESUME = "resume"


@dataclass(frozen=True)
class SeatClock:
    """What the schedule reads of one seat: is it paused, since when, and Jupyter's own clocks."""

    seat: str
    paused: bool
    paused_at: datetime | None = None  # when it was paused (None: unknown, e.g. shelved by hand long ago)
    started: datetime | None = None  # when its Jupyter started (a resume or a boot)
    last_activity: datetime | None = None  # Jupyter's last_activity


@dataclass(frozen=True)
class Decision:
    seat: str
    change: Change
    reason: str


@dataclass(frozen=True)
class Schedule:
    """course.yaml's schedule, in the course's time zone."""

    windows: tuple[Window, ...]
    idle_pause_hours: float
    expire: bool
    tz: tzinfo
    expires_at: datetime  # course.end + keep_days

    def intervals(self, frm: datetime, to: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The awake intervals overlapping [frm, to), merged, in order (one endless one without windows)."""
        if not self.windows:
            yield datetime.min.replace(tzinfo=timezone.utc), datetime.max.replace(tzinfo=timezone.utc)
            return
        day, last = (frm.astimezone(self.tz) - DAY).date(), to.astimezone(self.tz).date()
        current: list[datetime] | None = None
        while day <= last:
            for begin, end in sorted(w.on(day, self.tz) for w in self.windows):
                if current and begin <= current[1]:
                    current[1] = max(current[1], end)
                    continue
                if current and current[1] > frm:
                    yield current[0], current[1]
                if begin >= to:
                    return
                current = [begin, end]
            day += DAY
        if current and current[1] > frm:
            yield current[0], current[1]

    def awake_interval(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The awake interval now lies in, or None when now is outside every window."""
        return next(((b, e) for b, e in self.intervals(now, now + DAY) if b <= now < e), None)

    def next_wake(self, now: datetime) -> datetime | None:
        """The start of the next awake interval after now (None without windows)."""
        if not self.windows:
            return None
        return next((b for b, _ in self.intervals(now, now + 2 * DAY) if b > now), None)

    def awake_hours(self, frm: datetime, to: datetime) -> float:
        """Hours of [frm, to) inside the awake windows."""
        total = sum(((min(e, to) - max(b, frm)) for b, e in self.intervals(frm, to) if e > frm and b < to), timedelta())
        return total / timedelta(hours=1)

    def covers(self, frm: datetime, to: datetime) -> bool:
        """Every moment of [frm, to) lies inside an awake window."""
        return abs(self.awake_hours(frm, to) - (to - frm) / timedelta(hours=1)) < 1e-9

    def expired(self, now: datetime) -> bool:
        return self.expire and now >= self.expires_at

    def expiry_warning(self, now: datetime) -> str | None:
        """A day's notice of the expiry, and the notice that it is due."""
        if not self.expire or now < self.expires_at - WARN_BEFORE:
            return None
        when = self.local(self.expires_at)
        if now >= self.expires_at:
            return f"the course expired at {when}: every seat is archived, verified and removed"
        return f"the course expires at {when} (course.end + keep_days): every seat is then archived and removed"

    def local(self, moment: datetime) -> str:
        """A moment as the course's clock shows it."""
        return moment.astimezone(self.tz).strftime("%a %Y-%m-%d %H:%M %z")

    def decide(self, seat: SeatClock, now: datetime) -> Decision | None:
        """What the schedule does to one seat now, if anything."""
        interval = self.awake_interval(now)
        if seat.paused:
            if interval and (seat.paused_at is None or seat.paused_at < interval[0]):
                return Decision(seat.seat, Change.RESUME, f"awake hours began at {self.local(interval[0])}")
            return None
        if interval is None:
            return Decision(seat.seat, Change.PAUSE, f"outside the awake hours (next wake {self.wakes_at(now)})")
        if self.idle_pause_hours and seat.last_activity is not None:
            idle = now - seat.last_activity
            if idle >= timedelta(hours=self.idle_pause_hours):
                return Decision(seat.seat, Change.PAUSE, f"idle for {idle / timedelta(hours=1):.1f} hours "
                                                         f"(schedule.idle_pause_hours is {self.idle_pause_hours:g})")
        return None

    def wakes_at(self, now: datetime) -> str:
        """When a paused seat next wakes, as the course's clock shows it ("" without windows: only resume wakes it)."""
        wake = self.next_wake(now)
        return self.local(wake) if wake else ""

    def next_change(self, seat: SeatClock, now: datetime) -> str:
        """What status shows: the seat's scheduled state and when it next changes."""
        if seat.paused:
            return f"paused until {self.wakes_at(now) or '`coursekit resume`'}"
        interval = self.awake_interval(now)
        ends = [] if interval is None or not self.windows else [interval[1]]
        if self.idle_pause_hours and seat.last_activity is not None:
            ends.append(seat.last_activity + timedelta(hours=self.idle_pause_hours))
        if self.expire:
            ends.append(self.expires_at)
        return f"awake until {self.local(min(ends))}" if ends else "awake"


def class_sessions(start: datetime, end: datetime, listed: tuple[tuple[datetime, datetime], ...] = ()) -> list[tuple[datetime, datetime]]:
    """When the class meets (pure): the listed sessions; else, for a class over several days, start's time to end's
    time on each day; else start to end."""
    if listed:
        return sorted(listed)
    if start.date() == end.date() or end.timetz().replace(tzinfo=None) <= start.timetz().replace(tzinfo=None) \
            or end - start < DAY:
        return [(start, end)]  # one day, or one session through the night
    days = (end.date() - start.date()).days
    return [(start + timedelta(days=n), end - timedelta(days=days - n)) for n in range(days + 1)]


def next_session(sessions: list[tuple[datetime, datetime]], now: datetime) -> tuple[datetime, datetime] | None:
    """The session under way at now, else the next one (None when the class is over)."""
    return next(((b, e) for b, e in sessions if e > now), None)


def schedule_of(course) -> Schedule:
    """The course's schedule (always awake, never expiring, when course.yaml has none)."""
    info = course.course
    tz = info.start.tzinfo or timezone.utc
    end = info.end if info.end.tzinfo else info.end.replace(tzinfo=tz)
    s = course.schedule
    return Schedule(s.windows, s.idle_pause_hours, s.expire, tz, end + timedelta(days=info.keep_days))


def now_utc() -> datetime:
    """The real clock (commands take --at to rehearse another moment)."""
    return datetime.now(timezone.utc)


SANE_YEARS = (2000, 2200)  # outside these, a clock is wrong (and adding hours to 9999-12-31 overflows)


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 moment as Jupyter or Docker write it ('...Z', nanoseconds); None when it is not one."""
    match = _MOMENT.fullmatch(text) if isinstance(text, str) and len(text) < 64 else None
    if not match or match[1].startswith("0001-"):  # Docker's "never"
        return None
    try:  # a seat's answer is data: a month 13 or a year 9999 is "unknown", never an exception
        moment = datetime.fromisoformat(match[1] + (match[2] or "")[:7])
        zone = match[3] or "Z"
        moment = moment.replace(tzinfo=timezone.utc) if zone == "Z" else datetime.fromisoformat(f"{moment.isoformat()}{zone}")
        moment = moment.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None
    return moment if SANE_YEARS[0] <= moment.year <= SANE_YEARS[1] else None


def jupyter_clocks(body: dict | None) -> dict[str, datetime | None]:
    """started and last_activity from Jupyter Server's /api/status (both in UTC)."""
    body = body if isinstance(body, dict) else {}
    return {"started": parse_time(body.get("started")), "last_activity": parse_time(body.get("last_activity"))}


def seat_clock(seat: str, paused: bool, paused_at: datetime | None, answer: dict | None) -> SeatClock:
    """What the schedule reads of a seat: whether it is paused and since when, and the clocks in Jupyter's answer to
    /api/status (None: it gave none)."""
    return SeatClock(seat, paused, paused_at, **(jupyter_clocks(answer) if answer is not None else {}))


def activity_text(body: dict | None) -> str:
    """Jupyter's last_activity as status shows it: a clean UTC time, or "unknown" for anything else a seat says."""
    moment = jupyter_clocks(body)["last_activity"]
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ("unknown" if isinstance(body, dict) else "-")
