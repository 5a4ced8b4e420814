"""Checks a schema cannot express, run on the raw course.yaml after the schema."""
from __future__ import annotations

import bisect
import fnmatch
import functools
import hashlib
import ipaddress
import itertools
import math
import os
import re
import tarfile
import urllib.parse
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from coursekit import buildinputs, names
from coursekit.errors import Problem
from coursekit.filehash import cached_sha256
from coursekit.fleet import registry
from coursekit.schedule import Schedule, class_sessions, parse_window
from coursekit.yamlload import Document

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_APT = re.compile(r"[a-z0-9][a-z0-9+.-]+(?:=[A-Za-z0-9.+~:-]+)?")
# Conda's package names are lowercase; a version is letters, digits and . _ + ! (MatchSpec's exact `==`).
_CONDA_PIN = re.compile(r"(?P<name>[a-z0-9_][a-z0-9._-]*)==(?P<version>[0-9A-Za-z][0-9A-Za-z._+!]*)")
_CONDA_NAME = re.compile(r"[a-z0-9_][a-z0-9._-]*(?:/label/[a-z0-9._-]+)?")
MAX_SEATS = 5000
MAX_CLASS = timedelta(days=366)
MAX_NAME_BYTES, MAX_PATH_BYTES = 255, 1024  # Linux's NAME_MAX; a data path well inside PATH_MAX under ~/data
RESERVED_DATA = ".coursekit-verified"  # data.py keeps its checksum stamps here, inside ~/data
_SPARE_ID = re.compile(r"spare-[0-9]+")
_SHELL_VARIABLE = re.compile(r"\$(?:\{[^}]*\}?|[A-Za-z_][A-Za-z0-9_]*)")
RESERVED_SEATS = ("gateway", "coursekit")  # https://<gateway>/<seat>/: the gateway's status row and control paths
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
    for key, value in list(when.items()):
        if why := names.year_problem(value.year):
            del when[key]
            yield ("course", key), why
    if len(when) == 2:
        start, end = when["start"], when["end"]
        if (start.tzinfo is None) != (end.tzinfo is None):
            yield ("course", "end"), "give both start and end a UTC offset (like -05:00), or neither"
        elif end <= start:
            yield ("course", "end"), f"{end.isoformat()} is not after course.start ({start.isoformat()})"
        elif end - start > MAX_CLASS:
            yield ("course", "end"), (
                f"the class would run {(end - start).days} days; coursekit runs classes of at most {MAX_CLASS.days} days "
                "(a fleet costs SUs every hour): check the year of course.end")
    yield from _check_texts(data)


def _check_texts(data: dict) -> Found:
    """Names and emails end up on rosters, in terminals and in HTML: no characters a terminal acts on."""
    name = _at(data, "course", "name")
    if isinstance(name, str) and (why := names.text_problem(name)):
        yield ("course", "name"), f"{name[:60]!r} {why}"
    for group in ("students", "instructors"):
        for i, person in _items(data, "seats", group):
            for key in ("name", "email"):
                text = _at(person, key)
                if key == "email" and isinstance(text, str) and not text.strip():
                    continue  # no email given
                if isinstance(text, str) and (why := names.text_problem(text)):
                    yield ("seats", group, i, key), f"{text[:60]!r} {why}"


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
    bad = set()
    for key, check in checks:
        value = _at(data, "image", key)
        if isinstance(value, str) and (why := check(value)):
            bad.add(key)
            yield ("image", key), why
    registry, repository = _at(data, "image", "registry"), _at(data, "image", "repository")
    name = f"{registry}/{repository}"
    if isinstance(registry, str) and isinstance(repository, str) and not bad & {"registry", "repository"} \
            and len(name) > names.MAX_IMAGE_NAME:
        yield ("image", "repository"), (
            f"the image name {name[:60]!r}... is {len(name)} characters with its registry; Docker takes at most "
            f"{names.MAX_IMAGE_NAME}: shorten image.repository")
    seen: dict[str, int] = {}
    for i, text in _strings(data, "image", "python_packages"):
        if why := _requirement_problem(text):
            yield ("image", "python_packages", i), why
            continue
        name = canonicalize_name(Requirement(text).name)
        if name in seen:
            yield ("image", "python_packages", i), f"{text!r} is listed twice (also at python_packages[{seen[name]}]); keep one"
        seen.setdefault(name, i)
    yield from _check_conda(data)
    for i, text in _strings(data, "image", "apt_packages"):
        if not _APT.fullmatch(text):
            yield ("image", "apt_packages", i), f"{text!r} is not a Debian package name (like graphviz or graphviz=2.42.2-6)"


