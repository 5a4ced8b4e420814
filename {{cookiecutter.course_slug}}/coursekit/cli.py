"""Command line: python -m coursekit COMMAND, run from the course repository's root."""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.table import Table
from rich.text import Text

from coursekit import cost, keys, names, roster, summary
from coursekit.archivestore import store_for
from coursekit.config import DEFAULT_CONFIG, Course, load_course
from coursekit.errors import CoursekitError, ImageTestError
from coursekit.fleet import registry
from coursekit.fleet.provider import fleet_for
from coursekit.schedule import Change, Decision, Schedule, now_utc, parse_time, schedule_of
from coursekit.seats import SECRET_VARIABLE, SeatTokens, read_secret, seats
from coursekit.ui import err, out, plural, styled, warn


def cmd_validate(args: argparse.Namespace) -> int:
    """Check course.yaml; every problem is listed with its line (--online: also that every pin exists)."""
    course = load_course(args.config)
    if args.online:
        _check_pins(args.config, course)
    seats = course.seats
    out.print(
        f"{args.config} is valid: {course.course.name!r}, {plural(len(seats.students), 'student')}, "
        f"{plural(len(seats.instructors), 'instructor')}, {plural(seats.spares, 'spare')}; "
        f"image {course.image.name}; provider {course.fleet.provider}"
    )
    return 0


def _check_pins(config: Path, course: Course) -> None:
    from coursekit.errors import ConfigError
    from coursekit.pins import pin_problems
    from coursekit.yamlload import load_file

    missing = pin_problems(list(course.image.python_packages))
    if missing:
        doc = load_file(config)
        raise ConfigError([doc.problem(("image", "python_packages", i), why) for i, why in missing.items()])


def cmd_cost(args: argparse.Namespace) -> int:
    """Print the SU estimate and fail when it exceeds the allocation."""
    course = load_course(args.config)
    result = cost.estimate(course)
    table = Table(title=f"{course.course.name}: {result.rates.title}")
    for column in ("item", "seats", "SU/hour each", "hours", "SU"):
        table.add_column(column, justify="left" if column == "item" else "right")
    for item in result.items:
        table.add_row(item.what, str(item.seats), str(item.su_per_hour), f"{item.hours:,.1f}", f"{item.su:,.0f}")
    table.add_row("total", str(result.seats), "", "", f"{result.total_su:,.0f}", style="bold")
    out.print(table)
    info, plan = course.course, schedule_of(course)
    out.print(f"always on: {info.hours:,.1f} hours per seat = class ({info.start:%Y-%m-%d %H:%M} to {info.end:%Y-%m-%d %H:%M}) "
              f"+ keep_days {info.keep_days} × 24: {result.always_on_su:,.0f} SU")
    if plan.windows:
        saved = result.always_on_su - result.total_su
        share = saved / result.always_on_su if result.always_on_su else 0
        out.print(f"with the schedule (awake {', '.join(_window_text(w) for w in plan.windows)} daily): {result.hours_per_seat:,.1f} "
                  f"hours per seat, {result.total_su:,.0f} SU; shelving outside the windows saves {saved:,.0f} SU ({share:.0%})")
    if result.rates.note:
        out.print(result.rates.note)
    if result.allocation_su is not None:
        share = result.total_su / result.allocation_su if result.allocation_su else float("inf")
        out.print(
            f"allocation {result.allocation_su:,.0f} SU: this course uses {share:.0%}; "
            f"the whole fleet could run {result.affordable_hours:,.1f} hours on it"
        )
        ends = plan.local(result.runs_out) if result.runs_out else "not within ten years"
        out.print(f"at this rate, from course.start, the allocation runs out: {ends}")
    cost.check_budget(result)
    return 0


def _window_text(window) -> str:
    return f"{window.start // 60:02d}:{window.start % 60:02d}-{window.end // 60:02d}:{window.end % 60:02d}"


