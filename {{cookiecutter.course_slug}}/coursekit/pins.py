"""Check that every pinned Python package exists at its version, before a build spends minutes on it.

Asks the package index this machine's pip is configured for (`pip index versions`: its mirrors, its
certificates), a few packages at a time.
"""
from __future__ import annotations

import bisect
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

TIMEOUT = 120
_AVAILABLE = re.compile(r"^Available versions: (.*)$", re.M)


def available_versions(name: str) -> list[Version] | None:
    """Every version the index has of name (oldest first), [] if it has no such package, None if it cannot be asked."""
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "index", "versions", "--pre", "--ignore-requires-python", "--disable-pip-version-check", name],
            capture_output=True, text=True, timeout=TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if "No matching distribution found" in result.stderr:
        return []
    found = _AVAILABLE.search(result.stdout)
    if result.returncode != 0 or not found:
        return None
    versions = []
    for text in found[1].split(", "):
        try:
            versions.append(Version(text))
        except InvalidVersion:
            continue
    return sorted(versions)


def closest(wanted: Version, versions: list[Version], count: int = 4) -> list[Version]:
    """The versions just below and above wanted."""
    at = bisect.bisect_left(versions, wanted)
    return versions[max(0, at - count // 2): at + count // 2]


def pin_problem(requirement: str) -> str | None:
    """Why requirement (name==version) cannot be installed from the index, or None (also when the index cannot be asked)."""
    req = Requirement(requirement)
    wanted = Version(next(iter(req.specifier)).version)
    versions = available_versions(req.name)
    if versions is None:
        return None
    if not versions:
        return f"{requirement!r}: the package index has no package called {req.name!r}; check the name on the index"
    if wanted in versions:
        return None
    near = ", ".join(str(v) for v in closest(wanted, versions))
    return f"{requirement!r}: {req.name} has no version {wanted} on the package index; closest: {near} (newest: {versions[-1]})"


def pin_problems(requirements: list[str], workers: int = 8) -> dict[int, str]:
    """index in requirements → what is wrong, for every pin the index does not have."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = list(pool.map(pin_problem, requirements))
    return {i: why for i, why in enumerate(found) if why}
