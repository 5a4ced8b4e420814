"""Fleets: one environment per seat, planned purely and applied by a provider."""
from __future__ import annotations

from coursekit.config import Course

PROVIDERS = ("docker", "openstack")


def fleet_for(course: Course, provider: str | None, secret: str):
    """The provider for course (--provider, else fleet.provider), connected; heavy SDKs load only here."""
    if (provider or course.fleet.provider) == "openstack":
        from coursekit.fleet.openstack import OpenStackFleet

        return OpenStackFleet(course, secret)
    from coursekit import engine
    from coursekit.fleet.dockerhost import DockerHost

    return DockerHost(engine.connect(), course, secret)
