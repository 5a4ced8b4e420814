"""Sizes as course.yaml writes them: a number and a unit (512m, 2g)."""
from __future__ import annotations

import re

_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)([bkmgBKMG])")
_UNITS = {"b": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def memory_bytes(text: str) -> int | None:
    """512m → 536870912; None if text is not a number with a unit b, k, m or g."""
    match = _SIZE.fullmatch(text)
    return int(float(match[1]) * _UNITS[match[2].lower()]) if match else None
