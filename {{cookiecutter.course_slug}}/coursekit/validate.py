"""Checks a schema cannot express, run on the raw course.yaml after the schema."""
from __future__ import annotations

import hashlib
import ipaddress
import re
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from coursekit import names
from coursekit.yamlload import Document

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_APT = re.compile(r"[a-z0-9][a-z0-9+.-]+(?:=[A-Za-z0-9.+~:-]+)?")
_MEMORY = re.compile(r"[0-9]+(?:\.[0-9]+)?[bkmgBKMG]")
_SPARE_ID = re.compile(r"spare-[0-9]+")
Found = Iterator[tuple[tuple, str]]


def _at(data: Any, *keys: Any) -> Any:
    """data[k1][k2]... or None when any step is missing or of the wrong shape."""
    for key in keys:
        if isinstance(key, int) and isinstance(data, list) and key < len(data):
            data = data[key]
        elif isinstance(key, str) and isinstance(data, dict):
            data = data.get(key)
        else:
            return None
    return data


def _items(data: Any, *keys: str) -> list[tuple[int, Any]]:
    value = _at(data, *keys)
    return list(enumerate(value)) if isinstance(value, list) else []


def _strings(data: Any, *keys: str) -> list[tuple[int, str]]:
    return [(i, v) for i, v in _items(data, *keys) if isinstance(v, str)]


def parse_when(text: str) -> datetime:
    """An ISO 8601 date and time; ValueError if it is not one."""
    return datetime.fromisoformat(text)


def _check_course(data: dict) -> Found:
    slug = _at(data, "course", "slug")
    if isinstance(slug, str) and (why := names.slug_problem(slug)):
        yield ("course", "slug"), why
    when = {}
    for key in ("start", "end"):
        text = _at(data, "course", key)
        if isinstance(text, str):
            try:
                when[key] = parse_when(text)
            except ValueError:
                yield ("course", key), f"{text!r} is not a date and time (write it like 2027-01-11T09:00:00-05:00)"
    if len(when) == 2:
        start, end = when["start"], when["end"]
        if (start.tzinfo is None) != (end.tzinfo is None):
            yield ("course", "end"), "give both start and end a UTC offset (like -05:00), or neither"
        elif end <= start:
            yield ("course", "end"), f"{end.isoformat()} is not after course.start ({start.isoformat()})"


def _requirement_problem(text: str) -> str | None:
    try:
        req = Requirement(text)
    except InvalidRequirement:
        return f"{text!r} is not a valid package requirement (write it as name==version, e.g. pandas==2.2.3)"
    specs = list(req.specifier)
    if req.url or len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
        return f"{text!r} is not pinned (write it as {req.name}==VERSION with one exact version, so every build is the same)"
    return None


def _check_image(data: dict) -> Found:
    checks = (("registry", names.registry_problem), ("repository", names.repository_problem), ("base", names.base_image_problem))
    for key, check in checks:
        value = _at(data, "image", key)
        if isinstance(value, str) and (why := check(value)):
            yield ("image", key), why
    seen: dict[str, int] = {}
    for i, text in _strings(data, "image", "python_packages"):
        if why := _requirement_problem(text):
            yield ("image", "python_packages", i), why
            continue
        name = canonicalize_name(Requirement(text).name)
        if name in seen:
            yield ("image", "python_packages", i), f"{text!r} is listed twice (also at python_packages[{seen[name]}]); keep one"
        seen.setdefault(name, i)
    for i, text in _strings(data, "image", "apt_packages"):
        if not _APT.fullmatch(text):
            yield ("image", "apt_packages", i), f"{text!r} is not a Debian package name (like graphviz or graphviz=2.42.2-6)"


def _relative_path_problem(text: str) -> str | None:
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts or "\\" in text:
        return f"{text!r} must be a relative path without '..' (like mri/subject01.nii.gz)"
    return None


