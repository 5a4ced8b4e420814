"""What the benchmarks share: timing a coursekit command and setting a course's roster size."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml


def timed_coursekit(repo: Path, env: dict, *args: str) -> float:
    """Wall time of `python -m coursekit ARGS` in repo; exits with its output if it fails."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "coursekit", *args], cwd=repo, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"coursekit {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def set_students(repo: Path, count: int) -> None:
    """Make the roster `count` students (s01, s02, ...) and nothing else."""
    data = yaml.safe_load((repo / "course.yaml").read_text())
    data["seats"] = {"students": [{"id": f"s{n:02d}", "name": f"Student {n}"} for n in range(1, count + 1)], "spares": 0}
    data["budget"] = {}
    (repo / "course.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def set_docker(repo: Path, **values) -> None:
    """Set fleet.docker values in course.yaml (e.g. disk=None for unbounded homes)."""
    data = yaml.safe_load((repo / "course.yaml").read_text())
    data["fleet"]["docker"].update(values)
    (repo / "course.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