def _check_conda(data: dict) -> Found:
    seen: dict[str, int] = {}
    for i, text in _strings(data, "image", "conda_packages"):
        match = _CONDA_PIN.fullmatch(text)
        if not match:
            name = re.split(r"[=<>!~ ]", text.strip(), maxsplit=1)[0].lower() or "NAME"
            yield ("image", "conda_packages", i), (
                f"{text!r} is not a pinned conda package: write it as {name}==VERSION (one exact version, "
                "lowercase name), so every build is the same")
            continue
        if match["name"] in seen:
            yield ("image", "conda_packages", i), f"{text!r} is listed twice (also at conda_packages[{seen[match['name']]}]); keep one"
        seen.setdefault(match["name"], i)
    for i, text in _strings(data, "image", "conda_channels"):
        why = _url_problem(text) if "://" in text else None
        if not why and text.startswith("http://") and not _is_loopback(urllib.parse.urlsplit(text).hostname or ""):
            why = f"{text!r}: packages from a plain http:// channel can be changed on the way; use its https:// URL"
        if why and "@" in text.split("://", 1)[-1].split("/", 1)[0]:
            why = f"{text.split('://')[0]}://...@{text.split('@', 1)[1]}: a channel URL must not carry a login, which would end up in the image's history; use a public channel"
        if why or ("://" not in text and not _CONDA_NAME.fullmatch(text)):
            yield ("image", "conda_channels", i), why or (
                f"{text!r} is not a channel: give a name such as conda-forge (or conda-forge/label/NAME) or an https:// URL")


def _is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1: a channel on this machine (a local mirror) is not read across a network."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _relative_path_problem(text: str) -> str | None:
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts or "\\" in text or not path.parts:
        return f"{text!r} must be a relative path without '..' (like mri/subject01.nii.gz)"
    if any(c in text for c in "\n\r\0"):
        return f"{text!r} must not contain line breaks or NUL characters"
    if (size := len(text.encode("utf-8", "surrogateescape"))) > MAX_PATH_BYTES:
        return f"{text[:40]!r}... is {size:,} bytes long; keep a path under {MAX_PATH_BYTES} bytes"
    if long := next((part for part in path.parts if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES), None):
        return f"{long[:40]!r}... is longer than {MAX_NAME_BYTES} bytes, the longest file name Linux allows; shorten it"
    return None


def normal_path(text: str) -> str:
    """a//b/./c/ → a/b/c: the one spelling of a relative path."""
    return str(PurePosixPath(text))


def _url_problem(url: str) -> str | None:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"{url!r} is not a valid URL ({exc})"
    if parts.scheme not in ("https", "http"):
        return f"{url!r}: only https:// and http:// URLs can be fetched"
    if parts.username is not None or parts.password is not None:
        return (
            f"{urllib.parse.urlunsplit(parts._replace(netloc=parts.hostname or ''))!r} carries a user name or password, "
            "which would end up inside the image and its logs; commit the file to the (private) course repository "
            "and give its path, or use a link that needs no login (e.g. a pre-signed link)"
        )
    if not parts.hostname or names.host_problem(parts.hostname) or port == 0:
        return f"{url!r} has no valid host (write it like https://example.org/data/file.csv)"
    if any(c.isspace() for c in url):
        return f"{url!r} contains spaces or line breaks; percent-encode them (%20)"
    return None


def _local_file_problem(url: str, root: Path) -> str | None:
    """Why a data url naming a file in the repository cannot be used: missing, not regular, or outside via a link."""
    path = root / url
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return f"{url!r} is not a file in this repository (paths are relative to the folder of course.yaml); add it or fix the path"
    if not real.is_relative_to(root.resolve()):
        return f"{url!r} is a link to {real}, outside this repository; copy the file into the repository instead"
    if not real.is_file():
        return f"{url!r} is not a regular file; data entries name single files (use unpack for archives)"
    return None


