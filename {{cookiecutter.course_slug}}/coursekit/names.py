"""Rules for the names coursekit puts into hostnames and Docker references.

Standard library only: the cookiecutter pre-generation hook imports this module too.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
import unicodedata
from dataclasses import dataclass

SLUG_MAX = 32
SEAT_ID_MAX = 30  # slug + "-" + seat id stays within a 63-character DNS label

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
# Docker distribution reference grammar (distribution/reference, regexp.go).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
# A registry host as Docker parses it: a lowercase DNS name or an IPv6 literal in brackets, then an optional port.
_DOMAIN = re.compile(r"(?P<host>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[(?P<ipv6>[0-9a-fA-F:.]+)\])"
                     r"(?::(?P<port>[0-9]{1,5}))?")
_HOSTNAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*", re.IGNORECASE)
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
MIN_YEAR, MAX_YEAR = 2000, 2199  # a course's dates; far ones are typos, and date arithmetic must not overflow
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def text_problem(text: str) -> str | None:
    """Why a name shown on rosters and terminals is unsafe: control (escape, bell...) or bidi-override characters, or nothing visible."""
    if not text.strip():
        return "is empty or only spaces; give the name as it should be shown"
    bad = sorted({c for c in text if (unicodedata.category(c) == "Cc" and c not in "\t\r\n") or c in _BIDI_CONTROLS})
    if bad:
        shown = ", ".join(f"U+{ord(c):04X}" for c in bad[:5])
        return f"contains control characters ({shown}), which terminals and spreadsheets act on; remove them"
    return None


def year_problem(year: int) -> str | None:
    """Why a course cannot run in this year, or None."""
    if MIN_YEAR <= year <= MAX_YEAR:
        return None
    return f"{year} is not a year a course runs in; give a date between {MIN_YEAR} and {MAX_YEAR}"


def label_problem(value: str, what: str, max_length: int) -> str | None:
    """Why value is not a valid DNS label of at most max_length characters, or None."""
    if not isinstance(value, str) or not _LABEL.fullmatch(value):
        return f"{value!r} is not a valid {what} (use lowercase letters, digits and '-', starting and ending with a letter or digit)"
    if len(value) > max_length:
        return f"{value!r} is too long for a {what} ({len(value)} characters, at most {max_length})"
    return None


def slug_problem(slug: str) -> str | None:
    """Why slug cannot name a course, or None."""
    return label_problem(slug, "course slug", SLUG_MAX)


def seat_id_problem(seat_id: str) -> str | None:
    """Why seat_id cannot name a seat, or None."""
    return label_problem(seat_id, "seat id", SEAT_ID_MAX)


def _domain_ok(domain: str) -> bool:
    match = _DOMAIN.fullmatch(domain)
    if not match or len(domain) > 255:
        return False
    if match["ipv6"]:
        try:
            ipaddress.IPv6Address(match["ipv6"])
        except ValueError:
            return False
    return match["port"] is None or 1 <= int(match["port"]) <= 65535


def registry_problem(registry: str) -> str | None:
    """Why registry is not a registry host[:port] as Docker parses it, or None."""
    if not isinstance(registry, str) or not _domain_ok(registry):
        return (
            f"{registry!r} is not a registry host (lowercase, like docker.io, ghcr.io, quay.io, localhost:5000 "
            "or [::1]:5000; a port is 1-65535)"
        )
    return None


def host_problem(host: str) -> str | None:
    """Why host is not a DNS name or IP address that can stand in a URL, or None."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if len(host) > 253 or not _HOSTNAME.fullmatch(host):
        return f"{host!r} is not a host name or IP address (like lab.example.edu or 203.0.113.7; no scheme, port or path)"
    return None


MAX_IMAGE_NAME = 255  # registry/repository, as Docker's reference grammar bounds it


def repository_problem(repository: str) -> str | None:
    """Why repository is not an image name without registry or tag, or None."""
    if ":" in repository or "@" in repository:
        return f"{repository!r} must not carry a tag or digest (coursekit tags each build itself); write it like your-user/course-name"
    if not _PATH.fullmatch(repository):
        return (
            f"{repository!r} is not a valid image repository (use lowercase path parts separated by '/', "
            "made of letters, digits, '.', '_' or '-', like your-user/course-name)"
        )
    if len(repository) > 255:
        return f"{repository!r} is too long for an image repository (at most 255 characters)"
    return None


@dataclass(frozen=True)
class ImageRef:
    """A parsed Docker image reference."""

    name: str
    tag: str | None
    digest: str | None


def parse_image_ref(ref: str) -> ImageRef:
    """Split name[:tag][@digest]; ValueError says what is malformed."""
    name, _, digest = ref.partition("@")
    if digest and not _DIGEST.fullmatch(digest):
        raise ValueError(f"{ref!r} has a malformed digest (expected sha256: and 64 lowercase hex characters)")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not _TAG.fullmatch(tag):
            raise ValueError(f"{ref!r} has a malformed tag {tag!r}")
    first, sep, rest = name.partition("/")
    has_domain = bool(sep) and ("." in first or ":" in first or first == "localhost" or first.startswith("["))
    path = rest if has_domain else name
    if (has_domain and not _domain_ok(first)) or not _PATH.fullmatch(path):
        raise ValueError(f"{ref!r} is not a valid image reference (like quay.io/jupyter/datascience-notebook:2026-05-31)")
    return ImageRef(name, tag, digest or None)


def base_image_problem(ref: str) -> str | None:
    """Why ref is not a reproducibly pinned base image, or None."""
    try:
        image = parse_image_ref(ref)
    except ValueError as exc:
        return str(exc)
    if image.digest:
        return None
    if image.tag is None:
        return f"{ref!r} has no tag, so every build may get a different image; pin a dated tag, e.g. {ref}:2026-05-31"
    if image.tag == "latest":
        return f"{ref!r} uses 'latest', which changes under you; pin a dated tag, e.g. {image.name}:2026-05-31"
    return None


def instance_name(slug: str, seat: str) -> str:
    """A DNS label naming one seat of one course: readable, at most 63 characters, and distinct for every
    (slug, seat) pair, also where "a-b" + "c" and "a" + "b-c" read alike (a short hash of the pair tells them apart)."""
    tag = hashlib.sha256(f"{slug}:{seat}".encode()).hexdigest()[:6]
    return f"{f'{slug}-{seat}'[:56].rstrip('-')}-{tag}"


def swift_container_problem(name: str) -> str | None:
    """Why name cannot be a Swift container for archives (1 to 256 bytes, no '/', printable), or None."""
    if not name or len(name.encode()) > 256 or "/" in name or not name.isprintable() or name.strip() != name:
        return (f"swift://{name}: a Swift container name is 1 to 256 printable characters without '/' or surrounding "
                "spaces, e.g. swift://intro-archives")
    return None


def is_address(text: str) -> bool:
    """True when text is an IP address (v4 or v6), not a name."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False
