"""The Jetstream2 gateway (`fleet.openstack.access: gateway`): one small VM holds the course's only floating IP.

It runs Caddy for https://<gateway>/<seat>/ and a control service (gatewayroutes.py) that takes the class's
routes from `coursekit deploy` with the gateway's own token, derived from COURSEKIT_SECRET: the gateway holds
no cloud credential, and no Nova metadata (255 characters a value, 128 items) limits the class's size. Seats
have no floating IP; their security group admits the gateway's group only, on the one port each seat serves
it (plain HTTP on the allocation's private network), and SSH from the gateway when ssh_cidrs opens it there.
"""
from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Callable

from coursekit import keys, labels
from coursekit.errors import CoursekitError
from coursekit.fleet import cloudinit, seattls
from coursekit.fleet.gateway import Route, seat_host
from coursekit.fleet.openstack.allocation import Allocation
from coursekit.fleet.openstack.cloud import POWERED_OFF, age
from coursekit.fleet.plan import SeatState, SeatStatus
from coursekit.seatclient import SeatClient, UntrustedSeat

GATEWAY = "gateway"  # the gateway's name in status rows and outcomes (a reserved seat id)
ROLE_TAG = "coursekit-role-gateway"
SEAT_PORT = 8080  # seats serve the gateway here
MIRROR_PORT = 5000  # the gateway's pull-through cache of the course image's registry, for the seats
ROUTES_PATH = "/coursekit/routes"
VERSION = 3  # bump when the gateway's software changes, so deploy replaces it (keeping its address)
HTTPS_PORT, HTTP_PORT, SSH_PORT = 443, 80, 22


def mirror_path(image: str) -> str:
    """An image reference as the gateway's cache serves it: the path without the registry's host (Docker Hub's
    official images under library/), as the seats' bootstrap computes it."""
    first, sep, rest = image.partition("/")
    has_host = bool(sep) and ("." in first or ":" in first or first == "localhost")
    path = rest if has_host else image
    docker_hub = not has_host or first in ("docker.io", "index.docker.io")
    return f"library/{path}" if docker_hub and "/" not in path.split(":", 1)[0] else path


def fixed_address(server) -> str | None:
    """The server's address on the allocation's private network."""
    for entries in (server.addresses or {}).values():
        for entry in entries:
            if entry.get("OS-EXT-IPS:type", "fixed") == "fixed" and entry.get("version", 4) == 4:
                return entry["addr"]
    return None