def _check_data_paths(data: dict) -> Found:
    targets: dict[str, int] = {}
    for i, entry in _items(data, "data"):
        target = _at(entry, "path")
        if not isinstance(target, str):
            continue
        if why := _relative_path_problem(target):
            yield ("data", i, "path"), why
            continue
        normal = normal_path(target)
        if normal.split("/")[0] == RESERVED_DATA:
            yield ("data", i, "path"), f"{target!r}: {RESERVED_DATA} is where coursekit keeps its checksums; choose another folder"
        elif normal in targets:
            yield ("data", i, "path"), f"{target!r} is also the path of data[{targets[normal]}]; every file needs its own path"
        targets.setdefault(normal, i)
    for normal, i in targets.items():
        for parent in PurePosixPath(normal).parents:
            if str(parent) in targets:
                yield ("data", i, "path"), (
                    f"{normal!r} lies inside {str(parent)!r}, which is the file of data[{targets[str(parent)]}]; "
                    "a path cannot be both a file and a folder"
                )
                break


def _check_data(data: dict, root: Path) -> Found:
    yield from _check_data_paths(data)
    for i, entry in _items(data, "data"):
        url, sha = _at(entry, "url"), _at(entry, "sha256")
        sha_ok = isinstance(sha, str) and bool(_SHA256.fullmatch(sha))
        if isinstance(sha, str) and not sha_ok:
            yield ("data", i, "sha256"), f"{sha!r} is not a SHA-256 checksum (64 hexadecimal characters; `sha256sum FILE` prints it)"
        if not isinstance(url, str):
            continue
        if "://" in url or url.lower().startswith(("http:", "https:", "file:", "ftp:")):
            if why := _url_problem(url):
                yield ("data", i, "url"), why
        elif why := _relative_path_problem(url) or _local_file_problem(url, root):
            yield ("data", i, "url"), why
        elif sha_ok and (actual := cached_sha256(root / url)) != sha.lower():
            yield ("data", i, "sha256"), f"does not match {url} (its sha256 is {actual}); update the checksum if the file changed on purpose"
        elif _at(entry, "unpack") is True and not _is_archive(root / url):
            yield ("data", i, "unpack"), f"{url} is not a zip or tar archive, so it cannot be unpacked; set unpack: false to keep it as it is"


def _is_archive(path: Path) -> bool:
    """A zip, or a tar (plain, gzip, bzip2 or xz) as data.unpack opens it; reads only its first blocks."""
    try:
        return zipfile.is_zipfile(path) or tarfile.is_tarfile(path)
    except (OSError, EOFError, tarfile.TarError):
        return False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def seat_count_spares(data: dict) -> int:
    """seats.spares when it is a sensible whole number, else 0 (the schema reports it)."""
    spares = _at(data, "seats", "spares")
    return spares if _is_int(spares) and 0 < spares <= MAX_SEATS else 0


def _seat_count(data: dict) -> int:
    people = sum(len(_items(data, "seats", group)) for group in ("students", "instructors"))
    return people + seat_count_spares(data)


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
            elif seat_id in RESERVED_SEATS:
                yield where, f"{seat_id!r} is reserved (the gateway serves its own pages there); choose another id"
            elif seat_id in seen:
                yield where, f"{seat_id!r} is already the id of seats.{seen[seat_id][1]}[{seen[seat_id][2]}]; seat ids must be unique"
            seen.setdefault(seat_id, where)
    count += seat_count_spares(data)
    limit = _at(data, "fleet", "max_seats")
    if isinstance(_at(data, "seats"), dict) and count == 0:
        yield ("seats",), "the course has no seats; add students (or spares)"
    elif count > MAX_SEATS:
        yield ("seats",), f"the course has {count:,} seats (students + instructors + spares); coursekit runs at most {MAX_SEATS:,}"
    elif isinstance(limit, int) and not isinstance(limit, bool) and count > limit:
        yield ("fleet", "max_seats"), (
            f"the roster needs {count} seats (students + instructors + spares) but the fleet holds {limit}; "
            "raise max_seats (ask for a bigger quota) or use fewer seats"
        )


def _check_fleet(data: dict) -> Found:
    """Each provider's own section (fleet.<provider>), checked by its package."""
    for name in registry.PROVIDERS:
        section = _at(data, "fleet", name)
        if isinstance(section, dict):
            for path, why in registry.section(name).problems(section, _seat_count(data)):
                yield ("fleet", name, *path), why