def cmd_roster(args: argparse.Namespace) -> int:
    """Print or write the roster: every seat's link and credential."""
    if args.output is None and os.environ.get("CI"):
        raise CoursekitError(
            "roster prints every seat's credential, so it does not write to a CI log. "
            "Run it on your own machine with the same COURSEKIT_SECRET, or pass --output FILE."
        )
    course: Course = load_course(args.config)
    tokens = _tokens(course)
    if args.format == "sheet":  # no credential on it: the state of each seat instead
        text = roster.to_sheet(course, roster.rows(course, tokens), _fleet_states(course, tokens))
    else:
        text = roster.FORMATS[args.format](course, roster.rows(course, tokens, _fleet_urls(course, tokens)))
    if args.output is None:
        sys.stdout.write(text)
        return 0
    # Owner-only from the first byte: the file holds every credential.
    try:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise CoursekitError(f"--output {args.output}: cannot write it ({exc.strerror}); give a file path you own") from None
    os.fchmod(fd, 0o600)  # also when the file existed with wider permissions
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    err.print(f"wrote {args.output} ({plural(text.count(chr(10)), 'line')}); keep it private, it holds every credential")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """Build the course image from the Dockerfile, tagged with the git short sha."""
    from coursekit import image
    from coursekit.engine import Engine

    course = load_course(args.config)
    docker = Engine.connect()
    ref = image.build(docker, course, args.base_image, args.ca_bundle, args.network, args.no_cache, args.cache_from)
    out.print(ref)
    summary.write("Image", f"`{summary.cell(ref)}`, {docker.image_size(ref) / 1e6:,.0f} MB\n")
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    """Resolve every Python package (transitive ones too) against the base image; write requirements.lock with hashes."""
    from coursekit import lock
    from coursekit.engine import Engine
    from coursekit.validate import lock_made_from

    course = load_course(args.config, check_lock=False)
    base = args.base_image or course.image.base
    current = lock.read_lock(course)
    if current and not args.settle and current.base_image == base and lock_made_from(course.root, list(course.image.python_packages)):
        out.print(f"{lock.LOCK_FILE} is up to date: made from these packages on {base} (nothing resolved, no container)")
        return 0
    err.print(f"resolving {plural(len(course.image.python_packages), 'package')} on {base}")
    lines = lock.resolve(Engine.connect(), course, base, args.ca_bundle, args.network)
    made = lock.updated(current, base, lines, settle=args.settle)
    path = lock.write_lock(course, made)
    out.print(f"wrote {path.name}: {plural(len(lines), 'package')} pinned with sha256 hashes; commit it")
    if made.changed:
        out.print(f"{plural(len(made.changed), 'package')} changed since the lock was settled: a rebuild reinstalls only "
                  "those (`--settle` folds them in, for one clean layer)")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """Run the image as a student gets it: credential, data, every notebook, pip check."""
    from coursekit import image, imagetest
    from coursekit.engine import Engine

    course = load_course(args.config)
    ref = args.image or image.image_ref(course)
    err.print(f"testing {ref}")
    # The course's secret when there is one (checked as every command checks it), else a throwaway one.
    tokens = _tokens(course) if os.environ.get(SECRET_VARIABLE) else SeatTokens(secrets.token_urlsafe(32), course.course.slug)
    checks = imagetest.run_checks(
        Engine.connect(), course, ref, args.network, args.notebook_timeout, args.start_timeout, tokens
    )
    # One line per check (details indented below): readable in a terminal and grep-able in CI logs.
    for check in checks:
        first, *rest = check.detail.splitlines() or [""]
        mark = styled("skip", "yellow") if check.skipped else (styled("pass", "green") if check.ok else styled("FAIL", "red"))
        took = f" [{check.seconds:.1f}s]" if check.seconds is not None else ""
        out.print(Text.assemble(mark, f"  {check.name}{took}: {first}"))
        for line in rest:
            out.print(f"        {line}")
    summary.write(f"Tests of {ref}", summary.table(
        ("check", "result", "seconds", "detail"),
        [(c.name, "skipped" if c.skipped else ("passed" if c.ok else "FAILED"),
          f"{c.seconds:.1f}" if c.seconds is not None else "", (c.detail.splitlines() or [""])[0][:200]) for c in checks]))
    failed = [c.name for c in checks if not c.ok]
    if failed:
        raise ImageTestError(f"{plural(len(failed), 'check')} failed: {', '.join(failed)} (details in the table above)")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """Push the built image (sha tag, date tag, latest on main) and verify the registry's digest."""
    from coursekit import image
    from coursekit.engine import Engine

    course = load_course(args.config)
    latest = image.on_main_branch(course.root) if args.latest is None else args.latest
    pushed = image.publish(Engine.connect(), course, latest)
    for tag, digest in pushed.items():
        out.print(f"{course.image.name}:{tag} {digest}")
    summary.write("Published", summary.table(("image", "digest"), [(f"{course.image.name}:{t}", d) for t, d in pushed.items()]))
    return 0


def _tokens(course: Course) -> SeatTokens:
    """Every seat's credential source, from COURSEKIT_SECRET: built once, handed to whoever needs tokens."""
    return SeatTokens(read_secret(), course.course.slug)


