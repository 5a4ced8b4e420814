"""`coursekit test` on five notebooks: serial against parallel wall time, and the overhead per notebook.

    .venv/bin/python benchmarks/notebooks.py [--base-image IMAGE] [--work 4]

Each notebook's one cell sleeps WORK seconds, so its own execution time is known. `coursekit test`
reports every notebook's wall time (container start, course data, kernel start and run) and the
whole run's wall time; the sum of the notebooks' times is what running them one after another costs.
Overhead per notebook = its wall time - WORK.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TEMPLATE / "tests" / "baseimage"))
from standin import SYSTEM_CA, ensure_base_image  # noqa: E402

COUNT = 5


def notebook(seconds: float) -> str:
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": f"import time\ntime.sleep({seconds})"}
    return json.dumps({"cells": [cell], "nbformat": 4, "nbformat_minor": 4,
                       "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-image", help="default: the stand-in base image")
    parser.add_argument("--work", type=float, default=4.0, help="seconds each notebook computes")
    args = parser.parse_args()
    base = args.base_image or ensure_base_image(docker.from_env(timeout=600))
    env = {**os.environ, "COURSEKIT_SECRET": "benchmark-secret-0123456789"}
    env.pop("CI", None)
    with tempfile.TemporaryDirectory() as work:
        repo = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=work, extra_context={"course_slug": "nb-bench"}))
        for old in (repo / "notebooks").glob("*.ipynb"):
            old.unlink()
        for n in range(1, COUNT + 1):
            (repo / "notebooks" / f"{n:02d}-work.ipynb").write_text(notebook(args.work))
        for command in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                        ["git", "-c", "user.name=b", "-c", "user.email=b@example.org", "commit", "-qm", "bench"]):
            subprocess.run(command, cwd=repo, check=True)
        built = subprocess.run([sys.executable, "-m", "coursekit", "build", "--base-image", base, "--ca-bundle", str(SYSTEM_CA)],
                               cwd=repo, env=env, capture_output=True, text=True)
        if built.returncode:
            sys.exit(built.stderr)
        started = time.perf_counter()
        tested = subprocess.run([sys.executable, "-m", "coursekit", "test"], cwd=repo, env=env, capture_output=True, text=True)
        whole = time.perf_counter() - started
        if tested.returncode:
            sys.exit(tested.stdout + tested.stderr)
        times = [float(t) for t in re.findall(r"notebook \S+ \[([0-9.]+)s\]", tested.stdout)]
        timing = next(line for line in tested.stdout.splitlines() if "notebook timing" in line)
        wall = float(re.search(r"in ([0-9.]+)s with", timing)[1])
        at_once = int(re.search(r"with (\d+) at a time", timing)[1])
        print(f"{COUNT} notebooks, each computing {args.work:g} s, {at_once} at a time")
        print(f"notebooks' wall time:        {wall:.1f} s (parallel)")
        print(f"one after another:           {sum(times):.1f} s (sum of each notebook's time); ratio {wall / sum(times):.2f}")
        print(f"overhead per notebook:       {sum(times) / len(times) - args.work:.1f} s (container, data, kernel start)")
        print(f"whole `coursekit test`:      {whole:.1f} s (server, credential, data and pip checks included)")


if __name__ == "__main__":
    main()
