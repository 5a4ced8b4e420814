"""fleet.openstack: the openstack provider's settings, their checks, Jetstream2's flavors and SU rates, and the way
to its object store and credentials (light: openstacksdk is imported only when a connection is made)."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from coursekit import names
from coursekit.errors import CoursekitError
from coursekit.fleet import registry
from coursekit.fleet.openstack import cloudconfig

NAME = "openstack"
PROVIDER = "coursekit.fleet.openstack.provider:OpenStackProvider"
SCHEMA = Path(__file__).with_name("schema.json")


@dataclass(frozen=True)
class OpenStackSettings:
    cloud: str
    flavor: str
    image: str
    network: str
    ssh_cidrs: tuple[str, ...]
    concurrency: int
    boot_timeout_minutes: float
    poll_seconds: float
    key_name: str | None = None
    dns_domain: str | None = None
    access: str = "gateway"  # or "floating-ip": one per seat
    gateway_flavor: str = "m3.small"
    subdomains: bool = False  # behind the gateway: each seat on its own origin, <seat>.<gateway's site>


@dataclass(frozen=True)
class Flavor:
    name: str
    vcpus: int
    ram_gb: int
    su_per_vcpu_hour: int

    @property
    def su_per_hour(self) -> int:
        """SUs one VM of this flavor burns per hour."""
        return self.vcpus * self.su_per_vcpu_hour


# Jetstream2's published flavors: CPU 1 SU, large-memory 2 SU, GPU 4 SU per vCPU-hour.
FLAVORS = {
    f.name: f
    for f in (
        Flavor("m3.tiny", 1, 3, 1),
        Flavor("m3.small", 2, 6, 1),
        Flavor("m3.quad", 4, 15, 1),
        Flavor("m3.medium", 8, 30, 1),
        Flavor("m3.large", 16, 60, 1),
        Flavor("m3.xl", 32, 125, 1),
        Flavor("m3.2xl", 64, 250, 1),
        Flavor("r3.large", 64, 500, 2),
        Flavor("r3.xl", 128, 1000, 2),
        Flavor("g3.small", 4, 15, 4),
        Flavor("g3.medium", 8, 30, 4),
        Flavor("g3.large", 16, 60, 4),
        Flavor("g3.xl", 32, 120, 4),
    )
}


def flavor(name: str) -> Flavor:
    """The published flavor called name; CoursekitError for an unknown one."""
    try:
        return FLAVORS[name]
    except KeyError:
        raise CoursekitError(
            f"course.yaml: fleet.openstack.flavor: {name!r} is not a Jetstream2 flavor; use one of {', '.join(FLAVORS)}"
        ) from None


def settings(raw: dict) -> OpenStackSettings:
    """fleet.openstack as validated and defaulted."""
    return OpenStackSettings(**{**raw, "ssh_cidrs": tuple(raw["ssh_cidrs"])})


def problems(raw: dict, seats: int) -> Iterator[tuple[tuple, str]]:
    """What the schema cannot say about fleet.openstack (paths relative to it)."""
    domain = raw.get("dns_domain")
    # It becomes part of every seat's site name (URLs, certificates, the VM's web server config).
    if isinstance(domain, str) and (names.host_problem(domain) or "." not in domain or names.is_address(domain)):
        yield ("dns_domain",), (
            f"{domain!r} is not a DNS zone (write it like tra160003.projects.jetstream-cloud.org; no scheme, port or path)"
        )
    if raw.get("subdomains") is True and (raw.get("access") == "floating-ip" or not isinstance(domain, str)):
        yield ("subdomains",), (
            "seats have their own origins only behind the gateway and with a DNS zone: set fleet.openstack.access: gateway "
            "and fleet.openstack.dns_domain (and a wildcard record *.<gateway's name>.<zone> for the gateway's address)")
    cidrs = raw.get("ssh_cidrs")
    for i, cidr in enumerate(cidrs if isinstance(cidrs, list) else []):
        if not isinstance(cidr, str):
            continue
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            yield ("ssh_cidrs", i), f"{cidr!r} is not a network (write it like 203.0.113.0/24)"


def seat_size(fleet: registry.Fleetish) -> registry.SeatSize:
    """A VM seat has its whole flavor."""
    chosen = flavor(fleet.sections[NAME].flavor)
    return registry.SeatSize(float(chosen.vcpus), f"{chosen.ram_gb}g", f"the flavor {chosen.name}, fleet.openstack.flavor")


def rates(fleet: registry.Fleetish) -> registry.Rates:
    """SUs per hour: a VM of the flavor per seat, and the gateway's, always on (it shows paused seats their page)."""
    s = fleet.sections[NAME]
    chosen = flavor(s.flavor)
    gateway = (("gateway", flavor(s.gateway_flavor).su_per_hour),) if s.access == "gateway" else ()
    return registry.Rates(f"Jetstream2 cost ({chosen.name}, {chosen.su_per_hour} SU/hour per VM)", f"VMs of {chosen.name}",
                          chosen.su_per_hour, gateway)


def object_store(settings: OpenStackSettings) -> Any:
    """The cloud of fleet.openstack.cloud, whose Swift holds swift:// archives."""
    from coursekit.fleet.openstack.cloud import Cloud

    return Cloud.connect(settings.cloud)


def write_cloud_config(settings: OpenStackSettings, output: Path | None, environ: Mapping[str, str]) -> str:
    """clouds.yaml for fleet.openstack.cloud from the application credential in environ; what was written."""
    if settings.cloud == "envvars":
        return "fleet.openstack.cloud is envvars: openstacksdk reads the OS_* variables; no clouds.yaml written"
    path = cloudconfig.write(output or cloudconfig.DEFAULT_PATH, cloudconfig.clouds_yaml(settings.cloud, environ))
    found = cloudconfig.settings(environ)
    return f"wrote {path} (owner-only): cloud {settings.cloud!r} at {found['OS_AUTH_URL']}, region {found['OS_REGION_NAME']}"
