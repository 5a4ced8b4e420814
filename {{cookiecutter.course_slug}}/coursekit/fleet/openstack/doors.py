"""How students reach a VM seat, chosen once per command from fleet.openstack.access: the seat's own floating IP
(`floating-ip`), or the course's one gateway (`gateway`). Each door owns the seats' addresses, the client that
reaches a seat, the security rules, what a seat's user-data needs, route pushes, the gateway's status row and its
part of teardown; the provider never asks which door it has.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from coursekit import keys, labels
from coursekit.errors import CoursekitError
from coursekit.fleet import cloudinit, seattls
from coursekit.fleet.openstack.allocation import Allocation
from coursekit.fleet.openstack.gateway import GATEWAY, SEAT_PORT, OpenStackGateway
from coursekit.fleet.openstack.quota import Need
from coursekit.fleet.plan import Action, Kind, Outcome, SeatStatus
from coursekit.seatclient import SeatClient

HTTPS_PORT, HTTP_PORT, SSH_PORT = 443, 80, 22


@dataclass(frozen=True)
class Reach:
    """Where each seat is reached, read once: seats' own floating IPs, or the one address all of them share."""

    own: Mapping[str, Any] = field(default_factory=dict)
    shared: Any = None

    def get(self, seat: str) -> Any:
        """The floating IP seat is reached through (None: none yet)."""
        return self.shared if self.shared is not None else self.own.get(seat)


class Doors(ABC):
    """The course's way in to its seats."""

    def __init__(self, at: Allocation):
        self.at, self.cloud, self.settings = at, at.cloud, at.settings

    @abstractmethod
    def reach(self) -> Reach:
        """Where each seat is reached now."""

    @abstractmethod
    def url(self, seat: str, address: str) -> str:
        """The seat's link, reached at address."""

    @abstractmethod
    def client(self, seat: str, address: str) -> SeatClient:
        """The seat's Jupyter with its credential, over TLS checked first."""

    def fingerprint(self) -> list:
        """What the door adds to a seat's settings hash."""
        return []

    @abstractmethod
    def need(self, actions: list[Action], reach: Reach) -> Need:
        """What the door needs of the quota beyond the seats' VMs."""

    @abstractmethod
    def security_group(self) -> Any:
        """The seats' security group, created when missing."""

    @abstractmethod
    def user_data(self, seat: str, image: str, address: str) -> str:
        """The seat VM's cloud-init."""

    @abstractmethod
    def address_for(self, seat: str, reach: Reach, public_network: str) -> Any:
        """The floating IP a new seat is reached through (made when it has none)."""

    def attach(self, address: Any, server_id: str) -> None:
        """Point the seat's address at its (new) VM."""
        return None  # a hook: nothing to attach unless the door has per-seat addresses

    def release(self, address: Any) -> None:
        """Give back a removed seat's address."""
        return None  # a hook: nothing of the seat's own unless the door says so

    def open(self, actions: list[Action], reach: Reach, public_network: Callable[[], str]) -> tuple[str | None, Reach]:
        """Make ready what serves the seats before they boot: the id of a new server it made (if any), and where the
        seats are reached now."""
        return None, reach  # a hook: nothing serves the seats but themselves

    def sync(self, servers: list, created: str | None = None, image: str | None = None) -> list[Outcome]:
        """Bring what serves the seats in line with these servers (one outcome of its own, or none)."""
        return []

    def status_rows(self) -> list[SeatStatus]:
        """Rows for what serves the seats, after theirs."""
        return []

    def close(self, everything_removed: bool) -> None:
        """Teardown's part of the door, once the seats that could go are gone."""
        return None

    def remove_groups(self) -> None:
        """Delete the course's security groups (once no VM uses them)."""
        for group in self.cloud.security_groups(self.at.tag):
            self.cloud.delete_security_group(group)


class FloatingIPs(Doors):
    """Every seat on its own floating IP, with its own HTTPS (a DNS name's certificate, or one pinned to its key)."""

    def reach(self) -> Reach:
        found = self.cloud.floating_ips(self.at.tag)
        prefix = labels.SEAT_TAG_PREFIX
        return Reach({t.removeprefix(prefix): f for f in found for t in f.tags if t.startswith(prefix)})

    def url(self, seat: str, address: str) -> str:
        return f"https://{self.at.site(self.at.server_name(seat), address)}/"

    def client(self, seat: str, address: str) -> SeatClient:
        """A DNS name is checked against the public CAs, a bare address against the seat's pinned key."""
        if self.settings.dns_domain:
            return SeatClient(seat, f"https://{self.at.site(self.at.server_name(seat), address)}:{HTTPS_PORT}", self.at.tokens.token(seat))
        pinned = keys.public_key_der(self.at.tokens.tls_key(seat))
        return SeatClient(seat, f"https://{address}:{HTTPS_PORT}", self.at.tokens.token(seat), pinned)

    def need(self, actions: list[Action], reach: Reach) -> Need:
        return Need(fips=sum(a.kind in (Kind.CREATE, Kind.REPLACE) and reach.get(a.seat) is None for a in actions))

    def security_group(self) -> Any:
        """80 and 443 from anywhere, 22 only from fleet.openstack.ssh_cidrs."""
        existing = self.cloud.security_groups(self.at.tag)
        if existing:
            return existing[0]
        rules = [(HTTP_PORT, "0.0.0.0/0"), (HTTPS_PORT, "0.0.0.0/0")] + [(SSH_PORT, c) for c in self.settings.ssh_cidrs]
        return self.cloud.create_security_group(self.at.group_name, f"coursekit course {self.at.slug}: HTTPS to the seats",
                                                [self.at.tag], rules)

    def user_data(self, seat: str, image: str, address: str) -> str:
        name = self.at.server_name(seat)
        tls = None if self.settings.dns_domain else seattls.seat_certificate(self.at.tokens.tls_key(seat), seat, address)
        return cloudinit.user_data(seat, image, self.at.tokens.token(seat), self.at.site(name, address), name, tls)

    def address_for(self, seat: str, reach: Reach, public_network: str) -> Any:
        return reach.get(seat) or self.cloud.create_floating_ip(public_network, f"coursekit {self.at.slug} {seat}",
                                                                [self.at.tag, self.at.seat_tag(seat)])

    def attach(self, address: Any, server_id: str) -> None:
        self.cloud.attach_floating_ip(address, server_id)

    def release(self, address: Any) -> None:
        if address is not None:
            self.cloud.delete_floating_ip(address)


