"""The course in its cloud: one connection, fleet.openstack, the seats' keys, and the names and tags it uses.

The provider, its front doors, the gateway and the boot loop share one of these instead of reaching into each other.
"""
from __future__ import annotations

from dataclasses import dataclass

from coursekit import labels, names
from coursekit.config import Course
from coursekit.fleet.openstack.cloud import Cloud
from coursekit.fleet.openstack.section import OpenStackSettings
from coursekit.seats import SeatTokens


@dataclass(frozen=True)
class Allocation:
    """Everything a part of the openstack provider needs to act for the course."""

    cloud: Cloud
    course: Course
    tokens: SeatTokens

    @property
    def settings(self) -> OpenStackSettings:
        return self.course.fleet.openstack

    @property
    def slug(self) -> str:
        return self.course.course.slug

    @property
    def tag(self) -> str:
        """The tag on everything of the course."""
        return f"{labels.COURSE_TAG_PREFIX}{self.slug}"

    @property
    def group_name(self) -> str:
        """The seats' security group."""
        return f"coursekit-{self.slug}"

    @property
    def boot_timeout(self) -> float:
        return self.settings.boot_timeout_minutes * 60

    def server_name(self, seat: str) -> str:
        """The VM's name, which Jetstream2 also makes its DNS name: distinct for every (course, seat)."""
        return names.instance_name(self.slug, seat)

    def seat_tag(self, seat: str) -> str:
        return f"{labels.SEAT_TAG_PREFIX}{seat}"

    def servers(self) -> list:
        """Every server of the course (seats and gateway), one API call."""
        return self.cloud.servers(self.tag)

    def site(self, name: str, address: str) -> str:
        """The host name of a VM called name: name.<dns_domain>, else its bare address."""
        return f"{name}.{self.settings.dns_domain}" if self.settings.dns_domain else address

    def wake(self, server_id: str, status: str | None = None) -> None:
        """Bring a VM that is off back as nova says for its status; its disk, and the student's work on it, stays."""
        self.cloud.wake(server_id, status or self.cloud.server(server_id).status)
