"""Roster → seats → credentials. Credentials are derived, never stored."""
from __future__ import annotations

import math
import os
import string
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping

from coursekit import keys
from coursekit.config import Course
from coursekit.errors import SecretError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

SECRET_VARIABLE = "COURSEKIT_SECRET"
MIN_SECRET_LENGTH = 16
MIN_SECRET_BITS = 128
# 'abababab...' and 'aaaa...' have long alphabets in theory and none in practice; a random hex token (at most 4.0)
# falls under 3.0 about once in 10,000 draws, so the floor sits lower
MIN_BITS_PER_CHARACTER = 2.5
URLSAFE = frozenset(string.ascii_letters + string.digits + "-_")
MAKE_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


@dataclass(frozen=True)
class Seat:
    """One environment: who it is for and what it is called."""

    id: str
    name: str
    role: str
    email: str = ""
    person: str = ""  # the roster id of who sits here ("" for a spare)


def seats(course: Course) -> list[Seat]:
    """Every seat of the course: students, then instructors, then the spares no one was moved onto (seating.yaml
    puts a person on a spare: their seat is then that spare's)."""
    moved = dict(course.seating)
    people = [Seat(moved.get(p.id, p.id), p.name, "student", p.email, p.id) for p in course.seats.students]
    people += [Seat(moved.get(p.id, p.id), p.name, "instructor", p.email, p.id) for p in course.seats.instructors]
    taken = set(moved.values())
    people += [Seat(f"spare-{n}", f"Spare {n}", "spare") for n in range(1, course.seats.spares + 1) if f"spare-{n}" not in taken]
    return people


def status_order(course: Course, found: Iterable[str]) -> list[str]:
    """Seat ids in roster order, then any found that the roster no longer has."""
    roster = [s.id for s in seats(course)]
    return roster + sorted(set(found) - set(roster))


def apparent_bits(secret: str) -> float:
    """Length × log2 of the alphabets it draws on (lowercase, uppercase, digits, other): 132 for 22 URL-safe characters."""
    classes = (string.ascii_lowercase, string.ascii_uppercase, string.digits)
    alphabet = sum(len(c) for c in classes if any(ch in c for ch in secret))
    alphabet += 33 if any(not any(ch in c for c in classes) for ch in secret) else 0
    if set(secret) <= URLSAFE and any(ch.islower() for ch in secret) and any(ch.isupper() for ch in secret):
        # URL-safe base64 (secrets.token_urlsafe): 22 characters without a digit, '-' or '_' happen in about 1 draw of 80
        alphabet = max(alphabet, 64)
    return len(secret) * math.log2(alphabet) if alphabet > 1 else 0.0


def bits_per_character(secret: str) -> float:
    """Shannon entropy of the secret's own characters."""
    counts = Counter(secret)
    return -sum(n / len(secret) * math.log2(n / len(secret)) for n in counts.values()) if secret else 0.0


def read_secret(environ: Mapping[str, str] = os.environ) -> str:
    """COURSEKIT_SECRET from the environment, or a SecretError saying how to make one."""
    secret = environ.get(SECRET_VARIABLE, "")
    make = f"Make one with\n  export {SECRET_VARIABLE}=$({MAKE_SECRET})\n"
    if not secret:
        raise SecretError(
            f"{SECRET_VARIABLE} is not set. Every seat's credential is derived from this one secret. {make}"
            "keep it in your password manager, and add it to the repository's Actions secrets under the same name."
        )
    if len(secret) < MIN_SECRET_LENGTH:
        raise SecretError(
            f"{SECRET_VARIABLE} is only {len(secret)} characters; use at least {MIN_SECRET_LENGTH} random ones, "
            f"e.g. from {MAKE_SECRET}"
        )
    if secret != secret.strip() or any(ch.isspace() for ch in secret):
        raise SecretError(f"{SECRET_VARIABLE} contains spaces or line breaks (often a copy-and-paste slip). {make}")
    if apparent_bits(secret) < MIN_SECRET_BITS or bits_per_character(secret) < MIN_BITS_PER_CHARACTER:
        raise SecretError(
            f"{SECRET_VARIABLE} does not look random (about {max(0.0, min(apparent_bits(secret), len(secret) * bits_per_character(secret))):.0f} "
            f"bits; at least {MIN_SECRET_BITS} are needed, and repeated characters add little). {make}"
        )
    if (secret + secret).find(secret, 1) < len(secret):  # "Xk3p9QzT2wYXk3p9QzT2wY": one word, repeated
        raise SecretError(f"{SECRET_VARIABLE} is one shorter string repeated, which adds nothing to guess. {make}")
    return secret


@dataclass(frozen=True)
class SeatTokens:
    """Every seat's credentials for one course, from the one secret; built once by the CLI and handed to
    whoever needs a token (providers, the roster), so nothing else holds the raw secret."""

    secret: str = field(repr=False)
    slug: str

    def token(self, seat: str) -> str:
        """The seat's Jupyter token (or keys.GATEWAY's, keys.NO_SEAT's)."""
        return keys.token(self.secret, self.slug, seat)

    def tls_key(self, seat: str) -> EllipticCurvePrivateKey:
        """The seat's VM TLS key (or keys.GATEWAY's), for its certificate and for pinning."""
        return keys.tls_key(self.secret, self.slug, seat)