def _check_data(data: dict, root: Path) -> Found:
    targets: dict[str, int] = {}
    for i, entry in _items(data, "data"):
        url, sha, target = _at(entry, "url"), _at(entry, "sha256"), _at(entry, "path")
        sha_ok = isinstance(sha, str) and bool(_SHA256.fullmatch(sha))
        if isinstance(sha, str) and not sha_ok:
            yield ("data", i, "sha256"), f"{sha!r} is not a SHA-256 checksum (64 hexadecimal characters; `sha256sum FILE` prints it)"
        if isinstance(target, str):
            if why := _relative_path_problem(target):
                yield ("data", i, "path"), why
            elif target in targets:
                yield ("data", i, "path"), f"{target!r} is also the path of data[{targets[target]}]; every file needs its own path"
            targets.setdefault(target, i)
        if not isinstance(url, str):
            continue
        if "://" in url:
            if not url.startswith(("https://", "http://")):
                yield ("data", i, "url"), f"{url!r}: only https:// and http:// URLs can be fetched"
        elif why := _relative_path_problem(url):
            yield ("data", i, "url"), why
        elif not (root / url).is_file():
            yield ("data", i, "url"), f"{url!r} is not a file in this repository (paths are relative to the folder of course.yaml); add it or fix the path"
        elif sha_ok and hashlib.sha256((root / url).read_bytes()).hexdigest() != sha.lower():
            actual = hashlib.sha256((root / url).read_bytes()).hexdigest()
            yield ("data", i, "sha256"), f"does not match {url} (its sha256 is {actual}); update the checksum if the file changed on purpose"


def _check_seats(data: dict) -> Found:
    seen: dict[str, tuple] = {}
    count = 0
    for group in ("students", "instructors"):
        for i, person in _items(data, "seats", group):
            count += 1
            seat_id = _at(person, "id")
            if not isinstance(seat_id, str):
                continue
            where = ("seats", group, i, "id")
            if why := names.seat_id_problem(seat_id):
                yield where, why
            elif _SPARE_ID.fullmatch(seat_id):
                yield where, f"{seat_id!r} is reserved for spare seats; choose another id"
            elif seat_id in seen:
                yield where, f"{seat_id!r} is already the id of seats.{seen[seat_id][1]}[{seen[seat_id][2]}]; seat ids must be unique"
            seen.setdefault(seat_id, where)
    spares = _at(data, "seats", "spares")
    count += spares if isinstance(spares, int) and not isinstance(spares, bool) and spares > 0 else 0
    limit = _at(data, "fleet", "max_seats")
    if isinstance(_at(data, "seats"), dict) and count == 0:
        yield ("seats",), "the course has no seats; add students (or spares)"
    elif isinstance(limit, int) and not isinstance(limit, bool) and count > limit:
        yield ("fleet", "max_seats"), (
            f"the roster needs {count} seats (students + instructors + spares) but the fleet holds {limit}; "
            "raise max_seats (ask for a bigger quota) or use fewer seats"
        )


def _check_fleet(data: dict) -> Found:
    memory = _at(data, "fleet", "docker", "memory")
    if isinstance(memory, str) and not _MEMORY.fullmatch(memory):
        yield ("fleet", "docker", "memory"), f"{memory!r} is not a memory size (a number and a unit: 512m, 2g)"
    for i, cidr in _strings(data, "fleet", "openstack", "ssh_cidrs"):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            yield ("fleet", "openstack", "ssh_cidrs", i), f"{cidr!r} is not a network (write it like 203.0.113.0/24)"


def semantic_problems(doc: Document, root: Path) -> list:
    """Problems the schema cannot see: pins, ids, checksums, dates, seat counts."""
    if not isinstance(doc.data, dict):
        return []
    found = [
        *_check_course(doc.data),
        *_check_image(doc.data),
        *_check_data(doc.data, root),
        *_check_seats(doc.data),
        *_check_fleet(doc.data),
    ]
    return [doc.problem(path, message) for path, message in found]