def _fleet_urls(course: Course, tokens: SeatTokens) -> dict[str, str]:
    """Seat URLs from the running fleet; none (placeholders) when there is no fleet to ask."""
    try:
        return fleet_for(course, None, tokens).urls()
    except CoursekitError as exc:
        err.print(f"cannot ask the fleet for seat URLs ({str(exc).splitlines()[0]}); the roster shows placeholders")
        return {}


def _fleet_states(course: Course, tokens: SeatTokens) -> dict[str, str]:
    """Each deployed seat's state; none when there is no fleet to ask."""
    try:
        return {o.seat: o.state.value for o in fleet_for(course, None, tokens).observe()}
    except CoursekitError as exc:
        err.print(f"cannot ask the fleet for seat states ({str(exc).splitlines()[0]}); the sheet shows none")
        return {}


def _fleet_and_plan(args: argparse.Namespace, course: Course | None = None):
    from coursekit import image
    from coursekit.fleet.plan import discard, plan

    course = course or load_course(args.config)
    fleet = fleet_for(course, args.provider, _tokens(course))
    ref = args.image or image.image_ref(course)
    observed = fleet.observe()
    # A paused seat wakes only when the schedule would wake it now: deploy never wakes a class outside its hours.
    decisions = _decisions(schedule_of(course), observed, _now(args))
    wake = frozenset(seat for seat, d in decisions.items() if d.change is Change.RESUME)
    actions = plan(fleet.desired(fleet.resolve_image(ref)), observed, wake)
    return fleet, ref, discard(actions, set(getattr(args, "discard", None) or ()))


def _now(args: argparse.Namespace) -> datetime:
    return getattr(args, "at", None) or now_utc()


def _decisions(plan: Schedule, observed, now: datetime) -> dict[str, Decision]:
    """seat → what the schedule does to it now (seats it leaves alone are absent)."""
    found = {o.seat: plan.decide(o.clock(), now) for o in observed}
    return {seat: d for seat, d in found.items() if d is not None}


def _print_plan(actions) -> None:
    table = Table(title="plan")
    for column in ("seat", "action", "why"):
        table.add_column(column)
    for action in actions:
        table.add_row(action.seat, action.kind.value, action.reason)
    out.print(table)


def cmd_plan(args: argparse.Namespace) -> int:
    """Show what deploy would do, seat by seat (a dry run)."""
    _, ref, actions = _fleet_and_plan(args)
    out.print(f"image {ref}")
    _print_plan(actions)
    return 0


