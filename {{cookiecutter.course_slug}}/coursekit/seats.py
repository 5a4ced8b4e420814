"""Roster → seats → credentials. Credentials are derived, never stored."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Iterable, Mapping

from coursekit.config import Course
from coursekit.errors import SecretError

SECRET_VARIABLE = "COURSEKIT_SECRET"
MIN_SECRET_LENGTH = 16
MAKE_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


@dataclass(frozen=True)
class Seat:
    """One environment: who it is for and what it is called."""

    id: str
    name: str
    role: str
    email: str = ""


def seats(course: Course) -> list[Seat]:
    """Every seat of the course: students, then instructors, then spare-1..N."""
    people = [Seat(p.id, p.name, "student", p.email) for p in course.seats.students]
    people += [Seat(p.id, p.name, "instructor", p.email) for p in course.seats.instructors]
    people += [Seat(f"spare-{n}", f"Spare {n}", "spare") for n in range(1, course.seats.spares + 1)]
    return people


def status_order(course: Course, found: Iterable[str]) -> list[str]:
    """Seat ids in roster order, then any found that the roster no longer has."""
    roster = [s.id for s in seats(course)]
    return roster + sorted(set(found) - set(roster))


def read_secret(environ: Mapping[str, str] = os.environ) -> str:
    """COURSEKIT_SECRET from the environment, or a SecretError saying how to make one."""
    secret = environ.get(SECRET_VARIABLE, "")
    if not secret:
        raise SecretError(
            f"{SECRET_VARIABLE} is not set. Every seat's credential is derived from this one secret. "
            f"Make one with\n  export {SECRET_VARIABLE}=$({MAKE_SECRET})\n"
            "keep it in your password manager, and add it to the repository's Actions secrets under the same name."
        )
    if len(secret) < MIN_SECRET_LENGTH:
        raise SecretError(
            f"{SECRET_VARIABLE} is only {len(secret)} characters; use at least {MIN_SECRET_LENGTH} random ones, "
            f"e.g. from {MAKE_SECRET}"
        )
    return secret


def credential(secret: str, slug: str, seat_id: str) -> str:
    """The seat's token: URL-safe base64 of HMAC-SHA256(secret, slug ':' seat id), 256 bits."""
    # ':' cannot occur in a slug or seat id, so ("ab", "c") and ("a", "bc") never collide.
    digest = hmac.new(secret.encode(), f"{slug}:{seat_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