def _not_a_number(node: Any, path: tuple = ()) -> Found:
    """.nan passes every JSON Schema range check (every comparison with it is false); no course value can be one."""
    if isinstance(node, float) and math.isnan(node):
        yield path, "nan is not a number; write a number"
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _not_a_number(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _not_a_number(value, (*path, i))


def _name_tokens(part: str) -> list[str]:
    """A name pattern as fnmatch reads it: "*", or the regex of one ?, [...] set or literal character (neither
    ever matching a '/')."""
    tokens, i, n = [], 0, len(part)
    while i < n:
        c = part[i]
        i += 1
        if c == "*":
            if not tokens or tokens[-1] != "*":
                tokens.append("*")
        elif c == "?":
            tokens.append("[^/]")
        elif c == "[":
            j = i + (i < n and part[i] == "!")
            j += j < n and part[j] == "]"
            while j < n and part[j] != "]":
                j += 1
            if j >= n:
                tokens.append("\\[")
            else:  # fnmatch's own reading of the set (ranges, negation, escapes)
                tokens.append("(?!/)" + fnmatch.translate(part[i - 1:j + 1]).removeprefix("(?s:").removesuffix(")\\Z"))
                i = j + 1
        else:
            tokens.append(re.escape(c))
    return tokens


def _segment_regex(part: str, groups: itertools.count) -> str:
    """One folder or file name pattern as a regex that never crosses a '/'. Between stars, each piece is found by
    an atomic lookahead (as fnmatch does), so a pattern like *a*a*a...*b cannot make the engine backtrack."""
    chunks = [[]]
    for token in _name_tokens(part):
        if token == "*":
            chunks.append([])
        else:
            chunks[-1].append(token)
    first, *rest = ["".join(chunk) for chunk in chunks]
    if not rest:
        return first
    *middle, last = rest
    out = [first]
    for chunk in (c for c in middle if c):
        name = f"g{next(groups)}"
        out.append(f"(?=(?P<{name}>[^/]*?{chunk}))(?P={name})")
    out.append("[^/]*" + last)
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def glob_regex(glob: str) -> re.Pattern:
    """glob (relative to notebooks/) as one compiled regex: *, ? and [...] within a name, ** for any number of
    folders. A regex with no nested repetition, so no pattern can make it slow."""
    parts, groups = glob.split("/"), itertools.count()
    pieces = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            pieces.append("(?:[^/]+(?:/[^/]+)*)?" if last else "(?:[^/]+/)*")
        else:
            pieces.append(_segment_regex(part, groups) + ("" if last else "/"))
    return re.compile("".join(pieces))


def glob_matches(glob: str, rel: str) -> bool:
    """True when notebooks/<rel> is one of the files glob names."""
    return glob_regex(glob).fullmatch(rel) is not None


def glob_matches_any(glob: str, found: list[str], joined: str) -> bool:
    """True when glob names at least one of found (sorted); joined is found one per line. A literal leading folder
    narrows the search to its range; otherwise one scan of the whole list, in the regex engine."""
    literal = []
    for part in glob.split("/")[:-1]:
        if any(c in part for c in "*?["):
            break
        literal.append(part)
    if literal:
        prefix = "/".join(literal) + "/"
        start = bisect.bisect_left(found, prefix)
        stop = bisect.bisect_left(found, prefix[:-1] + chr(ord("/") + 1))
        pattern = glob_regex(glob)
        return any(pattern.fullmatch(rel) for rel in found[start:stop])
    return re.search("(?m)^(?:" + glob_regex(glob).pattern + ")$", joined) is not None


LOCK_FILE = "requirements.lock"
_LOCK_HEADER = re.compile(r"# coursekit lock ([0-9a-f]{16}):")


def lock_inputs(packages: list[str]) -> str:
    """What a lock was made from: a short hash of image.python_packages (order and spelling as written)."""
    return hashlib.sha256("\n".join(packages).encode()).hexdigest()[:16]


def lock_made_from(root: Path, packages: list[str]) -> bool:
    """requirements.lock's first line records exactly these packages (order and spelling as written)."""
    with (root / LOCK_FILE).open(encoding="utf-8", errors="replace") as handle:
        header = _LOCK_HEADER.match(handle.readline())
    return header is not None and header[1] == lock_inputs(packages)


def _check_lock(data: dict, root: Path) -> Found:
    if not (root / LOCK_FILE).is_file():
        return
    if not lock_made_from(root, [text for _, text in _strings(data, "image", "python_packages")]):
        yield ("image", "python_packages"), (
            f"{LOCK_FILE} was made from other packages than these; run `python -m coursekit lock` again (or delete it)"
        )


_LOCK_LINE = re.compile(
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)==(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_-]*)"
    r"(?: --hash=sha256:[0-9a-f]{64})+")
MAX_LOCK_BYTES = 4 << 20


