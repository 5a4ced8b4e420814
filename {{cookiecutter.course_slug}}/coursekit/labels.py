"""Every label, tag and metadata key coursekit puts on what it creates, in one place.

Resources are found by exact values of these keys (never by name prefix or substring): a course's
slug and a seat's id each sit in a value of their own, so no two (course, seat) pairs can match.
"""
from __future__ import annotations

# Docker labels (images, containers, volumes, networks).
COURSE = "org.coursekit.course"
SEAT = "org.coursekit.seat"
ROLE = "org.coursekit.role"  # seat | image-test | archive-helper
SETTINGS = "org.coursekit.settings"
PORT = "org.coursekit.port"
DISK = "org.coursekit.disk"  # a bounded home volume's size, as course.yaml gave it
REVISION = "org.opencontainers.image.revision"

# Tags and server metadata on a cloud's resources (VM providers).
COURSE_TAG_PREFIX = "coursekit-course-"
SEAT_TAG_PREFIX = "coursekit-seat-"
META_COURSE = "coursekit-course"
META_SEAT = "coursekit-seat"
META_IMAGE = "coursekit-image"
META_SETTINGS = "coursekit-settings"
META_SERVED = "coursekit-served"  # "yes" once the seat answered: from then on its disk may hold work
META_ROLE = "coursekit-role"  # "gateway" on the course's gateway VM (seats carry META_SEAT instead)
META_PAUSED = "coursekit-paused-at"  # when `pause` or the schedule shelved it (ISO 8601, UTC); "" once awake again


def course_filter(slug: str, role: str | None = None, seat: str | None = None) -> dict[str, list[str]]:
    """A Docker label filter matching exactly this course (and role, and seat, when given)."""
    wanted = [f"{COURSE}={slug}"] + ([f"{ROLE}={role}"] if role else []) + ([f"{SEAT}={seat}"] if seat else [])
    return {"label": wanted}
