"""Fleets: one environment per seat, planned purely and applied by a provider."""
from __future__ import annotations

from coursekit.config import Course
from coursekit.errors import CoursekitError

PROVIDERS = ("docker",)


def provider_name(course: Course, override: str | None) -> str:
    """The provider to use: --provider, else course.yaml's fleet.provider; only ones this version has."""
    name = override or course.fleet.provider
    if name not in PROVIDERS:
        raise CoursekitError(
            f"fleet.provider {name!r}: this version of coursekit runs fleets on one Docker host only; "
            "use --provider docker (the openstack provider for Jetstream2 is not included yet)"
        )
    return name


def docker_fleet(course: Course, secret: str):
    """The docker provider for course, connected to the local engine."""
    from coursekit import engine
    from coursekit.fleet.dockerhost import DockerHost

    return DockerHost(engine.connect(), course, secret)
