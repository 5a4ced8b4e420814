"""Pause/resume benchmark against the Jetstream2 emulator: 30 s simulated boots (an unshelve boots anew),
30 s shelves, 100 ms API latency.

    .venv/bin/python benchmarks/pause.py [--seats 50] [--boot 30] [--shelve 30] [--latency 0.1]

In one run: deploy 1 seat, pause it and resume it; tear down; then the same with N seats. Prints the wall
time and API calls of each pause and resume, the ratio of the N-seat to the 1-seat time, and the SUs that
`coursekit cost` gives for the default course always-on and with its default schedule. Course settings
are the defaults (poll every 10 s, concurrency 10).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import set_students, timed_coursekit
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TEMPLATE / "tests"))
from os_emulator import Emulator  # noqa: E402

IMAGE = "docker.io/your-user/bench-pause:abc1234"


def _measure(cloud: Emulator, repo: Path, env: dict, *args: str) -> tuple[float, int]:
    cloud.calls.clear()
    seconds = timed_coursekit(repo, env, *args)
    return seconds, len(cloud.calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seats", type=int, default=50)
    parser.add_argument("--boot", type=float, default=30)
    parser.add_argument("--shelve", type=float, default=30)
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()
    cloud = Emulator()
    cloud.start()
    cloud.boot_seconds, cloud.shelve_seconds, cloud.latency = args.boot, args.shelve, args.latency
    cloud.floating_ip_quota, cloud.max_instances, cloud.max_cores = args.seats + 10, args.seats + 10, 16 * (args.seats + 10)
    results: dict[int, dict[str, tuple[float, int]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            repo = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=tmp,
                                     extra_context={"course_slug": "bench-pause", "fleet_provider": "openstack"}))
            env = {**os.environ, "COURSEKIT_SECRET": "benchmark-secret-0123456789",
                   "OS_CLIENT_CONFIG_FILE": str(cloud.clouds_yaml(Path(tmp, "clouds.yaml")))}
            cost = subprocess.run([sys.executable, "-m", "coursekit", "cost"], cwd=repo, capture_output=True, text=True)
            archives = str(Path(tmp, "archives"))
            for seats in (1, args.seats):
                set_students(repo, seats)
                timed_coursekit(repo, env, "deploy", "--image", IMAGE)
                results[seats] = {"pause": _measure(cloud, repo, env, "pause"), "resume": _measure(cloud, repo, env, "resume")}
                timed_coursekit(repo, env, "teardown", "--yes", "--archive-dir", archives)
    finally:
        cloud.stop()
    n = args.seats
    print(f"emulator: {args.boot:g} s boot (and unshelve), {args.shelve:g} s shelve, {args.latency * 1000:g} ms per API request")
    for what in ("pause", "resume"):
        (t1, c1), (tn, cn) = results[1][what], results[n][what]
        print(f"{what} 1 seat:   {t1:6.1f} s  ({c1} API calls)")
        print(f"{what} {n} seats: {tn:6.1f} s  ({cn} API calls, {cn / n:.1f} per seat; bar: <= 6)")
        print(f"{what} ratio t({n}) / t(1): {tn / t1:.2f}  (bar: <= 1.3)")
    print("coursekit cost on the default course (m3.medium, 5 seats, class day + keep_days 3):")
    for line in cost.stdout.splitlines():
        if line.startswith(("always on:", "with the schedule")):
            print(f"  {line}")


if __name__ == "__main__":
    main()
