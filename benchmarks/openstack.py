"""Jetstream2 fleet benchmark against the emulator: 30 s simulated boots and 100 ms API latency.

    .venv/bin/python benchmarks/openstack.py [--seats 50] [--boot 30] [--latency 0.1] [--update 25]

In one run: deploy 1 seat, then (after tearing it down) N seats, each with `coursekit deploy` as the
deploy workflow runs it; prints both wall times and their ratio, the API calls per seat of the N-seat
deploy, the calls a no-op re-deploy of the N seats makes, and an in-place update of the N seats
to a new image (the emulated VMs switch --update seconds after their metadata changes). Course settings are the defaults
(poll every 10 s, concurrency 10).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from _common import set_students, timed_coursekit
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TEMPLATE / "tests"))
from os_emulator import Emulator  # noqa: E402

IMAGE = "docker.io/your-user/bench-cloud:abc1234"
NEWER = "docker.io/your-user/bench-cloud:def5678"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seats", type=int, default=50)
    parser.add_argument("--boot", type=float, default=30)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--update", type=float, default=25, help="seconds a VM takes to switch images (timer + pull + restart)")
    args = parser.parse_args()
    cloud = Emulator()
    cloud.start()
    cloud.boot_seconds, cloud.latency, cloud.update_seconds = args.boot, args.latency, args.update
    cloud.floating_ip_quota, cloud.max_instances, cloud.max_cores = args.seats + 10, args.seats + 10, 16 * (args.seats + 10)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            repo = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=tmp,
                                     extra_context={"course_slug": "bench-cloud", "fleet_provider": "openstack"}))
            env = {**os.environ, "COURSEKIT_SECRET": "benchmark-secret-0123456789",
                   "OS_CLIENT_CONFIG_FILE": str(cloud.clouds_yaml(Path(tmp, "clouds.yaml")))}
            archives = str(Path(tmp, "archives"))
            set_students(repo, 1)
            cloud.calls.clear()
            one = timed_coursekit(repo, env, "deploy", "--image", IMAGE)
            calls_one = len(cloud.calls)
            timed_coursekit(repo, env, "teardown", "--yes", "--archive-dir", archives)
            set_students(repo, args.seats)
            cloud.calls.clear()
            many = timed_coursekit(repo, env, "deploy", "--image", IMAGE)
            calls_many = len(cloud.calls)
            cloud.calls.clear()
            timed_coursekit(repo, env, "deploy", "--image", IMAGE)
            noop_calls = list(cloud.calls)
            cloud.calls.clear()
            update = timed_coursekit(repo, env, "deploy", "--image", NEWER)
            calls_update = len(cloud.calls)
            timed_coursekit(repo, env, "teardown", "--yes", "--archive-dir", archives)
    finally:
        cloud.stop()
    n = args.seats
    print(f"emulator: {args.boot:g} s boot, {args.latency * 1000:g} ms per API request")
    print(f"deploy 1 seat:   {one:6.1f} s  ({calls_one} API calls)")
    print(f"deploy {n} seats: {many:6.1f} s  ({calls_many} API calls, {calls_many / n:.1f} per seat; bar: <= 12)")
    print(f"ratio t({n}) / t(1): {many / one:.2f}  (bar: <= 1.5; floor about 1)")
    print(f"no-op re-deploy of {n} seats: {len(noop_calls)} API calls (bar: <= 10): {', '.join(noop_calls)}")
    print(f"in-place update of {n} seats to a new image: {update:6.1f} s  ({calls_update} API calls; "
          f"the VMs switch {cloud.update_seconds:g} s after their metadata changes)")


if __name__ == "__main__":
    main()
