"""Fleet benchmark on one Docker host: time-to-ready for 1 seat, then 20 seats, and memory per idle seat.

    .venv/bin/python benchmarks/fleet.py [--base-image IMAGE] [--seats 20]

Time-to-ready is the wall time of `coursekit deploy`, which returns once every seat answers
an authenticated /api/status. Prints both times, the ratio t(N) / (N × t(1)), and the resident
memory of each idle seat (cgroup usage minus page cache) after the fleet has settled. Then, side by
side, what bounding homes costs: N seats with unbounded homes (`disk: null`) and N seats whose homes are
disk files of their own (`disk: 5g`, the default), each deployed on an empty host and torn down.
Every seat runs with the same hardening either way (no capabilities, no-new-privileges, /tmp a capped tmpfs).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker
from _common import set_docker, set_students, timed_coursekit
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TEMPLATE / "tests" / "baseimage"))
from standin import SYSTEM_CA, ensure_base_image  # noqa: E402

ENV = {**os.environ, "COURSEKIT_SECRET": "benchmark-secret-0123456789"}


def idle_rss_mb(client: docker.DockerClient, slug: str) -> list[float]:
    sizes = []
    for container in client.containers.list(filters={"label": f"org.coursekit.course={slug}"}):
        memory = container.stats(stream=False)["memory_stats"]
        cache = memory.get("stats", {}).get("cache", memory.get("stats", {}).get("inactive_file", 0))
        sizes.append((memory["usage"] - cache) / 2**20)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-image")
    parser.add_argument("--seats", type=int, default=20)
    args = parser.parse_args()
    client = docker.from_env(timeout=600)
    base = args.base_image or ensure_base_image(client)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=tmp, extra_context={"course_slug": "bench-fleet"}))
        timed_coursekit(repo, ENV, "build", "--base-image", base, "--ca-bundle", str(SYSTEM_CA))
        archives = Path(tmp, "archives")
        try:
            set_students(repo, 1)
            one = timed_coursekit(repo, ENV, "deploy")
            timed_coursekit(repo, ENV, "teardown", "--yes", "--archive-dir", str(archives / "one"))
            set_students(repo, args.seats)
            many = timed_coursekit(repo, ENV, "deploy")
            time.sleep(15)  # let every server settle before reading memory
            rss = idle_rss_mb(client, "bench-fleet")
            timed_coursekit(repo, ENV, "teardown", "--yes", "--archive-dir", str(archives / "many"))
            side_by_side = {}
            for label, disk in (("unbounded homes (disk: null)", None), ("bounded homes (disk: 5g)", "5g")):
                set_docker(repo, disk=disk)
                side_by_side[label] = timed_coursekit(repo, ENV, "deploy")
                timed_coursekit(repo, ENV, "teardown", "--yes", "--archive-dir", str(archives / label.split()[0]))
        finally:
            timed_coursekit(repo, ENV, "teardown", "--yes", "--archive-dir", str(archives / "last"))
    n = args.seats
    print(f"host: {os.cpu_count()} CPUs; base image {base}")
    print(f"deploy 1 seat, time to ready:   {one:6.2f} s")
    print(f"deploy {n} seats, time to ready: {many:6.2f} s")
    print(f"ratio t({n}) / ({n} x t(1)):      {many / (n * one):6.3f}   (bar: <= 0.5; plain docker run measured 0.66; CPU floor ~0.33)")
    print(f"idle seat memory: mean {statistics.mean(rss):.0f} MiB, min {min(rss):.0f}, max {max(rss):.0f} over {len(rss)} seats")
    for label, seconds in side_by_side.items():
        print(f"deploy {n} seats, {label}: {seconds:6.2f} s")


if __name__ == "__main__":
    main()