def _check_lock_lines(data: dict, root: Path) -> Found:
    """Every line of requirements.lock is a comment or `name==version --hash=sha256:...`, and the versions are
    course.yaml's pins: pip installs this file as it is, so an option line (--extra-index-url, -e, -r, a URL)
    would change where the image's packages come from."""
    path = root / LOCK_FILE
    if not path.is_file() or path.is_symlink():
        return
    if path.stat().st_size > MAX_LOCK_BYTES:
        yield ("image", "python_packages"), f"{LOCK_FILE} is over {MAX_LOCK_BYTES >> 20} MiB; make it again with `python -m coursekit lock`"
        return
    text = path.read_bytes().decode("utf-8", errors="replace")
    versions: dict[str, str] = {}
    shown = 0
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.rstrip("\r")
        if not stripped.strip() or stripped.startswith("#"):
            continue
        match = _LOCK_LINE.fullmatch(stripped)
        if match is None:
            if shown < 10:
                yield ("image", "python_packages"), (
                    f"{LOCK_FILE} line {number} is not `name==version --hash=sha256:<64 hex>`: {stripped[:80]!r}; "
                    "the lock holds nothing else (no options, URLs or other files): run `python -m coursekit lock` again")
            shown += 1
            continue
        versions[canonicalize_name(match["name"])] = match["version"]  # the changed block comes last and wins
    for i, text in _strings(data, "image", "python_packages"):
        if _requirement_problem(text):
            continue
        req = Requirement(text)
        want = next(iter(req.specifier)).version
        have = versions.get(canonicalize_name(req.name))
        if req.marker is None and not _same_version(have, want):
            yield ("image", "python_packages", i), (
                f"{LOCK_FILE} has {req.name} {have or 'not at all'}, but course.yaml pins {want}; "
                "run `python -m coursekit lock` again")


def _same_version(have: str | None, want: str) -> bool:
    try:
        return have is not None and Version(have) == Version(want)
    except InvalidVersion:
        return have == want


RESERVED_ENV = {"JUPYTER_TOKEN", "JUPYTER_PORT", "NB_USER", "NB_UID", "NB_GID", "HOME", "PATH", "CONDA_DIR", "SHELL", "USER"}


def list_notebooks(root: Path) -> list[str]:
    """Notebook paths relative to notebooks/ (checkpoints left out), as the image holds them."""
    folder = root / "notebooks"
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def _check_image_env(data: dict) -> Found:
    env = _at(data, "image", "env")
    for name, value in env.items() if isinstance(env, dict) else ():
        if not isinstance(name, str):
            continue
        if name in RESERVED_ENV or name.startswith("COURSEKIT_"):
            yield ("image", "env", name), f"{name} is set by the image and coursekit themselves; choose another name"
        elif isinstance(value, str) and any(ord(c) < 32 and c != "\t" for c in value):
            yield ("image", "env", name), "the value holds a line break or control character; write it on one line"
        elif isinstance(value, str) and (var := _SHELL_VARIABLE.search(value)):
            yield ("image", "env", name), (
                f"{value!r}: values are used as written, and {var[0]} would stay as it is, not become its value; "
                "write the full path, like /home/jovyan/data/dipy")


def _check_tests(data: dict, root: Path) -> Found:
    globs = _at(data, "test", "notebooks")
    if not isinstance(globs, dict) or not globs:
        return
    found = list_notebooks(root)
    joined = "\n".join(found)
    for glob in globs:
        if not isinstance(glob, str):
            continue
        if glob.startswith("/") or ".." in PurePosixPath(glob).parts:
            yield ("test", "notebooks", glob), f"{glob!r} must be relative to notebooks/ and stay inside it"
        elif "\n" in glob or not glob_matches_any(glob, found, joined):
            yield ("test", "notebooks", glob), (
                f"{glob!r} matches no notebook in notebooks/ (there are {len(found)}); fix the glob or remove the entry"
            )


def _class_period(data: dict) -> tuple[datetime, datetime] | None:
    """(course.start, course.end) when _check_course finds nothing wrong with them, else None."""
    try:
        start, end = parse_when(_at(data, "course", "start")), parse_when(_at(data, "course", "end"))
    except (TypeError, ValueError):
        return None
    if names.year_problem(start.year) or names.year_problem(end.year) or (start.tzinfo is None) != (end.tzinfo is None):
        return None
    return (start, end) if start < end <= start + MAX_CLASS else None


