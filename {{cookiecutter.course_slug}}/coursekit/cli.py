"""Command line: python -m coursekit COMMAND, run from the course repository's root."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Callable, Sequence

from rich.table import Table

from coursekit import cost, roster
from coursekit.config import DEFAULT_CONFIG, Course, load_course
from coursekit.errors import CoursekitError, ImageTestError
from coursekit.seats import SECRET_VARIABLE, read_secret
from coursekit.ui import err, out
from coursekit.ui import plural


def cmd_validate(args: argparse.Namespace) -> int:
    """Check course.yaml; every problem is listed with its line."""
    course = load_course(args.config)
    seats = course.seats
    out.print(
        f"{args.config} is valid: {course.course.name!r}, {plural(len(seats.students), 'student')}, "
        f"{plural(len(seats.instructors), 'instructor')}, {plural(seats.spares, 'spare')}; "
        f"image {course.image.name}; provider {course.fleet.provider}"
    )
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    """Print the SU estimate and fail when it exceeds the allocation."""
    course = load_course(args.config)
    result = cost.estimate(course)
    table = Table(title=f"{course.course.name}: Jetstream2 cost ({result.flavor.name}, {result.flavor.su_per_hour} SU/hour per VM)")
    for column in ("item", "seats", "SU/hour each", "hours", "SU"):
        table.add_column(column, justify="left" if column == "item" else "right")
    for item in result.items:
        table.add_row(item.what, str(item.seats), str(item.su_per_hour), f"{item.hours:,.1f}", f"{item.su:,.0f}")
    table.add_row("total", str(result.seats), "", "", f"{result.total_su:,.0f}", style="bold")
    out.print(table)
    out.print(
        f"hours = class ({course.course.start:%Y-%m-%d %H:%M} to {course.course.end:%Y-%m-%d %H:%M}) "
        f"+ keep_days {course.course.keep_days} × 24 = {course.course.hours:,.1f}"
    )
    if course.fleet.provider == "docker":
        out.print("provider is docker: your own host runs the fleet and no SUs are charged; this is what Jetstream2 would cost.")
    if result.allocation_su is not None:
        share = result.total_su / result.allocation_su if result.allocation_su else float("inf")
        out.print(
            f"allocation {result.allocation_su:,.0f} SU: this course uses {share:.0%}; "
            f"the whole fleet could run {result.affordable_hours:,.1f} hours on it"
        )
    cost.check_budget(result)
    return 0


def cmd_roster(args: argparse.Namespace) -> int:
    """Print or write the roster with every seat's credential."""
    if args.output is None and os.environ.get("CI"):
        raise CoursekitError(
            "roster prints every seat's credential, so it does not write to a CI log. "
            "Run it on your own machine with the same COURSEKIT_SECRET, or pass --output FILE."
        )
    course: Course = load_course(args.config)
    text = roster.FORMATS[args.format](course, roster.rows(course, read_secret()))
    if args.output is None:
        sys.stdout.write(text)
        return 0
    # Owner-only from the first byte: the file holds every credential.
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    err.print(f"wrote {args.output} ({plural(text.count(chr(10)), 'line')}); keep it private, it holds every credential")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """Build the course image from the Dockerfile, tagged with the git short sha."""
    from coursekit import engine, image

    course = load_course(args.config)
    ref = image.build(engine.connect(), course, args.base_image, args.ca_bundle, args.network, args.no_cache)
    out.print(ref)
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """Run the image as a student gets it: credential, data, every notebook, pip check."""
    from coursekit import engine, image, imagetest

    course = load_course(args.config)
    ref = args.image or image.image_ref(course)
    err.print(f"testing {ref}")
    secret = os.environ.get(SECRET_VARIABLE) or None
    checks = imagetest.run_checks(
        engine.connect(), course, ref, args.network, args.notebook_timeout, args.start_timeout, secret
    )
    # One line per check (details indented below): readable in a terminal and grep-able in CI logs.
    for check in checks:
        first, *rest = check.detail.splitlines() or [""]
        mark = "[green]pass[/]" if check.ok else "[red]FAIL[/]"
        out.print(f"{mark}  {check.name}: ", end="")
        out.print(first, markup=False)
        for line in rest:
            out.print(f"        {line}", markup=False)
    failed = [c.name for c in checks if not c.ok]
    if failed:
        raise ImageTestError(f"{plural(len(failed), 'check')} failed: {', '.join(failed)} (details in the table above)")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """Push the built image (sha tag, date tag, latest on main) and verify the registry's digest."""
    from coursekit import engine, image

    course = load_course(args.config)
    latest = image.on_main_branch(course.root) if args.latest is None else args.latest
    pushed = image.publish(engine.connect(), course, latest)
    for tag, digest in pushed.items():
        out.print(f"{course.image.name}:{tag} {digest}")
    return 0


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

    add("validate", cmd_validate)
    add("cost", cmd_cost)
    sub = add("build", cmd_build)
    sub.add_argument("--base-image", help="build on this image instead of image.base (e.g. a local test image)")
    sub.add_argument("--ca-bundle", type=Path, help="PEM bundle to trust during the build, for TLS-intercepting proxies")
    sub.add_argument("--network", help="Docker network for build steps (host: reach services on this machine)")
    sub.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    sub = add("test", cmd_test)
    sub.add_argument("--image", help="image to test (default: this checkout's build)")
    sub.add_argument("--network", choices=["bridge", "host"], default="bridge", help="container network (default: %(default)s)")
    sub.add_argument("--notebook-timeout", type=int, default=600, help="seconds per notebook (default: %(default)s)")
    sub.add_argument("--start-timeout", type=int, default=180, help="seconds for Jupyter to answer (default: %(default)s)")
    sub = add("publish", cmd_publish)
    sub.add_argument("--latest", action=argparse.BooleanOptionalAction, default=None,
                     help="also push :latest (default: only on the main branch)")
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
        err.print(f"error: {exc}", markup=False)
        return 1
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
