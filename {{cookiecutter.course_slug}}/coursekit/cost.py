"""Service-unit (SU) estimate for a course at its provider's rates (fleet/<provider>/section.py), and the allocation guard."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from coursekit.config import Course
from coursekit.errors import BudgetError
from coursekit.fleet import registry
from coursekit.fleet.registry import Rates
from coursekit.schedule import Schedule, schedule_of


@dataclass(frozen=True)
class Item:
    what: str
    seats: int
    su_per_hour: float
    hours: float

    @property
    def su(self) -> float:
        """SUs for this item over the whole run."""
        return self.seats * self.su_per_hour * self.hours


@dataclass(frozen=True)
class Estimate:
    rates: Rates  # the provider's prices, from its section
    items: tuple[Item, ...]  # hours as the schedule runs the seats (all hours without one)
    allocation_su: float | None
    always_on_hours: float = 0.0  # class + keep_days, every hour
    runs_out: datetime | None = None  # when the allocation would be spent at this rate (None: not within ten years)

    @property
    def total_su(self) -> float:
        return sum(item.su for item in self.items)

    @property
    def always_on_su(self) -> float:
        return sum(item.seats * item.su_per_hour for item in self.items) * self.always_on_hours

    @property
    def hours_per_seat(self) -> float:
        return self.items[0].hours if self.items else 0.0

    @property
    def su_per_hour(self) -> float:
        """What the whole fleet burns in an hour while every seat is awake."""
        return sum(item.seats * item.su_per_hour for item in self.items)

    @property
    def seats(self) -> int:
        return sum(item.seats for item in self.items)

    @property
    def affordable_hours(self) -> float | None:
        """How long the whole fleet can run on the allocation."""
        return affordable_hours(self.allocation_su, 1, self.su_per_hour) if self.allocation_su is not None else None


def affordable_hours(allocation_su: float, seats: int, su_per_hour: float) -> float:
    """Hours that seats VMs of su_per_hour each can run on allocation_su."""
    return allocation_su / (seats * su_per_hour) if seats and su_per_hour else float("inf")


def estimate(course: Course) -> Estimate:
    """Seats × hours × SU per hour, per kind of seat, the hours being those the schedule keeps seats awake (pure).
    Paused (shelved) seats cost nothing; idle pauses cannot be foreseen, so they only make it cheaper."""
    rates = registry.section(course.fleet.provider).rates(course.fleet)
    plan = schedule_of(course)
    start = _aware(course.course.start, plan)
    hours = plan.awake_hours(start, plan.expires_at)
    groups = (
        ("students", len(course.seats.students)),
        ("instructors", len(course.seats.instructors)),
        ("spares", course.seats.spares),
    )
    items = tuple(Item(what, count, rates.seat, hours) for what, count in groups if count)
    seats_rate = sum(item.seats * item.su_per_hour for item in items)
    items += tuple(Item(what, 1, rate, course.course.hours) for what, rate in rates.always_on)
    always_rate = sum(rate for _, rate in rates.always_on)
    runs_out = None
    if course.allocation_su is not None and seats_rate + always_rate:
        runs_out = _spent_at(plan, start, course.allocation_su, seats_rate, always_rate)
    return Estimate(rates, items, course.allocation_su, course.course.hours, runs_out)


def _aware(moment: datetime, plan: Schedule) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=plan.tz)


def _spent_at(plan: Schedule, start: datetime, allocation: float, awake_rate: float, always_rate: float) -> datetime | None:
    """When the allocation is spent by seats burning awake_rate SU/hour in the awake windows and what is always
    on (a gateway) burning always_rate, from start (None: not within ten years)."""
    if not plan.windows:
        return start + timedelta(hours=allocation / (awake_rate + always_rate))
    left, moment = allocation, start
    for begin, end in [*plan.intervals(start, start + timedelta(days=3653)), (start + timedelta(days=3653),) * 2]:
        begin, end = max(begin, moment), max(end, moment)
        for rate, until in ((always_rate, begin), (awake_rate + always_rate, end)):  # the gap, then the window
            cost = rate * (until - moment) / timedelta(hours=1)
            if rate and cost >= left:
                return moment + timedelta(hours=left / rate)
            left, moment = left - cost, until
    return None


def check_budget(result: Estimate) -> None:
    """BudgetError when the estimate exceeds the allocation."""
    if result.allocation_su is None or result.total_su <= result.allocation_su:
        return
    raise BudgetError(
        f"the course needs {result.total_su:,.0f} SU but budget.allocation_su is {result.allocation_su:,.0f}: "
        f"{result.seats} VMs ({result.su_per_hour:g} SU/hour in all) can run only "
        f"{result.affordable_hours:,.1f} hours. Use a smaller flavor, fewer spares, fewer keep_days or shorter schedule.awake "
        "windows, or ask for a bigger allocation."
    )