def _print_outcomes(outcomes, verb: str) -> int:
    table = Table(title=verb)
    for column in ("seat", "action", "result", "detail"):
        table.add_column(column)
    for o in outcomes:
        table.add_row(o.seat, o.action, styled("ok", "green") if o.ok else styled("FAILED", "red"), o.detail)
    out.print(table)
    summary.write(verb, summary.table(("seat", "action", "result", "detail"),
                                      [(o.seat, o.action, "ok" if o.ok else "FAILED", o.detail) for o in outcomes]))
    failed = [o for o in outcomes if not o.ok]
    if failed:
        lines = "\n".join(f"  {o.seat}: {o.detail}" for o in failed)
        raise CoursekitError(f"{plural(len(failed), 'seat')} failed; run {verb} again to retry:\n{lines}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    """Create, heal or update every seat; seats no longer in the roster are archived, then removed."""
    from coursekit.fleet.plan import Kind

    course = load_course(args.config)
    if args.wait_for_image is not None:  # before anything touches the cloud
        from coursekit import image
        from coursekit.engine import Engine

        image.wait_published(Engine.connect(), args.image or image.image_ref(course), args.wait_for_image,
                             on_main=image.reached_main(course.root))
    fleet, ref, actions = _fleet_and_plan(args, course)
    removals = [a.seat for a in actions if a.kind is Kind.REMOVE]
    if removals and not args.yes:
        raise CoursekitError(
            f"deploy would remove {plural(len(removals), 'seat')} ({', '.join(removals)}) after archiving them "
            f"({args.archive_dir or fleet.course.archive_target}); run `python -m coursekit plan` to review, then deploy again with --yes"
        )
    err.print(f"deploying {ref}")
    archives = any(a.kind in (Kind.REMOVE, Kind.REPLACE) for a in actions)  # only these may archive a seat
    outcomes = fleet.apply(actions, ref, _archive_store(fleet, args.archive_dir) if archives else None)
    try:
        return _print_outcomes(outcomes, "deploy")
    finally:
        _summarize_fleet(fleet, ref)


def _summarize_fleet(fleet, ref: str) -> None:
    """The job summary's seat table (links without their credential) and the cost estimate."""
    if not os.environ.get(summary.VARIABLE):
        return
    rows = [(r.seat, r.state, r.url, r.health) for r in fleet.status()]
    result = cost.estimate(fleet.course)
    summary.write(f"Seats running {ref}", summary.table(("seat", "state", "link (the credential is on the slip)", "health"), rows)
                  + f"\nEstimated cost: {result.total_su:,.0f} SU ({result.seats} {result.rates.seats_are}, "
                    f"{result.hours_per_seat:,.1f} awake hours each)\n")


def cmd_status(args: argparse.Namespace) -> int:
    """Per seat: state, URL, image, health and last activity."""
    import json

    course = load_course(args.config)
    fleet = fleet_for(course, args.provider, _tokens(course))
    plan, now = schedule_of(course), _now(args)
    rows = fleet.status()
    scheduled = plan.windows or plan.idle_pause_hours or plan.expire
    when = {r.seat: plan.next_change(r.clock, now) for r in rows if scheduled and r.clock is not None}
    warning = plan.expiry_warning(now)
    if args.json:
        rows = [{**r.columns(), "schedule": when.get(r.seat, "-")} for r in rows]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        table = Table(title=f"{course.course.name}: status")
        for column in ("seat", "state", "url", "image", "health", "last activity", "home", "schedule"):
            table.add_column(column)
        for r in rows:
            table.add_row(r.seat, r.state, r.url, r.image, r.health, r.last_activity, r.home, when.get(r.seat, "-"))
        out.print(table)
        err.print(_session_line(course, plan, now))
    if warning:
        warn(warning)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Every seat through its student's door: its credential opens it, another's does not, a kernel runs the probe."""
    from coursekit import seatcheck, summary

    course = load_course(args.config)
    tokens = _tokens(course)
    roster = [s.id for s in seats(course)]  # a seat nobody sits at any more (after a swap) is nobody's to check
    found = fleet_for(course, args.provider, tokens).student_clients()
    clients = {seat: found[seat] for seat in roster if seat in found}
    if not clients:
        raise CoursekitError("no seat is deployed: `coursekit deploy` first")
    order = list(clients)
    # The credential each seat must refuse: the next seat's (a lone seat: one derived for no seat).
    other = {seat: tokens.token(order[(i + 1) % len(order)] if len(order) > 1 else keys.NO_SEAT) for i, seat in enumerate(order)}
    started = time.monotonic()
    results = seatcheck.check_all(course, clients, other)
    wall = time.monotonic() - started
    failed = [r for r in results if not r.ok]
    rows = [(r.seat, "ok" if r.ok else "FAILED", r.url, "; ".join(r.problems) or "credential, kernel, packages and data",
             f"{r.seconds:.1f} s") for r in results]
    table = Table(title=f"{course.course.name}: check")
    for column in ("seat", "result", "url", "detail", "time"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    out.print(table)
    line = f"{len(results) - len(failed)} of {plural(len(results), 'seat')} passed in {wall:.1f} s"
    err.print(line)
    summary.write(f"check: {line}", summary.table(("seat", "result", "url", "detail", "time"), rows))
    return 1 if failed else 0


def _session_line(course: Course, plan: Schedule, now: datetime) -> str:
    """When the class next meets, on the course's clock."""
    from coursekit.schedule import next_session

    aware = [(b.replace(tzinfo=b.tzinfo or plan.tz), e.replace(tzinfo=e.tzinfo or plan.tz)) for b, e in course.course.meets()]
    found = next_session(aware, now)
    if found is None:
        return "class is over: no session left"
    begin, end = found
    if begin <= now:
        return f"in session until {plan.local(end)}"
    return f"next session: {plan.local(begin)} to {plan.local(end)}"


def cmd_teardown(args: argparse.Namespace) -> int:
    """Archive every seat's work and verify it, then remove the fleet; unarchived seats stay."""
    course = load_course(args.config)
    fleet = fleet_for(course, args.provider, _tokens(course))
    if not args.yes:
        seats_found = sorted(fleet.urls())
        raise CoursekitError(
            f"teardown archives and then removes {plural(len(seats_found), 'seat')} of {course.course.slug!r} "
            f"({', '.join(seats_found) or 'none found'}); run it again with --yes"
        )
    _teardown(fleet, _archive_store(fleet, args.archive_dir), args.keep_volumes)
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    """Archive one seat's home (verified), then give it a fresh home from the image: same link and credential."""
    from datetime import datetime, timezone

    course = load_course(args.config)
    fleet = fleet_for(course, args.provider, _tokens(course))
    if args.seat not in (deployed := fleet.urls()):
        raise CoursekitError(f"seat {args.seat!r} is not deployed; deployed: {', '.join(sorted(deployed)) or 'none'}")
    if not args.yes:
        raise CoursekitError(f"reset archives {args.seat}'s home and then gives {args.seat} a fresh one from the image "
                             "(the old work stays in the archive); run it again with --yes")
    name = f"{args.seat}.reset-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    _print_outcomes([fleet.reset(args.seat, _archive_store(fleet, args.archive_dir), name)], "reset")
    return 0


def cmd_swap(args: argparse.Namespace) -> int:
    """Move a student onto a spare: their work copied over, the spare takes their name, seating.yaml records it."""
    from coursekit import roster, seating

    course = load_course(args.config)
    by_id = {s.id: s for s in seats(course)}
    sitting, spare = by_id.get(args.seat), by_id.get(args.to)
    if sitting is None or sitting.role == "spare":
        people = ", ".join(s.id for s in by_id.values() if s.role != "spare")
        raise CoursekitError(f"{args.seat!r} is nobody's seat; seats with people: {people or 'none'}")
    if spare is None or spare.role != "spare":
        free = ", ".join(s.id for s in by_id.values() if s.role == "spare")
        raise CoursekitError(f"{args.to!r} is not a free spare; free spares: {free or 'none (raise seats.spares and deploy)'}")
    if not args.yes:
        raise CoursekitError(f"swap moves {sitting.name} from {args.seat} to {args.to}: their work is copied over, they get "
                             f"{args.to}'s link, and {args.seat} is paused; run it again with --yes")
    tokens = _tokens(course)
    fleet = fleet_for(course, args.provider, tokens)
    how = fleet.move_home(args.seat, args.to, _archive_store(fleet, args.archive_dir))
    moved = {**dict(course.seating), sitting.person: args.to}
    path = seating.write(course.root, moved)
    seated = replace(course, seating=tuple((person, seat) for person, seat in moved.items()))
    row = next(r for r in roster.rows(seated, tokens, fleet.urls()) if r.seat == args.to)
    out.print(f"{sitting.name} now uses {args.to}: {row.login_url or row.url}")
    err.print(f"their work: {how}. {path.name} records who sits where: commit it, so every later deploy, roster, status "
              f"and teardown agrees (deploy archives and removes {args.seat} once it can be read; "
              f"`deploy --discard {args.seat}` for one that never can)", highlight=False)
    return 0


def cmd_takehome(args: argparse.Namespace) -> int:
    """Per student, DIR/<seat>/: their work from the newest archive and a README with the one line that opens it."""
    from coursekit import takehome
    from coursekit.archivestore import SWIFT, store_for

    course = load_course(args.config)
    if args.days < 1:
        raise CoursekitError(f"--days {args.days}: links must live at least one day")
    if args.archive_dir is None and course.archive_target.startswith(SWIFT):
        path, results = takehome.write_links(course, store_for(course, None, _object_store(course)), args.to, args.days)
        table = Table(title=f"{course.course.name}: take-home links")
        for column in ("student", "detail"):
            table.add_column(column)
        for r in results:
            table.add_row(r.seat, r.detail)
        out.print(table)
        err.print(f"wrote {path} (owner-only): mail each student their own link; each opens that student's archive "
                  f"until it expires in {plural(args.days, 'day')}", highlight=False)
        return 1 if any(r.detail.startswith("no archive") for r in results) else 0
    results = takehome.write_all(course, store_for(course, args.archive_dir, _object_store(course)), args.to)
    table = Table(title=f"{course.course.name}: take-home")
    for column in ("seat", "folder", "detail"):
        table.add_column(column)
    for r in results:
        table.add_row(r.seat, str(r.folder or "-"), r.detail)
    out.print(table)
    err.print(f"each folder holds that student's work and a README.txt with: {takehome.docker_command(course)}")
    err.print("the published image must stay pullable for it: keep it public (or give students access) after teardown",
              highlight=False)
    return 1 if any(r.detail.startswith("FAILED") for r in results) else 0


def _teardown(fleet, store, keep_volumes: bool = False) -> None:
    """Archive, verify and remove every seat; prove nothing of the course is left (CoursekitError otherwise)."""
    _print_outcomes(fleet.teardown(store, keep_volumes), "teardown")
    leftovers = fleet.leftovers(keep_volumes)
    if leftovers:
        raise CoursekitError(f"teardown left {', '.join(leftovers)} labelled with the course; run it again")
    out.print(f"nothing of {fleet.slug!r} is left" + (" but its volumes (--keep-volumes)" if keep_volumes else ""))


def _archive_store(fleet, folder: Path | None):
    """Where this command's archives go: --archive-dir, else archive.target (Swift through the fleet's own
    cloud connection when it has one). In CI a folder must be named: a runner's disk vanishes with it."""
    course = fleet.course
    if os.environ.get("CI") and folder is None and not course.archive_target.startswith("swift://"):
        raise CoursekitError(
            f"archive.target is the folder {course.archive_target!r}, which on a CI runner vanishes with the job: "
            "set archive.target: swift://CONTAINER in course.yaml (private, in your allocation), or pass --archive-dir "
            "and keep the folder (the baked workflows upload it only from a private repository)"
        )
    return store_for(course, folder, _object_store(course, fleet))


def _object_store(course: Course, fleet=None) -> Callable[[], Any]:
    """A connection to the object store archives may go to: the fleet's own cloud, else one made when first needed."""
    def connect():
        return (fleet.object_store() if fleet is not None else None) or registry.object_store(course.fleet)
    return connect


def _selected(fleet, seats: list[str]):
    """The observed seats named (all when none are), or a clear error naming seats that have nothing."""
    observed = fleet.observe()
    known = {o.seat for o in observed}
    if unknown := [s for s in seats if s not in known]:
        raise CoursekitError(f"no deployed seat called {', '.join(unknown)}; seats: {', '.join(sorted(known)) or 'none'}")
    return observed, set(seats) or known


def _set_awake(args: argparse.Namespace, change: Change) -> int:
    """Pause or resume the seats --seat names (every seat when none is named)."""
    course, now = load_course(args.config), now_utc()
    fleet = fleet_for(course, args.provider, _tokens(course))
    observed, chosen = _selected(fleet, args.seat)
    plan = schedule_of(course)
    if change is Change.RESUME and plan.awake_interval(now) is None:
        err.print(f"note: it is outside schedule.awake, so `coursekit schedule` pauses these seats again at its next run "
                  f"(next awake hours: {plan.wakes_at(now)}); widen schedule.awake for a session now")
    return _print_outcomes(fleet.set_awake(change, observed, {seat: "" for seat in chosen}, now), change.value)


def cmd_pause(args: argparse.Namespace) -> int:
    """Pause seats (all, or --seat ID ...) so they cost nothing or little (a VM shelved, a container stopped); homes and links stay."""
    return _set_awake(args, Change.PAUSE)


def cmd_resume(args: argparse.Namespace) -> int:
    """Wake paused seats (all, or --seat ID ...) and wait until each answers, as deploy does."""
    return _set_awake(args, Change.RESUME)


def cmd_schedule(args: argparse.Namespace) -> int:
    """Apply course.yaml's schedule now: wake or pause seats by the awake windows and idleness; expire the course."""
    course = load_course(args.config)
    plan, now = schedule_of(course), _now(args)
    fleet = fleet_for(course, args.provider, _tokens(course))
    err.print(f"schedule at {plan.local(now)}; {_session_line(course, plan, now)}")
    if warning := plan.expiry_warning(now):
        warn(warning)
    if plan.expired(now):
        _teardown(fleet, _archive_store(fleet, args.archive_dir))
        return 0
    observed = fleet.observe()
    decisions = _decisions(plan, observed, now)
    if not decisions:
        out.print(f"nothing to do: {plural(len(observed), 'seat')} as the schedule wants them")
        return 0
    outcomes = []
    for change in (Change.PAUSE, Change.RESUME):
        reasons = {seat: d.reason for seat, d in decisions.items() if d.change is change}
        if reasons:
            outcomes += fleet.set_awake(change, observed, reasons, now)
    return _print_outcomes(outcomes, "schedule")


def cmd_cloud_config(args: argparse.Namespace) -> int:
    """Write the credentials file the course's cloud needs on a CI runner, from the credential in the environment
    (each provider's section says which variables); owner-only."""
    course = load_course(args.config)
    out.print(registry.write_cloud_config(course.fleet, args.output, os.environ))
    return 0


def cmd_archives(args: argparse.Namespace) -> int:
    """List the course's archives (archive.target), or fetch one seat's and check it (--fetch SEAT)."""
    course = load_course(args.config)
    if args.target_kind:  # for the workflows: where archives go, without asking any store
        out.print("swift" if args.archive_dir is None and course.archive_target.startswith("swift://") else "folder")
        return 0
    store = store_for(course, args.archive_dir, _object_store(course))
    if args.fetch:
        path = store.fetch(args.fetch, args.to)
        out.print(f"{path}: checksum and manifest verified")
        return 0
    found = store.list()
    table = Table(title=f"{course.course.name}: archives in {course.archive_target if args.archive_dir is None else args.archive_dir}")
    for column in ("seat", "where", "bytes", "stored"):
        table.add_column(column, justify="right" if column == "bytes" else "left")
    for item in found:
        table.add_row(item.seat, item.location, f"{item.size:,}", item.modified)
    out.print(table)
    out.print(f"{plural(len(found), 'archive')}")
    return 0


AT_HELP = "act as if it were this moment (ISO 8601, e.g. 2027-01-11T18:05:00-05:00), to rehearse the schedule"


def _seat_id(text: str) -> str:
    """A seat id as course.yaml allows it (it becomes part of names and paths: never '../x')."""
    if why := names.seat_id_problem(text):
        raise argparse.ArgumentTypeError(why)
    return text


def _moment(text: str) -> datetime:
    moment = parse_time(text) or (parse_time(f"{text}:00") if len(text) == 16 else None)
    if moment is None:
        raise argparse.ArgumentTypeError(f"{text[:60]!r} is not a moment between the years 2000 and 2200; write it like 2027-01-11T18:05:00-05:00")
    return moment


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree for every subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="path to course.yaml (default: %(default)s)")
    common.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser = argparse.ArgumentParser(prog="coursekit", description="Run a hands-on course's Jupyter environments.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=func.__doc__, description=func.__doc__)
        sub.set_defaults(func=func)
        return sub

    sub = add("validate", cmd_validate)
    sub.add_argument("--online", action="store_true",
                     help="also ask the package index (as this machine's pip is set up) that every pinned version exists")
    add("cost", cmd_cost)
    sub = add("build", cmd_build)
    sub.add_argument("--base-image", help="build on this image instead of image.base (e.g. a local test image)")
    sub.add_argument("--ca-bundle", type=Path, help="PEM bundle to trust during the build, for TLS-intercepting proxies")
    sub.add_argument("--network", help="Docker network for build steps (host: reach services on this machine)")
    sub.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    sub.add_argument(
        "--cache-from", action="append", default=[], metavar="IMAGE",
        help="pull IMAGE and reuse its layers, for CI runners that start empty (a bare tag like latest means this course's image)",
    )
    sub = add("lock", cmd_lock)
    sub.add_argument("--base-image", help="resolve on this image instead of image.base")
    sub.add_argument("--ca-bundle", type=Path, help="PEM bundle pip trusts, for TLS-intercepting proxies")
    sub.add_argument("--network", help="Docker network for the resolving container")
    sub.add_argument("--settle", action="store_true", help="one block again: the next build reinstalls every package once")
    sub = add("test", cmd_test)
    sub.add_argument("--image", help="image to test (default: this checkout's build)")
    sub.add_argument("--network", choices=["bridge", "host"], default="bridge", help="container network (default: %(default)s)")
    sub.add_argument("--notebook-timeout", type=int, help="seconds per notebook (default: test.timeout in course.yaml)")
    sub.add_argument("--start-timeout", type=int, default=180, help="seconds for Jupyter to answer (default: %(default)s)")
    sub = add("publish", cmd_publish)
    sub.add_argument("--latest", action=argparse.BooleanOptionalAction, default=None,
                     help="also push :latest (default: only on the main branch)")
    for name, func in (("plan", cmd_plan), ("deploy", cmd_deploy)):
        sub = add(name, func)
        sub.add_argument("--provider", choices=sorted(registry.PROVIDERS), help="override fleet.provider")
        sub.add_argument("--image", help="image to run (default: this checkout's build)")
        if name == "deploy":
            sub.add_argument("--yes", action="store_true", help="allow removing seats that left the roster")
            sub.add_argument("--discard", action="append", default=[], metavar="SEAT", type=_seat_id,
                             help="replace this broken seat although its disk holds work that cannot be archived (lost)")
            sub.add_argument("--archive-dir", type=Path, help="archive removed seats into this folder instead of archive.target")
            sub.add_argument("--wait-for-image", type=float, metavar="MINUTES",
                             help="first wait up to MINUTES for the image to be in its registry (build.yml publishes it); "
                                  "0: check once")
        sub.add_argument("--at", type=_moment, help=AT_HELP)
    sub = add("status", cmd_status)
    sub.add_argument("--provider", choices=sorted(registry.PROVIDERS), help="override fleet.provider")
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_argument("--at", type=_moment, help=AT_HELP)
    sub = add("reset", cmd_reset)
    sub.add_argument("seat", help="the seat to give a fresh home (its old one is archived first)")
    sub.add_argument("--provider", choices=sorted(registry.PROVIDERS), help="override fleet.provider")
    sub.add_argument("--yes", action="store_true", help="really archive and reset the seat")
    sub.add_argument("--archive-dir", type=Path, help="write the archive here instead of archive.target")
    sub = add("swap", cmd_swap)
    sub.add_argument("seat", help="the seat the student uses now")
    sub.add_argument("--to", required=True, help="the spare to move them onto (spare-N)")
    sub.add_argument("--provider", choices=sorted(registry.PROVIDERS), help="override fleet.provider")
    sub.add_argument("--yes", action="store_true", help="really move the student")
    sub.add_argument("--archive-dir", type=Path, help="archives to copy the work from when the seat cannot be read")
    sub = add("takehome", cmd_takehome)
    sub.add_argument("--to", type=Path, required=True, help="folder to write one folder per student into")
    sub.add_argument("--archive-dir", type=Path, help="read the archives here instead of archive.target")
    sub.add_argument("--days", type=int, default=30, help="with archives in Swift: how long each download link works")
    sub = add("check", cmd_check)
    sub.add_argument("--provider", choices=sorted(registry.PROVIDERS), help="override fleet.provider")
    sub = add("teardown", cmd_teardown)
    sub.add_argument("--provider", choices=sorted(registry.PROVIDERS), help="override fleet.provider")
    sub.add_argument("--yes", action="store_true", help="really archive and remove the fleet")
    sub.add_argument("--archive-dir", type=Path, help="archive into this folder instead of archive.target")
    sub.add_argument("--keep-volumes", action="store_true", help="archive and remove containers but keep the home volumes")
    for name, func in (("pause", cmd_pause), ("resume", cmd_resume)):
        sub = add(name, func)
        sub.add_argument("--provider", choices=sorted(registry.PROVIDERS), help="override fleet.provider")
        sub.add_argument("--seat", action="append", default=[], metavar="ID", type=_seat_id, help="only this seat (repeatable; default: every seat)")
    sub = add("schedule", cmd_schedule)
    sub.add_argument("--provider", choices=sorted(registry.PROVIDERS), help="override fleet.provider")
    sub.add_argument("--archive-dir", type=Path, help="archive an expired course into this folder instead of archive.target")
    sub.add_argument("--at", type=_moment, help=AT_HELP)
    sub = add("archives", cmd_archives)
    sub.add_argument("--fetch", metavar="SEAT", type=_seat_id, help="download this seat's archive and check it")
    sub.add_argument("--to", type=Path, default=Path("."), help="folder to fetch into (default: the current one)")
    sub.add_argument("--archive-dir", type=Path, help="list this folder instead of archive.target")
    sub.add_argument("--target-kind", action="store_true", help="print swift or folder: where archives go (for workflows)")
    sub = add("cloud-config", cmd_cloud_config)
    sub.add_argument("--output", type=Path, help="where to write it (default: where the cloud's SDK looks)")
    sub = add("roster", cmd_roster)
    sub.add_argument("--format", choices=sorted(roster.FORMATS), default="csv", help="output format (default: %(default)s)")
    sub.add_argument("--output", type=Path, help="write to this file (mode 600) instead of standard output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; user errors print a message and return 1."""
    args = build_parser().parse_args(argv)
    # CI cancels with SIGTERM: unwind like Ctrl-C so containers are removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return args.func(args)
    except CoursekitError as exc:
        if args.debug:
            raise
        err.print(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except Exception as exc:  # a failure no adapter anticipated: one paragraph, no traceback
        if args.debug:
            raise
        err.print(f"error: {_unexpected(exc)}")
        return 1


def _unexpected(exc: Exception) -> str:
    """A one-paragraph message for a failure coursekit did not anticipate, without a traceback."""
    return (f"unexpected {type(exc).__name__}: {exc}. Run the command again with --debug for the details, "
            "and report it if it persists")