def _check_schedule(data: dict) -> Found:
    windows = []
    for i, text in _strings(data, "schedule", "awake"):
        try:
            windows.append(parse_window(text))
        except ValueError as exc:
            yield ("schedule", "awake", i), str(exc)
    period = _class_period(data)
    listed = [moments for _, moments, _ in _sessions(data, period)]
    if windows and period and None not in listed:
        start, end = period
        tz = start.tzinfo or timezone.utc
        plan = Schedule(tuple(windows), 0, False, tz, end)
        for begin, finish in class_sessions(start, end, tuple(listed)):
            begin, finish = begin.replace(tzinfo=begin.tzinfo or tz), finish.replace(tzinfo=finish.tzinfo or tz)
            if not plan.covers(begin, finish):
                yield ("schedule", "awake"), (
                    f"the session {begin.astimezone(tz):%Y-%m-%d %H:%M} to {finish.astimezone(tz):%H:%M} is not all inside "
                    "the awake windows, so seats would be paused during class; widen a window (times are in "
                    "course.start's UTC offset), or list the sessions in course.sessions")
                break


def _sessions(data: dict, period: tuple[datetime, datetime] | None) -> Iterator[tuple[int, tuple[datetime, datetime] | None, str]]:
    """(index, moments, problem) for each of course.sessions: moments when it is right, else what is wrong."""
    for i, item in _items(data, "course", "sessions"):
        try:
            start, end = parse_when(_at(item, "start")), parse_when(_at(item, "end"))
        except (TypeError, ValueError):
            yield i, None, "start and end must be ISO 8601 moments like 2027-01-11T09:00:00-05:00"
            continue
        if start >= end:
            yield i, None, f"ends ({end.isoformat()}) before it starts ({start.isoformat()})"
        elif period is None or (start.tzinfo is None) != (period[0].tzinfo is None) or not period[0] <= start < end <= period[1]:
            yield i, None, "must lie between course.start and course.end, written with the same kind of UTC offset"
        else:
            yield i, (start, end), ""


def _check_sessions(data: dict) -> Found:
    period = _class_period(data)
    if period is None:
        return  # _check_course says what is wrong with start and end
    for i, moments, why in _sessions(data, period):
        if moments is None:
            yield ("course", "sessions", i), why


def _check_archive(data: dict, root: Path) -> Found:
    target = _at(data, "archive", "target")
    if not isinstance(target, str):
        return
    if target.startswith("swift://"):
        if why := names.swift_container_problem(target.removeprefix("swift://")):
            yield ("archive", "target"), why
    elif "://" in target:
        yield ("archive", "target"), f"{target!r}: give a folder, or swift://CONTAINER for the allocation's object store"
    elif _shared_folder(target):
        yield ("archive", "target"), (
            f"{target!r} is not a folder of its own; archives need one (the default is archives, next to course.yaml)")
    elif "\0" not in target and (why := buildinputs.target_problem(root, target)):
        yield ("archive", "target"), why


def _shared_folder(target: str) -> bool:
    """True for a folder that holds more than archives: the course repository, its .git, a parent, the root."""
    normal = os.path.normpath(target) if "\0" not in target else "."
    return normal in (".", "/", "//") or normal.split("/")[0] in ("..", ".git")


def semantic_problems(doc: Document, root: Path, check_lock: bool = True) -> list:
    """Problems the schema cannot see: pins, ids, checksums, dates, seat counts."""
    if not isinstance(doc.data, dict):
        return []
    found = [
        *_not_a_number(doc.data),
        *_check_course(doc.data),
        *_check_image(doc.data),
        *_check_data(doc.data, root),
        *_check_seats(doc.data),
        *_check_fleet(doc.data),
        *_check_image_env(doc.data),
        *_check_tests(doc.data, root),
        *_check_schedule(doc.data),
        *_check_sessions(doc.data),
        *_check_archive(doc.data, root),
        *(_check_lock(doc.data, root) if check_lock else ()),
        *(_check_lock_lines(doc.data, root) if check_lock else ()),  # `lock` itself writes a new one
    ]
    return [*(doc.problem(path, message) for path, message in found), *build_input_problems(root)]


def build_input_problems(root: Path) -> list[Problem]:
    """Paths the build would copy but must not (links out of the repository, devices), each a Problem of its own file."""
    files = [rel for rel in ("Dockerfile", LOCK_FILE) if (root / rel).is_symlink()]
    found = [(rel, why) for rel in files if (why := buildinputs.file_problem(root, rel))] + buildinputs.tree_problems(root)
    return [Problem(0, "", why, rel) for rel, why in found]