class OpenStackGateway:
    """The course's gateway VM, its floating IP and the two security groups, through the course's allocation."""

    def __init__(self, at: Allocation):
        self.at, self.cloud, self.settings = at, at.cloud, at.settings
        self.tags = f"{at.tag},{ROLE_TAG}"
        self.name = at.server_name(GATEWAY)
        self.pushed: str | None = None  # the routes last put, so an unchanged fleet puts nothing
        self._fip: object = None  # the gateway's floating IP as last read, until coursekit changes it
        self._mirror: str | None = None

    # Naming, credentials, addresses -----------------------------------------------------------------

    def site(self, address: str) -> str:
        return f"{self.name}.{self.settings.dns_domain}" if self.settings.dns_domain else address

    def url(self, address: str) -> str:
        return f"https://{self.site(address)}/"

    def seat_origin(self, seat: str, address: str) -> str:
        """https://<site> for a seat, or its own https://<seat>.<site> with subdomains."""
        site = self.site(address)
        return f"https://{seat_host(seat, site) if self.settings.subdomains else site}"

    def seat_url(self, seat: str, address: str) -> str:
        return f"{self.seat_origin(seat, address)}/{seat}/"

    def token(self) -> str:
        return self.at.tokens.token(keys.GATEWAY)

    def client(self, address: str, seat: str | None = None) -> SeatClient:
        """The gateway itself (its token), or a seat behind it (the seat's token), over TLS checked first."""
        base = f"{self.seat_origin(seat, address)}:{HTTPS_PORT}/{seat}" if seat else f"https://{self.site(address)}:{HTTPS_PORT}"
        token = self.at.tokens.token(seat) if seat else self.token()
        pinned = None if self.settings.dns_domain else keys.public_key_der(self.at.tokens.tls_key(keys.GATEWAY))
        return SeatClient(seat or GATEWAY, base, token, pinned)

    def fingerprint(self) -> str:
        s = self.settings
        text = json.dumps([s.gateway_flavor, s.image, s.network, s.key_name, sorted(s.ssh_cidrs), s.dns_domain, VERSION,
                           self.upstream(), *(["subdomains"] if s.subdomains else [])])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def upstream(self) -> str:
        """The registry the gateway caches: the course image's (Docker Hub's API lives at registry-1.docker.io)."""
        registry = self.at.course.image.registry
        return "https://registry-1.docker.io" if registry == "docker.io" else f"https://{registry}"

    def mirror(self) -> str | None:
        """host:port of the gateway's cache on the private network (None until the gateway has an address)."""
        if self._mirror is None:
            address = next((fixed_address(s) for s in self.servers() if fixed_address(s)), None)
            self._mirror = f"{address}:{MIRROR_PORT}" if address else None
        return self._mirror

    # What exists ---------------------------------------------------------------------------------------

    def fip(self, fresh: bool = False):
        """The gateway's floating IP (read once a command, and again after coursekit changed it)."""
        if self._fip is None or fresh:
            found = self.cloud.floating_ips(self.tags)
            self._fip = found[0] if found else None
        return self._fip

    def servers(self) -> list:
        return self.cloud.servers(self.tags)

    # Creating and healing ---------------------------------------------------------------------------------

    def groups(self) -> tuple[object, object]:
        """(the gateway's group, the seats' group), created when missing: HTTPS to the gateway from anywhere,
        the seats' one port from the gateway's group only."""
        existing = {g.name: g for g in self.cloud.security_groups(self.at.tag)}
        gateway_name, seats_name = f"{self.at.group_name}-gateway", self.at.group_name
        gateway = existing.get(gateway_name) or self.cloud.create_security_group(
            gateway_name, f"coursekit course {self.at.slug}: HTTPS to the gateway", [self.at.tag, ROLE_TAG],
            [(HTTP_PORT, "0.0.0.0/0"), (HTTPS_PORT, "0.0.0.0/0")] + [(SSH_PORT, c) for c in self.settings.ssh_cidrs])
        seats = existing.get(seats_name)
        if seats is None:
            seats = self.cloud.create_security_group(
                seats_name, f"coursekit course {self.at.slug}: the seats, from the gateway only", [self.at.tag],
                [(SEAT_PORT, f"group:{gateway.id}")] + ([(SSH_PORT, f"group:{gateway.id}")] if self.settings.ssh_cidrs else []))
            self.cloud.add_rules(gateway, [(MIRROR_PORT, f"group:{seats.id}")])  # the image cache, for seats only
        return gateway, seats

    def ensure(self, public_network_id: Callable[[], str]) -> tuple[object, str | None]:
        """The gateway's floating IP (kept for good: every link holds it) and its server; a server that is missing,
        in ERROR, stuck in BUILD or built with other settings is (re)created. Returns (fip, id of a new server)."""
        fip = self.fip()
        if fip is None:
            fip = self._fip = self.cloud.create_floating_ip(
                public_network_id(), f"coursekit {self.at.slug} gateway", self.tags.split(","))
        current = [s for s in self.servers() if s.status != "DELETED"]
        healthy = [s for s in current if not self._broken(s, fip)]
        for server in current:
            if server not in healthy[:1]:
                self.cloud.delete_server(server.id, "deleting the broken gateway")
        if healthy:
            return fip, None
        self.pushed = self._mirror = None
        created = self._create(fip.floating_ip_address)
        self._wait_for_address(created)
        return fip, created

    def _wait_for_address(self, server_id: str) -> None:
        """Until the new gateway has its private address: seats are told it, to pull through its cache."""
        deadline = time.monotonic() + self.at.boot_timeout
        while time.monotonic() < deadline:
            server = self.cloud.server(server_id)
            if address := fixed_address(server):
                self._mirror = f"{address}:{MIRROR_PORT}"
                return
            if server.status == "ERROR":
                raise CoursekitError(f"the gateway went into ERROR: {(server.fault or {}).get('message', '')}")
            time.sleep(self.settings.poll_seconds)
        raise CoursekitError("the gateway got no private address in time; deploy again")

    def _broken(self, server, fip) -> bool:
        if server.metadata.get(labels.META_SETTINGS) != self.fingerprint() or server.status == "ERROR":
            return True
        seconds = age(server)
        if server.status == "BUILD":
            return seconds >= self.at.boot_timeout
        if server.status == "ACTIVE" and fip.port_id and seconds >= self.at.boot_timeout:
            return not self.answers(fip.floating_ip_address)
        return False

    def _create(self, address: str) -> str:
        s = self.settings
        wanted = {"flavor": s.gateway_flavor, "image": s.image, "network": s.network}
        found = {kind: self.cloud.find(kind, name) for kind, name in wanted.items()}
        if missing := [f"{kind} {wanted[kind]!r}" for kind, value in found.items() if value is None]:
            raise CoursekitError(f"the gateway cannot be created: {', '.join(missing)} not found in cloud {s.cloud!r}")
        gateway_group, _ = self.groups()
        tls = None if s.dns_domain else seattls.seat_certificate(self.at.tokens.tls_key(keys.GATEWAY), GATEWAY, address)
        from coursekit.image import auth_from_env

        user_data = cloudinit.gateway_user_data(self.site(address), self.token(), self.name, tls, self.upstream(),
                                                auth_from_env(self.at.course.image.registry),
                                                title=self.at.course.course.name, subdomains=s.subdomains)
        attrs = dict(
            name=self.name, flavor_id=found["flavor"].id, image_id=found["image"].id, networks=[{"uuid": found["network"].id}],
            security_groups=[{"name": gateway_group.name}], user_data=base64.b64encode(user_data.encode()).decode(),
            metadata={labels.META_COURSE: self.at.slug, labels.META_ROLE: GATEWAY, labels.META_SETTINGS: self.fingerprint()},
            tags=self.tags.split(","), **({"key_name": s.key_name} if s.key_name else {}),
        )

        def existing():
            mine = [x for x in self.servers() if x.status not in ("DELETED", "ERROR")]
            return mine[0] if mine else None
        return self.cloud.create_server(existing, **attrs).id

    # Serving ------------------------------------------------------------------------------------------------

    def answers(self, address: str) -> bool:
        """The gateway's control service answers its token (the TLS key checked first)."""
        try:
            return self.client(address).get(ROUTES_PATH, timeout=3)[0] == 200
        except UntrustedSeat:
            return False

    def routes(self, servers: list) -> list[Route]:
        """One route per seat server with an address: its private address, or its paused page."""
        from coursekit.schedule import schedule_of

        until = schedule_of(self.at.course).wakes_at(datetime.now(timezone.utc))
        found = {}
        for server in servers:
            seat, address = server.metadata.get(labels.META_SEAT), fixed_address(server)
            if not seat or server.status == "DELETED" or address is None:
                continue
            paused = POWERED_OFF.get(server.status) == SeatState.PAUSED
            found[seat] = Route(seat, paused_until=until) if paused else Route(seat, f"{address}:{SEAT_PORT}")
        return [found[seat] for seat in sorted(found)]

    def push(self, address: str, routes: list[Route], image: str | None = None) -> None:
        """Put the routes on the gateway (nothing when they are what it already has), and the image the seats are
        about to pull, which the gateway pulls once into its cache first; CoursekitError if refused."""
        body = json.dumps({"routes": [asdict(r) for r in routes], **({"image": mirror_path(image)} if image else {})})
        if body == self.pushed:
            return
        try:
            code, answer = self.client(address).get(ROUTES_PATH, timeout=30, method="PUT", body=body.encode())
        except UntrustedSeat as exc:
            raise CoursekitError(str(exc)) from None
        if code != 200:
            raise CoursekitError(f"the gateway did not take the routes (HTTP {code or 'no answer'}: {(answer or {}).get('message', '')})")
        self.pushed = body

    def status_row(self) -> SeatStatus:
        servers, fip = self.servers(), self.fip()
        if not servers:
            return SeatStatus(GATEWAY, "missing", self.url(fip.floating_ip_address) if fip else "", "", "-", "-")
        server = servers[0]
        reachable = fip is not None and fip.port_id and server.status == "ACTIVE"
        health = "ok" if reachable and self.answers(fip.floating_ip_address) else ("no answer" if reachable else "-")
        return SeatStatus(GATEWAY, server.status.lower(), self.url(fip.floating_ip_address) if fip else "",
                          self.settings.gateway_flavor, health, "-")

    def remove(self) -> None:
        """Delete the gateway's server and release its floating IP (teardown, once no seat is left)."""
        for server in self.servers():
            self.cloud.delete_server(server.id, "deleting the gateway")
        if fip := self.fip(fresh=True):
            self.cloud.delete_floating_ip(fip)
        self._fip = None
