"""fleet.docker: the docker provider's settings, their checks, one seat's size and its cost (light: no SDK)."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

from coursekit import names
from coursekit.fleet import registry
from coursekit.sizes import memory_bytes

NAME = "docker"
PROVIDER = "coursekit.fleet.docker.provider:DockerProvider"
SCHEMA = Path(__file__).with_name("schema.json")
MIN_MEMORY = 6 * 2**20  # the Docker engine refuses less
MAX_MEMORY = 2**50
MIN_DISK, MAX_DISK = 64 * 2**20, 16 * 2**40  # a home's ext4 filesystem: room for its metadata, and ext4's own bound
MIN_CPUS = 0.01  # the engine's smallest CPU quota
MAX_PORT = 65535


@dataclass(frozen=True)
class DockerSettings:
    cpus: float
    memory: str
    bind: str
    public_host: str
    port_base: int
    concurrency: int
    access: str = "ports"  # or "gateway": one HTTPS front door
    https_port: int = 443
    http_port: int = 80
    gateway_base: str = "debian:bookworm-slim"
    disk: str | None = "5g"  # each home's room; None: unbounded
    subdomains: bool = False  # behind the gateway: each seat on its own origin, <seat>.<public_host>


def settings(raw: dict) -> DockerSettings:
    """fleet.docker as validated and defaulted."""
    return DockerSettings(**raw)


def problems(raw: dict, seats: int) -> Iterator[tuple[tuple, str]]:
    """What the schema cannot say about fleet.docker (paths relative to it)."""
    memory = raw.get("memory")
    if isinstance(memory, str):
        size = memory_bytes(memory)
        if size is None:
            yield ("memory",), f"{memory!r} is not a memory size (a number and a unit: 512m, 2g)"
        elif size < MIN_MEMORY:
            yield ("memory",), (
                f"{memory!r} is below 6m, the least the Docker engine accepts (0 does not mean unlimited); "
                "a Jupyter seat needs about 512m, give 1g or more"
            )
        elif size > MAX_MEMORY:
            yield ("memory",), f"{memory!r} is more memory than any host has; give the limit per seat, like 2g"
    disk = raw.get("disk")
    if isinstance(disk, str):
        size = memory_bytes(disk)
        if size is None:
            yield ("disk",), f"{disk!r} is not a size (a number and a unit: 512m, 5g); null means no limit"
        elif not MIN_DISK <= size <= MAX_DISK:
            yield ("disk",), (
                f"{disk!r} is outside {MIN_DISK >> 20}m to {MAX_DISK >> 40}t: give each home room for the course's data and "
                "the students' work, like 5g (null means no limit)")
    cpus = raw.get("cpus")
    if isinstance(cpus, (int, float)) and not isinstance(cpus, bool) and 0 < cpus < MIN_CPUS:
        yield ("cpus",), f"{cpus!r} is below {MIN_CPUS}, the smallest CPU share the Docker engine gives"
    bind = raw.get("bind")
    if isinstance(bind, str):
        try:
            ipaddress.ip_address(bind)
        except ValueError:
            yield ("bind",), (
                f"{bind!r} is not an IP address; use 127.0.0.1 (this machine only), 0.0.0.0 (every network) "
                "or one of the host's own addresses"
            )
    host = raw.get("public_host")
    if isinstance(host, str) and (why := names.host_problem(host)):
        yield ("public_host",), why
    if raw.get("subdomains") is True:
        if raw.get("access") != "gateway":
            yield ("subdomains",), "seats have their own origins only behind the gateway; set fleet.docker.access: gateway"
        elif isinstance(host, str) and names.is_address(host.strip("[]")):
            yield ("subdomains",), (
                f"public_host {host!r} is an address, which has no <seat>.{host} names; use a DNS name with a wildcard "
                "record (*.your-host pointing here), or localhost on a laptop")
    port_base = raw.get("port_base")
    if isinstance(port_base, int) and not isinstance(port_base, bool) and 1024 <= port_base <= MAX_PORT \
            and port_base + seats - 1 > MAX_PORT:
        yield ("port_base",), (
            f"{seats:,} seats from port {port_base} need ports up to {port_base + seats - 1}, past {MAX_PORT}; "
            f"use a port_base of {max(1024, MAX_PORT + 1 - seats)} or lower"
        )


def seat_size(fleet: registry.Fleetish) -> registry.SeatSize:
    """A seat's CPU and memory limits, as set."""
    s = fleet.sections[NAME]
    return registry.SeatSize(s.cpus, s.memory, "fleet.docker.memory")


def rates(fleet: registry.Fleetish) -> registry.Rates:
    """Your own host charges no SUs: what the same class would cost as VMs, for comparison."""
    as_vms = registry.section("openstack").rates(fleet)
    return replace(as_vms, note="provider is docker: your own host runs the fleet and no SUs are charged; "
                                "this is what Jetstream2 would cost.")


def object_store(settings: Any) -> None:
    """A Docker host has no object store."""
    return None


def write_cloud_config(settings: Any, output: Path | None, environ: Mapping[str, str]) -> None:
    """A Docker host needs no cloud credentials."""
    return None
