"""SHA-256 of the course's local data files, streamed and cached by (size, mtime), so a 2 GB file is read once."""
from __future__ import annotations

import json
import os
from pathlib import Path

from coursekit.data import sha256_file

MAX_ENTRIES = 10_000


def cache_file(environ: dict = os.environ) -> Path:
    """Where the checksums are remembered: $XDG_CACHE_HOME/coursekit/sha256.json (or ~/.cache/...)."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "coursekit", "sha256.json")


def _load(path: Path) -> dict:
    try:
        cached = json.loads(path.read_text())
        return cached if isinstance(cached, dict) else {}
    except (OSError, ValueError):
        return {}


def cached_sha256(path: Path, cache: Path | None = None) -> str:
    """sha256 of path, re-read only when its size, mtime, inode or device changed."""
    cache = cache or cache_file()
    st = path.stat()
    key = os.path.realpath(path)
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev]
    known = _load(cache)
    entry = known.get(key)
    if isinstance(entry, dict) and entry.get("stat") == stamp and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    digest = sha256_file(path)
    known[key] = {"stat": stamp, "sha256": digest}
    if len(known) > MAX_ENTRIES:
        known = dict(list(known.items())[-MAX_ENTRIES:])
    try:  # a cache that cannot be written only costs time
        cache.parent.mkdir(parents=True, exist_ok=True)
        temp = cache.with_name(f".{cache.name}.{os.getpid()}")
        temp.write_text(json.dumps(known))
        os.replace(temp, cache)
    except OSError:
        pass
    return digest
