"""SHA-256 of the course's local data files, streamed and cached by (size, mtime), so a 2 GB file is read once.

One small cache file per data file, named by the hash of its real path: a command reads only the entries of
its own course, however many courses (or test copies) this machine has checked.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from coursekit.data import sha256_file

MAX_ENTRIES = 10_000


def cache_dir(environ: dict = os.environ) -> Path:
    """Where the checksums are remembered: $XDG_CACHE_HOME/coursekit/sha256/ (or ~/.cache/...)."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "coursekit", "sha256")


def _load(path: Path) -> dict:
    try:
        cached = json.loads(path.read_text())
        return cached if isinstance(cached, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(folder: Path, entry: Path, record: dict) -> None:
    """Write one entry atomically; past MAX_ENTRIES, forget the oldest half. A cache that cannot be written only costs time."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temp = entry.with_name(f".{entry.name}.{os.getpid()}")
        temp.write_text(json.dumps(record))
        os.replace(temp, entry)
        names = os.listdir(folder)
        if len(names) > MAX_ENTRIES:
            by_age = sorted((folder / n for n in names), key=lambda p: p.stat().st_mtime)
            for old in by_age[: len(by_age) // 2]:
                old.unlink(missing_ok=True)
    except OSError:
        pass


def cached_sha256(path: Path, cache: Path | None = None) -> str:
    """sha256 of path, re-read only when its size, mtime, inode or device changed."""
    folder = cache or cache_dir()
    st = path.stat()
    real = os.path.realpath(path)
    entry = folder / f"{hashlib.sha256(os.fsencode(real)).hexdigest()}.json"
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev]
    known = _load(entry)
    if known.get("path") == real and known.get("stat") == stamp and isinstance(known.get("sha256"), str):
        return known["sha256"]
    digest = sha256_file(path)
    _save(folder, entry, {"path": real, "stat": stamp, "sha256": digest})
    return digest
