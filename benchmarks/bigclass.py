"""The largest class coursekit runs (5,000 seats): wall time and peak memory of the commands that read course.yaml.

    .venv/bin/python benchmarks/bigclass.py [--seats 5000] [--image IMAGE]

Each command runs as its own process, as a user runs it; peak memory is that process's maximum resident
set size (wait4). `plan` needs the Docker engine and an image that is already here (--image, default:
the stand-in base image); the planner itself is pure, the engine is asked once for the course's containers.
Bar: validate under 1 s.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "COURSEKIT_SECRET": "benchmark-secret-0123456789"}
ENV.pop("CI", None)


def measured(repo: Path, *args: str) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of `python -m coursekit ARGS` in repo; exits if it fails."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "coursekit", *args], cwd=repo, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"coursekit {' '.join(args)} failed:\n{process.stderr.read().decode()}")
    return elapsed, usage.ru_maxrss / 1024


def set_seats(repo: Path, total: int) -> None:
    data = yaml.safe_load((repo / "course.yaml").read_text())
    students = total - 10
    data["seats"] = {
        "students": [{"id": f"s{n:04d}", "name": f"Student {n}", "email": f"s{n}@example.edu"} for n in range(students)],
        "instructors": [{"id": f"i{n}", "name": f"Instructor {n}"} for n in range(5)],
        "spares": 5,
    }
    data["budget"] = {}
    (repo / "course.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seats", type=int, default=5000)
    parser.add_argument("--image", help="a local image for plan (default: the stand-in base image)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        repo = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=work, extra_context={"course_slug": "bigclass-bench"}))
        set_seats(repo, args.seats)
        size = (repo / "course.yaml").stat().st_size
        print(f"{args.seats:,} seats, course.yaml {size / 1024:,.0f} kB")
        rows = [("validate", ("validate",)), ("cost", ("cost",)),
                ("roster", ("roster", "--format", "csv", "--output", str(Path(work) / "roster.csv")))]
        image = args.image
        if image is None:
            sys.path.insert(0, str(TEMPLATE / "tests" / "baseimage"))
            import docker
            from standin import ensure_base_image

            image = ensure_base_image(docker.from_env(timeout=600))
        rows.append(("plan", ("plan", "--image", image)))
        for name, command in rows:
            seconds, rss = measured(repo, *command)
            print(f"{name:9s} {seconds:6.2f} s  peak {rss:6.0f} MiB")


if __name__ == "__main__":
    main()
