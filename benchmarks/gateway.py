"""Gateway benchmark against the Jetstream2 emulator: 30 s simulated boots and 100 ms API latency.

    .venv/bin/python benchmarks/gateway.py [--sizes 1 50 200] [--boot 30] [--latency 0.1]

In one run, for each class size, through the gateway (fleet.openstack.access: gateway, the default): deploy
the class from nothing (the gateway included), then a no-op re-deploy, then teardown. Prints the wall time of
each deploy and its ratio to the 1-seat deploy, API calls per seat, the floating IPs the class holds, and the
calls of the no-op re-deploy. Course settings are the defaults (poll every 10 s, concurrency 10).
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

IMAGE = "docker.io/your-user/bench-gateway:abc1234"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--boot", type=float, default=30)
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()
    cloud = Emulator()
    cloud.start()
    biggest = max(args.sizes)
    cloud.boot_seconds, cloud.latency = args.boot, args.latency
    cloud.max_instances, cloud.max_cores, cloud.max_ram_mb = biggest + 10, 8 * (biggest + 10), 30 * 1024 * (biggest + 10)
    cloud.floating_ip_quota = 25
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            repo = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=tmp,
                                     extra_context={"course_slug": "bench-gateway", "fleet_provider": "openstack"}))
            env = {**os.environ, "COURSEKIT_SECRET": "benchmark-secret-0123456789",
                   "OS_CLIENT_CONFIG_FILE": str(cloud.clouds_yaml(Path(tmp, "clouds.yaml")))}
            for size in args.sizes:
                set_students(repo, size)
                cloud.calls.clear()
                seconds = timed_coursekit(repo, env, "deploy", "--image", IMAGE)
                calls = len(cloud.calls)
                addresses = len(cloud.floating_ips)
                cloud.calls.clear()
                timed_coursekit(repo, env, "deploy", "--image", IMAGE)
                noop = len(cloud.calls)
                timed_coursekit(repo, env, "teardown", "--yes", "--archive-dir", str(Path(tmp, "archives")))
                rows.append((size, seconds, calls, addresses, noop))
    finally:
        cloud.stop()
    print(f"emulator: {args.boot:g} s boot, {args.latency * 1000:g} ms per API request; through one gateway")
    one = rows[0][1]
    for size, seconds, calls, addresses, noop in rows:
        print(f"deploy {size:4d} seats: {seconds:6.1f} s (ratio to {rows[0][0]}: {seconds / one:.2f}; bar t(200)/t(1) <= 1.3), "
              f"{calls} API calls ({calls / size:.1f} per seat; bar <= 8), {addresses} floating IP(s); "
              f"no-op re-deploy {noop} calls (bar <= 10)")
    print("upstream image pulls: not measured here (emulated seats pull nothing); tests/test_bootstrap.py counts them for real")


if __name__ == "__main__":
    main()
