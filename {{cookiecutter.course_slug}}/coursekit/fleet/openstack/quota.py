"""Preflight for new VMs: the flavor, image and networks exist, and the allocation's quota holds every new seat
(and the gateway's share), or a clear error with the largest flavor that would fit."""
from __future__ import annotations

from dataclasses import dataclass

from coursekit.errors import CoursekitError
from coursekit.fleet.openstack.cloud import Cloud
from coursekit.fleet.openstack.section import FLAVORS, OpenStackSettings


@dataclass(frozen=True)
class Need:
    """What a deploy needs of the quota beyond its new seats' VMs."""

    fips: int = 0
    servers: int = 0
    cores: int = 0
    ram_gb: int = 0


def check(cloud: Cloud, s: OpenStackSettings, new_servers: int, need: Need) -> dict:
    """Check flavor, image, networks and quotas before creating anything; returns what was found by kind."""
    found = {
        "flavor": cloud.find("flavor", s.flavor),
        "image": cloud.find("image", s.image),
        "network": cloud.find("network", s.network),
        "public": cloud.find("network", "public"),
    }
    problems = [f"{what} {getattr(s, what, what)!r} does not exist in cloud {s.cloud!r}"
                for what, value in found.items() if value is None]
    if s.key_name and cloud.find("key pair", s.key_name) is None:
        problems.append(f"key pair {s.key_name!r} does not exist; create it or remove fleet.openstack.key_name")
    if problems:
        raise CoursekitError("preflight failed:\n" + "\n".join(f"  {p}" for p in problems))
    flavor = found["flavor"]
    limits = cloud.compute_limits()
    fip_quota = cloud.network_quota().floating_ips or {}
    checks = [
        ("instances", new_servers + need.servers, limits.instances - limits.instances_used),
        ("cores", new_servers * flavor.vcpus + need.cores, limits.total_cores - limits.total_cores_used),
        ("GB of RAM", new_servers * flavor.ram // 1024 + need.ram_gb, (limits.total_ram - limits.total_ram_used) // 1024),
        ("floating IPs", need.fips, fip_quota.get("limit", 0) - fip_quota.get("used", 0)),
    ]
    short = [f"needs {want} more {what}, quota allows {room}" for what, want, room in checks if want > room]
    if short:
        sized = checks[1][1] > checks[1][2] or checks[2][1] > checks[2][2]
        hint = what_fits(s.flavor, new_servers, flavor, checks[1][2] - need.cores, checks[2][2] - need.ram_gb, need) if sized else ""
        raise CoursekitError(
            "preflight failed: " + "; ".join(short) + f": {hint}ask your allocation's support for a raise or use fewer seats"
        )
    return found


def what_fits(name: str, seats: int, flavor, cores: int, ram_gb: int, need: Need) -> str:
    """The largest Jetstream2 CPU flavor whose VMs for every new seat fit the room left in the quota
    (cores and ram_gb: what is left once the gateway, when there is a new one, has its share)."""
    gateway = " and the gateway" if need.cores else ""
    wanted = (f"{seats} seats × {name}{gateway} need {seats * flavor.vcpus + need.cores} cores and "
              f"{seats * flavor.ram // 1024 + need.ram_gb} GB")
    candidates = sorted((f for f in FLAVORS.values() if f.name.startswith("m3.")), key=lambda f: f.vcpus, reverse=True)
    fits = next((f for f in candidates if seats * f.vcpus <= cores and seats * f.ram_gb <= ram_gb), None)
    if fits is None:
        return f"{wanted}; no flavor fits {seats} seats in {cores} cores, so "
    return f"{wanted}; {fits.name} fits ({seats * fits.vcpus} cores, {seats * fits.ram_gb} GB: set fleet.openstack.flavor), or "