class Gateway(Doors):
    """Every seat behind the course's gateway VM, at https://<gateway>/<seat>/: seats have no address of their own
    and serve plain HTTP on the private network, to the gateway's security group only."""

    def __init__(self, at: Allocation):
        super().__init__(at)
        self.gateway = OpenStackGateway(at)

    def reach(self) -> Reach:
        return Reach(shared=self.gateway.fip())

    def url(self, seat: str, address: str) -> str:
        return self.gateway.seat_url(seat, address)

    def client(self, seat: str, address: str) -> SeatClient:
        return self.gateway.client(address, seat)

    def fingerprint(self) -> list:
        return ["gateway", SEAT_PORT]

    def need(self, actions: list[Action], reach: Reach) -> Need:
        """The gateway's one floating IP and, when it is missing, its VM."""
        fips = 0 if reach.shared is not None else 1
        if self.gateway.servers():
            return Need(fips=fips)
        flavor = self.cloud.find("flavor", self.settings.gateway_flavor)
        if flavor is None:
            raise CoursekitError(f"preflight failed:\n  gateway_flavor {self.settings.gateway_flavor!r} does not exist in cloud "
                                 f"{self.settings.cloud!r}")
        return Need(fips, servers=1, cores=flavor.vcpus, ram_gb=flavor.ram // 1024)

    def security_group(self) -> Any:
        return self.gateway.groups()[1]

    def user_data(self, seat: str, image: str, address: str) -> str:
        name = self.at.server_name(seat)
        return cloudinit.user_data(seat, image, self.at.tokens.token(seat), name, name, gateway_port=SEAT_PORT,
                                   mirror=self.gateway.mirror())

    def address_for(self, seat: str, reach: Reach, public_network: str) -> Any:
        if reach.shared is None:
            raise CoursekitError("the gateway has no floating IP yet; deploy again")
        return reach.shared

    def open(self, actions: list[Action], reach: Reach, public_network: Callable[[], str]) -> tuple[str | None, Reach]:
        if all(a.kind is Kind.REMOVE for a in actions):
            return None, reach
        created = self.gateway.ensure(public_network)[1]
        return created, self.reach()

    def sync(self, servers: list, created: str | None = None, image: str | None = None) -> list[Outcome]:
        """Attach the gateway's address once its VM is up, then put the routes of these servers on it."""
        started, action = time.monotonic(), "create" if created else "routes"
        fip = self.gateway.fip()
        server = next((s for s in servers if s.metadata.get(labels.META_ROLE) == GATEWAY), None)
        try:
            if fip is None or server is None or server.status != "ACTIVE":
                raise CoursekitError(f"the gateway is not up (VM {server.status if server else 'missing'}); deploy again")
            if fip.port_id is None:
                self.cloud.attach_floating_ip(fip, server.id)
                fip = self.gateway.fip(fresh=True)
            if not self.gateway.answers(fip.floating_ip_address):
                raise CoursekitError("the gateway does not answer yet")
            self.gateway.push(fip.floating_ip_address, self.gateway.routes(servers), image)
        except CoursekitError as exc:
            return [Outcome(GATEWAY, action, False, str(exc), time.monotonic() - started)]
        return [Outcome(GATEWAY, action, True, self.gateway.url(fip.floating_ip_address))]

    def status_rows(self) -> list[SeatStatus]:
        return [self.gateway.status_row()]

    def remove_groups(self) -> None:
        """The seats' group names the gateway's in a rule: it goes first."""
        for group in sorted(self.cloud.security_groups(self.at.tag), key=lambda g: g.name.endswith("-gateway")):
            self.cloud.delete_security_group(group)

    def close(self, everything_removed: bool) -> None:
        if everything_removed:
            self.gateway.remove()
        else:
            self.sync(self.at.servers())  # the seats that went are no longer routed


DOORS: dict[str, type[Doors]] = {"floating-ip": FloatingIPs, "gateway": Gateway}  # fleet.openstack.access → its door
