"""The openstack provider: one VM per seat (Jetstream2 or any OpenStack cloud) through openstacksdk.

Everything it creates carries the course's tag (servers, floating IPs, the security group), and each
server's metadata names its seat, so any machine with clouds.yaml and COURSEKIT_SECRET finds the fleet.
Creates run with bounded concurrency; one shared poll of the course's servers follows every boot, so
API requests in flight are bounded, not boots in flight.
"""
from __future__ import annotations

import base64
import hashlib
import json
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

from coursekit import archive, keys, labels, names
from coursekit.archivestore import ArchiveStore, archive_to
from coursekit.config import Course
from coursekit.errors import CoursekitError
from coursekit.fleet import cloudinit, homestream, seattls
from coursekit.fleet.cloud import POWERED_OFF, Cloud
from coursekit.fleet.osgateway import GATEWAY, SEAT_PORT, FrontDoor, FrontDoors, OpenStackGateway
from coursekit.fleet.plan import Action, Kind, Observed, Outcome, SeatState, SeatStatus
from coursekit.fleet.progress import SeatProgress
from coursekit.fleet.provider import Provider, spool_work
from coursekit.parallel import each
from coursekit.schedule import activity_text, jupyter_clocks, parse_time
from coursekit.seatclient import SeatClient, UntrustedSeat
from coursekit.seats import SeatTokens

HTTPS_PORT = 443
SEAT_REPORT = "/coursekit/seat.json"
HOME_TAR = "/coursekit/home.tar"
SSH_PORT, HTTP_PORT = 22, 80


@dataclass
class _Seat:
    """A seat's journey through one apply."""

    action: Action
    fip: object = None
    server_id: str | None = None
    recreated: bool = False
    attached: bool = False
    started: float = field(default_factory=time.monotonic)
    outcome: Outcome | None = None

    def finish(self, ok: bool, detail: str) -> Outcome:
        """The seat's outcome, timed from its (re)creation."""
        return Outcome(self.action.seat, self.action.kind.value, ok, detail, time.monotonic() - self.started)



class OpenStackProvider(Provider):
    """Reconciles the course's seats as VMs."""

    name = "openstack"

    def __init__(self, course: Course, tokens: SeatTokens, connection=None, backoff: float = 1.0):
        super().__init__(course, tokens)
        self.settings = course.fleet.openstack
        self.tag = f"{labels.COURSE_TAG_PREFIX}{self.slug}"
        self.group_name = f"coursekit-{self.slug}"
        self.boot_timeout = self.settings.boot_timeout_minutes * 60
        self.cloud = Cloud(connection, backoff) if connection is not None else Cloud.connect(self.settings.cloud, backoff)
        self.gateway = OpenStackGateway(self) if self.settings.access == "gateway" else None

    @classmethod
    def connect(cls, course: Course, tokens: SeatTokens) -> OpenStackProvider:
        return cls(course, tokens)

    # Names and addresses -----------------------------------------------------------------------

    def server_name(self, seat: str) -> str:
        """The VM's name, which Jetstream2 also makes its DNS name: distinct for every (course, seat)."""
        return names.instance_name(self.slug, seat)

    def seat_tag(self, seat: str) -> str:
        return f"{labels.SEAT_TAG_PREFIX}{seat}"

    def site(self, seat: str, address: str) -> str:
        return f"{self.server_name(seat)}.{self.settings.dns_domain}" if self.settings.dns_domain else address

    def url(self, seat: str, address: str) -> str:
        """The seat's link: its own host, or its path behind the gateway (address: the gateway's then)."""
        return self.gateway.seat_url(seat, address) if self.gateway else f"https://{self.site(seat, address)}/"

    def fingerprint(self) -> str:
        s = self.settings
        text = json.dumps([s.flavor, s.image, s.network, s.key_name, sorted(s.ssh_cidrs), s.dns_domain]
                          + (["gateway", SEAT_PORT] if self.gateway else []))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def resolve_image(self, ref: str) -> str:
        """VMs pull the image themselves: the reference is what is desired."""
        return ref

    # Observing ----------------------------------------------------------------------------------

    def _servers(self) -> list:
        return self.cloud.servers(self.tag)

    def _fips(self) -> Mapping[str, object]:
        """seat → the floating IP it is reached through: its own, or the gateway's for every seat."""
        if self.gateway:
            return self.gateway.doors()
        found = self.cloud.floating_ips(self.tag)
        return {t.removeprefix(labels.SEAT_TAG_PREFIX): f for f in found for t in f.tags if t.startswith(labels.SEAT_TAG_PREFIX)}

    def client(self, seat: str, address: str) -> SeatClient:
        """The seat's Jupyter: a DNS name is checked against the public CAs, a bare address against the seat's pinned key
        (behind the gateway: the gateway's name or key)."""
        if self.gateway:
            return self.gateway.client(address, seat)
        if self.settings.dns_domain:
            return SeatClient(seat, f"https://{self.site(seat, address)}:{HTTPS_PORT}", self.token(seat))
        pinned = keys.public_key_der(self.tokens.tls_key(seat))
        return SeatClient(seat, f"https://{address}:{HTTPS_PORT}", self.token(seat), pinned)

    def _get(self, seat: str, address: str, path: str, timeout: float = 5) -> tuple[int, dict | None]:
        return self.client(seat, address).get(path, timeout)

    def _probe(self, seat: str, address: str, timeout: float = 5) -> int:
        return self._get(seat, address, "/api/status", timeout)[0]

    def _running_image(self, seat: str, address: str, timeout: float = 5) -> str | None:
        """The image the VM says it runs (the bootstrap writes it; Caddy serves it with the token)."""
        status, body = self._get(seat, address, SEAT_REPORT, timeout)
        return body.get("image") if status == 200 and isinstance(body, dict) else None

    def _age(self, server) -> float:
        created = datetime.fromisoformat(server.created_at.replace("Z", "+00:00"))
        return (datetime.now(timezone.utc) - created).total_seconds()

    def _observe(self, server, fips: dict) -> Observed:
        seat = server.metadata.get(labels.META_SEAT, "")
        fip = fips.get(seat)
        served = server.metadata.get(labels.META_SERVED) == "yes"  # a VM that never answered holds no work yet
        state, detail = SeatState.STOPPED, f"VM {server.status}"
        image = server.metadata.get(labels.META_IMAGE, "")  # what was asked of the VM
        clocks, paused_at = {}, None
        if server.status == "ACTIVE" and fip is not None and fip.port_id:
            try:
                answer, body = self._get(seat, fip.floating_ip_address, "/api/status")
            except UntrustedSeat as exc:
                answer, state, detail = -1, SeatState.FAILED, str(exc)
            if answer == 200:
                state, detail, clocks = SeatState.RUNNING, "", jupyter_clocks(body)
                image = self._running_image(seat, fip.floating_ip_address) or image
            elif answer == -1:
                served = True  # cannot tell what it holds: treat it as holding work
            elif self._age(server) < self.boot_timeout:
                state = SeatState.STARTING
            else:
                state, detail = SeatState.FAILED, "the VM is up but Jupyter does not answer on HTTPS"
        elif server.status == "ACTIVE":
            state, detail = SeatState.STARTING, "floating IP not attached yet"  # deploy attaches it; no need to replace
        elif server.status == "BUILD":
            stuck = self._age(server) >= self.boot_timeout
            state = SeatState.FAILED if stuck else SeatState.STARTING
            detail = f"stuck in BUILD for {self._age(server) / 60:.1f} minutes" if stuck else ""
        elif server.status == "ERROR":
            state, detail = SeatState.FAILED, f"VM in ERROR: {(server.fault or {}).get('message', 'no fault given')}"
        elif server.status in POWERED_OFF:
            state, detail = POWERED_OFF[server.status], f"VM {server.status}"
            paused_at = parse_time(server.metadata.get(labels.META_PAUSED))
        return Observed(seat, server.id, image, server.metadata.get(labels.META_SETTINGS, ""), state, detail, holds_work=served,
                        paused_at=paused_at, **clocks)

    def observe(self) -> list[Observed]:
        """The course's VMs as they are (2 API calls, whatever the fleet's size)."""
        fips = self._fips()
        return each(lambda server: self._observe(server, fips), [s for s in self._servers() if s.metadata.get(labels.META_SEAT)])

    # Preflight ----------------------------------------------------------------------------------

    def _check_cloud(self, actions: list[Action], fips: dict) -> dict:
        """Check flavor, image, networks and quotas before creating anything; returns what was found."""
        s = self.settings
        found = {
            "flavor": self.cloud.find("flavor", s.flavor),
            "image": self.cloud.find("image", s.image),
            "network": self.cloud.find("network", s.network),
            "public": self.cloud.find("network", "public"),
        }
        problems = [f"{what} {getattr(s, what, what)!r} does not exist in cloud {s.cloud!r}"
                    for what, value in found.items() if value is None]
        if s.key_name and self.cloud.find("key pair", s.key_name) is None:
            problems.append(f"key pair {s.key_name!r} does not exist; create it or remove fleet.openstack.key_name")
        if problems:
            raise CoursekitError("preflight failed:\n" + "\n".join(f"  {p}" for p in problems))
        new_servers = sum(a.kind is Kind.CREATE for a in actions)
        flavor = found["flavor"]
        extra_cores = extra_ram = extra_servers = 0
        if self.gateway:  # the gateway's one floating IP and, when it is missing, its VM
            new_fips = 0 if isinstance(fips, FrontDoors) and fips.door else 1
            if not self.gateway.servers():
                gateway_flavor = self.cloud.find("flavor", s.gateway_flavor)
                if gateway_flavor is None:
                    raise CoursekitError(f"preflight failed:\n  gateway_flavor {s.gateway_flavor!r} does not exist in cloud {s.cloud!r}")
                extra_servers, extra_cores, extra_ram = 1, gateway_flavor.vcpus, gateway_flavor.ram // 1024
        else:
            new_fips = sum(a.kind in (Kind.CREATE, Kind.REPLACE) and a.seat not in fips for a in actions)
        limits = self.cloud.compute_limits()
        quota = self.cloud.network_quota()
        fip_quota = quota.floating_ips or {}
        checks = [
            ("instances", new_servers + extra_servers, limits.instances - limits.instances_used),
            ("cores", new_servers * flavor.vcpus + extra_cores, limits.total_cores - limits.total_cores_used),
            ("GB of RAM", new_servers * flavor.ram // 1024 + extra_ram, (limits.total_ram - limits.total_ram_used) // 1024),
            ("floating IPs", new_fips, fip_quota.get("limit", 0) - fip_quota.get("used", 0)),
        ]
        short = [f"needs {need} more {what}, quota allows {room}" for what, need, room in checks if need > room]
        if short:
            sized = checks[1][1] > checks[1][2] or checks[2][1] > checks[2][2]
            hint = self._what_fits(new_servers, flavor, checks[1][2] - extra_cores, checks[2][2] - extra_ram,
                                   extra_cores, extra_ram) if sized else ""
            raise CoursekitError(
                "preflight failed: " + "; ".join(short) + f": {hint}ask your allocation's support for a raise or use fewer seats"
            )
        return found

    def _what_fits(self, seats: int, flavor, cores: int, ram_gb: int, gateway_cores: int = 0, gateway_ram: int = 0) -> str:
        """The largest Jetstream2 CPU flavor whose VMs for every new seat fit the room left in the quota
        (cores and ram_gb: what is left once the gateway, when there is a new one, has its share)."""
        from coursekit.cost import FLAVORS

        gateway = " and the gateway" if gateway_cores else ""
        need = (f"{seats} seats × {self.settings.flavor}{gateway} need {seats * flavor.vcpus + gateway_cores} cores and "
                f"{seats * flavor.ram // 1024 + gateway_ram} GB")
        candidates = sorted((f for f in FLAVORS.values() if f.name.startswith("m3.")), key=lambda f: f.vcpus, reverse=True)
        fits = next((f for f in candidates if seats * f.vcpus <= cores and seats * f.ram_gb <= ram_gb), None)
        if fits is None:
            return f"{need}; no flavor fits {seats} seats in {cores} cores, so "
        return f"{need}; {fits.name} fits ({seats * fits.vcpus} cores, {seats * fits.ram_gb} GB: set fleet.openstack.flavor), or "

    def _security_group(self) -> object:
        """The seats' security group: 80 and 443 from anywhere, 22 only from fleet.openstack.ssh_cidrs (behind the
        gateway: only the gateway's group, on the seats' one port)."""
        if self.gateway:
            return self.gateway.groups()[1]
        existing = self.cloud.security_groups(self.tag)
        if existing:
            return existing[0]
        rules = [(HTTP_PORT, "0.0.0.0/0"), (HTTPS_PORT, "0.0.0.0/0")] + [(SSH_PORT, c) for c in self.settings.ssh_cidrs]
        return self.cloud.create_security_group(self.group_name, f"coursekit course {self.slug}: HTTPS to the seats",
                                                [self.tag], rules)

    # Applying -----------------------------------------------------------------------------------

    def _create_server(self, item: _Seat, image: str, found: dict, group) -> None:
        seat = item.action.seat
        address = item.fip.floating_ip_address
        if self.gateway:  # plain HTTP on the private network, to the gateway only: no certificate of its own
            user_data = cloudinit.user_data(seat, image, self.token(seat), self.server_name(seat), self.server_name(seat),
                                            gateway_port=SEAT_PORT, mirror=self.gateway.mirror())
        else:
            tls = None if self.settings.dns_domain else seattls.seat_certificate(self.tokens.tls_key(seat), seat, address)
            user_data = cloudinit.user_data(seat, image, self.token(seat), self.site(seat, address), self.server_name(seat), tls)
        attrs = dict(
            name=self.server_name(seat), flavor_id=found["flavor"].id, image_id=found["image"].id,
            networks=[{"uuid": found["network"].id}], security_groups=[{"name": group.name}],
            user_data=base64.b64encode(user_data.encode()).decode(),  # the proxy layer does not encode it
            metadata={labels.META_COURSE: self.slug, labels.META_SEAT: seat, labels.META_IMAGE: image,
                      labels.META_SETTINGS: self.fingerprint()},
            tags=[self.tag, self.seat_tag(seat)],
            **({"key_name": self.settings.key_name} if self.settings.key_name else {}),
        )
        def existing():
            # The server may exist despite a 5xx: look it up by tag before any retry.
            mine = self.cloud.servers(f"{self.tag},{self.seat_tag(seat)}")
            return mine[0] if mine else None

        item.server_id = self.cloud.create_server(existing, **attrs).id

    def _floating_ip(self, seat: str, fips: Mapping, found: dict):
        if seat in fips:
            return fips[seat]
        if self.gateway:
            raise CoursekitError("the gateway has no floating IP yet; deploy again")
        return self.cloud.create_floating_ip(found["public"].id, f"coursekit {self.slug} {seat}", [self.tag, self.seat_tag(seat)])

    def _launch(self, item: _Seat, image: str, found: dict, group, fips: dict, store: ArchiveStore, progress: SeatProgress) -> None:
        seat = item.action.seat
        try:
            if item.action.kind is Kind.REPLACE:
                progress.update(seat, "replacing", item.action.reason)
                if item.action.observed.state is SeatState.RUNNING:  # a VM's disk goes with it: save the work first
                    done = self._archive_at(seat, fips[seat].floating_ip_address, store)
                    progress.update(seat, "replacing", f"work archived to {done.path}")
                self.cloud.delete_server(item.action.observed.instance_id, "deleting the old VM")
            item.fip = self._floating_ip(seat, fips, found)
            progress.update(seat, "creating", item.fip.floating_ip_address)
            self._create_server(item, image, found, group)
            progress.update(seat, "building")
        except CoursekitError as exc:
            item.outcome = Outcome(seat, item.action.kind.value, False, str(exc), time.monotonic() - item.started)
            progress.update(seat, "FAILED", str(exc)[:120])

    def _wake_server(self, server_id: str, status: str | None = None) -> None:
        """Bring a VM that is off back as nova says for its status; its disk, and the student's work on it, stays."""
        self.cloud.wake(server_id, status or self.cloud.server(server_id).status)

    def _wake(self, action: Action, fips: dict, progress: SeatProgress) -> _Seat:
        """Wake a seat whose disk holds work; it is done when Jupyter answers again, as after a boot."""
        item = _Seat(action, fip=fips.get(action.seat), server_id=action.observed.instance_id, attached=True)
        try:
            if item.fip is None:
                raise CoursekitError("it has no floating IP to be reached through")
            self._wake_server(item.server_id)
            progress.update(action.seat, "waking", action.observed.detail)
        except CoursekitError as exc:
            item.outcome = item.finish(False, str(exc))
        return item

    def _update(self, action: Action, image: str, fips: dict, progress: SeatProgress) -> _Seat:
        """Ask the VM for the new image through its metadata; its updater swaps the container and keeps
        the home folder. The seat is done when the VM reports the new image and Jupyter answers."""
        seat = action.seat
        item = _Seat(action, fip=fips.get(seat), server_id=action.observed.instance_id, attached=True)
        try:
            self.cloud.set_metadata(item.server_id, "asking the VM for the new image", **{labels.META_IMAGE: image})
            progress.update(seat, "updating", "the VM pulls the new image; the home folder stays")
        except CoursekitError as exc:
            item.outcome = item.finish(False, str(exc))
        return item

    def _attach(self, item: _Seat) -> None:
        if not isinstance(item.fip, FrontDoor):  # behind the gateway a seat has no address of its own
            self.cloud.attach_floating_ip(item.fip, item.server_id)

    def apply(self, actions: list[Action], image: str, store: ArchiveStore) -> list[Outcome]:
        """Preflight, then create/replace with bounded concurrency, one shared poll until every seat answers."""
        outcomes: dict[str, Outcome] = {}
        work = [a for a in actions if a.kind in (Kind.CREATE, Kind.REPLACE)]
        fips = self._fips() if work or any(a.kind in (Kind.REMOVE, Kind.UPDATE, Kind.WAKE) for a in actions) or self.gateway else {}
        found = self._check_cloud(actions, fips) if work else {}
        new_gateway = None
        if self.gateway and any(a.kind is not Kind.REMOVE for a in actions):
            _, new_gateway = self.gateway.ensure(lambda: (found.get("public") or self.cloud.find("network", "public")).id)
            fips = self._fips()
        group = self._security_group() if work else None
        items = [_Seat(a) for a in work]
        with SeatProgress([a.seat for a in actions], f"deploy {self.slug}") as progress:
            for action in actions:
                if action.kind is Kind.KEEP:
                    progress.update(action.seat, "ready" if action.observed.state is SeatState.RUNNING else "starting")
                elif action.kind is Kind.BLOCKED:
                    outcomes[action.seat] = Outcome(action.seat, "blocked", False, action.reason)
                    progress.update(action.seat, "LEFT IN PLACE", action.observed.detail[:120])
                elif action.kind is Kind.REMOVE:
                    outcomes[action.seat] = self._remove(action, fips, store, progress)
            with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
                for future in [pool.submit(self._launch, i, image, found, group, fips, store, progress) for i in items]:
                    future.result()
                updates = [a for a in actions if a.kind is Kind.UPDATE]
                updating = list(pool.map(lambda a: self._update(a, image, fips, progress), updates))
                waking = list(pool.map(lambda a: self._wake(a, fips, progress), [a for a in actions if a.kind is Kind.WAKE]))
            waiting = [i for i in items if i.outcome is None] + updating + waking
            waiting += [_Seat(a, fip=fips.get(a.seat) or self._fips().get(a.seat), server_id=a.observed.instance_id)
                        for a in actions if a.kind is Kind.KEEP and a.observed.state is SeatState.STARTING]
            self._wait(waiting, image, found, group, progress, new_gateway)
            if self.gateway:
                outcomes[GATEWAY] = self._route(self._servers(), new_gateway, image or None)
            for item in items + waiting + waking:
                if item.outcome:
                    outcomes[item.action.seat] = item.outcome
        for action in actions:
            if action.kind is Kind.KEEP and action.seat not in outcomes:
                fip = fips.get(action.seat)
                outcomes[action.seat] = Outcome(action.seat, "keep", True, self.url(action.seat, fip.floating_ip_address) if fip else "up to date")
        return [outcomes[a.seat] for a in actions if a.seat in outcomes] + ([outcomes[GATEWAY]] if GATEWAY in outcomes else [])

    def _route(self, servers: list, new_gateway: str | None = None, image: str | None = None) -> Outcome:
        """Attach the gateway's address once its VM is up, then put the routes of these servers on it."""
        started = time.monotonic()
        fip = self.gateway.fip()
        gateway = next((s for s in servers if s.metadata.get(labels.META_ROLE) == GATEWAY), None)
        try:
            if fip is None or gateway is None or gateway.status != "ACTIVE":
                raise CoursekitError(f"the gateway is not up (VM {gateway.status if gateway else 'missing'}); deploy again")
            if fip.port_id is None:
                self.cloud.attach_floating_ip(fip, gateway.id)
                fip = self.gateway.fip(fresh=True)
            if not self.gateway.answers(fip.floating_ip_address):
                raise CoursekitError("the gateway does not answer yet")
            self.gateway.push(fip.floating_ip_address, self.gateway.routes(servers), image)
        except CoursekitError as exc:
            return Outcome(GATEWAY, "create" if new_gateway else "routes", False, str(exc), time.monotonic() - started)
        return Outcome(GATEWAY, "create" if new_gateway else "routes", True, self.gateway.url(fip.floating_ip_address))

    def _wait(self, waiting: list[_Seat], image: str, found: dict, group, progress: SeatProgress,
              new_gateway: str | None = None) -> None:
        """Poll the course's servers (one call per round for all seats) until each seat answers or fails;
        the follow-up work of a round (attach, recreate, probe) runs with bounded concurrency. Behind a gateway
        each round also brings the gateway up and puts the routes of the seats that have addresses on it."""
        gateway_ready = self.gateway is None or new_gateway is None
        deadline = time.monotonic() + self.boot_timeout
        with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
            while (pending := [i for i in waiting if i.outcome is None]) or not gateway_ready:
                time.sleep(self.settings.poll_seconds)
                listed = self._servers()
                servers = {s.id: s for s in listed}
                if self.gateway:
                    gateway_ready = self._route(listed, new_gateway, image or None).ok or time.monotonic() > deadline
                    if pending and new_gateway and not gateway_ready:
                        continue  # seats are reached through the gateway: nothing to probe yet
                futures = [pool.submit(self._step, i, servers.get(i.server_id), image, found, group, progress) for i in pending]
                for future in futures:
                    future.result()
                for item in pending:
                    if item.outcome and not item.outcome.ok:
                        progress.update(item.action.seat, "FAILED", item.outcome.detail[:120])

    def _step(self, item: _Seat, server, image: str, found: dict, group, progress: SeatProgress) -> None:
        """Move one booting seat on by what its server shows."""
        seat = item.action.seat
        try:
            if server is None:
                item.outcome = item.finish(False, "the VM disappeared while booting")
            elif server.status == "ERROR" and not item.recreated and item.action.kind in (Kind.CREATE, Kind.REPLACE):
                # A VM that failed in its first boot holds no work: one more try.
                progress.update(seat, "recreating", (server.fault or {}).get("message", "ERROR"))
                self.cloud.delete_server(server.id, "deleting the failed VM")
                item.recreated, item.started = True, time.monotonic()
                self._create_server(item, image, found, group)
            elif server.status == "ERROR" and item.recreated:
                item.outcome = item.finish(False, f"VM in ERROR twice: {(server.fault or {}).get('message', 'no fault given')}")
            elif server.status == "ERROR":
                item.outcome = item.finish(False, f"VM in ERROR: {(server.fault or {}).get('message', 'no fault given')}; "
                                                  "its disk holds the student's work, so it is left in place")
            elif time.monotonic() - item.started > self.boot_timeout and item.action.kind is Kind.UPDATE:
                item.outcome = item.finish(
                    False, f"the VM did not switch to {image} within {self.boot_timeout / 60:g} minutes "
                    "(its log: journalctl -u coursekit-update); deploy again to retry"
                )
            elif time.monotonic() - item.started > self.boot_timeout:
                item.outcome = item.finish(
                    False, f"not answering after {self.boot_timeout / 60:g} minutes (VM {server.status}); deploy again to replace it"
                )
            elif server.status == "ACTIVE" and not item.attached:
                self._attach(item)
                item.attached = True
                progress.update(seat, "booting", item.fip.floating_ip_address)
            if item.attached and item.outcome is None and server.status == "ACTIVE" and self._serves(item, image):
                marks = {labels.META_SERVED: "yes", labels.META_PAUSED: ""}  # from now on its disk may hold work, and it is awake
                if any(server.metadata.get(key, "") != value for key, value in marks.items()):
                    self.cloud.set_metadata(server.id, "marking the VM as serving", **marks)
                item.outcome = item.finish(True, self.url(seat, item.fip.floating_ip_address))
                progress.update(seat, "ready", item.outcome.detail)
        except CoursekitError as exc:
            item.outcome = item.finish(False, str(exc))

    def _serves(self, item: _Seat, image: str) -> bool:
        """Jupyter answers with the seat's token (and, for an update, the VM reports the new image)."""
        seat, address = item.action.seat, item.fip.floating_ip_address
        if self._probe(seat, address, timeout=3) != 200:
            return False
        return item.action.kind is not Kind.UPDATE or self._running_image(seat, address, timeout=3) == image

    # Pausing ------------------------------------------------------------------------------------

    def pause(self, observed: list[Observed], now: datetime) -> list[Outcome]:
        """Shelve each seat's VM (no SUs; its disk, address and link stay), noting when in its metadata; done
        when every VM is shelved. One shared poll of the course's servers follows, as after a boot."""
        items = [_Seat(Action(Kind.KEEP, o.seat, "pause", None, o), server_id=o.instance_id) for o in observed]
        when = now.astimezone(timezone.utc).isoformat(timespec="seconds")

        def shelve(item: _Seat) -> None:
            try:
                self.cloud.set_metadata(item.server_id, "noting the pause", **{labels.META_PAUSED: when})
                self.cloud.shelve(item.server_id)
            except CoursekitError as exc:
                item.outcome = Outcome(item.action.seat, "pause", False, str(exc), time.monotonic() - item.started)

        with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
            list(pool.map(shelve, items))
        deadline = time.monotonic() + self.boot_timeout
        while pending := [i for i in items if i.outcome is None]:
            time.sleep(self.settings.poll_seconds)
            servers = {s.id: s for s in self._servers()}
            for item in pending:
                server = servers.get(item.server_id)
                if server is None:
                    item.outcome = Outcome(item.action.seat, "pause", False, "the VM disappeared while shelving")
                elif POWERED_OFF.get(server.status) == SeatState.PAUSED:
                    item.outcome = Outcome(item.action.seat, "pause", True, f"VM {server.status}: no SUs, its disk stays",
                                           time.monotonic() - item.started)
                elif server.status == "ERROR" or time.monotonic() > deadline:
                    item.outcome = Outcome(item.action.seat, "pause", False, f"VM {server.status} instead of shelved; pause again")
        return [i.outcome for i in items] + ([self._route(self._servers())] if self.gateway else [])

    # Archiving and removing --------------------------------------------------------------------

    def _tar_source(self, seat: str, address: str) -> archive.TarSource:
        """The VM's home folder as one tar stream (the VM's coursekit-homestream, through Caddy, with the token):
        hidden files, links and any name included, which Jupyter's contents API would hide."""
        client = self.client(seat, address)

        def stream():
            try:
                yield from client.stream(HOME_TAR)
            except UntrustedSeat:
                raise
            except CoursekitError as exc:
                raise archive.ArchiveError(f"cannot read the home folder through its VM: {exc}") from None
        return stream

    def archive(self, seat: str, store: ArchiveStore) -> archive.Archived:
        """Archive a seat's home through its VM with its credential, and verify it path by path."""
        fip = self._fips().get(seat)
        if fip is None or not fip.port_id:
            raise archive.ArchiveError("it has no floating IP to be read through")
        return self._archive_at(seat, fip.floating_ip_address, store)

    def _archive_at(self, seat: str, address: str, store: ArchiveStore, name: str | None = None) -> archive.Archived:
        return archive_to(store, name or seat, self._tar_source(seat, address), archive.course_checksums(self.course.data))

    def move_home(self, seat: str, spare: str, store: ArchiveStore) -> str:
        """Copy the student's work onto the spare's VM through its home streamer (their files win; the spare's own stay
        beside them): from the seat's VM when it answers, else from its newest archive, else nothing. Then the old
        seat, if it runs, is paused (shelved: its disk stays for `deploy` or teardown to archive)."""
        doors = self._fips()
        if spare not in self.urls() or getattr(doors.get(spare), "port_id", None) is None:
            raise CoursekitError(f"{spare} is not deployed: deploy first, then swap onto it")
        old = [self._observe(s, doors) for s in self._servers() if s.metadata.get(labels.META_SEAT) == seat][:1]  # this seat only
        running = bool(old) and old[0].state is SeatState.RUNNING  # its Jupyter answers at its address
        why = f"{seat}'s VM cannot be read ({old[0].detail or 'it is not running'}); " if old and not running else ""
        with tempfile.SpooledTemporaryFile(64 << 20) as spooled:  # all of it, before the spare is touched
            read = (f"{seat}'s VM", self._tar_source(seat, doors[seat].floating_ip_address)) if running else None
            copied, source = spool_work(seat, store, spooled, homestream.TOP, read, why)
            if not copied:
                return source
            size = spooled.tell()
            spooled.seek(0)
            self.client(spare, doors[spare].floating_ip_address).upload(HOME_TAR, spooled, size, "application/x-tar")
        if running:
            paused = self.pause(old, datetime.now(timezone.utc))
            if not all(o.ok for o in paused):
                source += f"; pausing {seat} failed ({'; '.join(o.detail for o in paused if not o.ok)}), it still runs"
        return source

    def reset(self, seat: str, store: ArchiveStore, name: str) -> Outcome:
        """Archive the running seat's home as `name` (verified), then a new VM from the same image: the seat keeps its
        address (its own floating IP, or its path on the gateway), so its link and credential stay."""
        started = time.monotonic()
        servers = [s for s in self._servers() if s.metadata.get(labels.META_SEAT) == seat and s.status != "DELETED"]
        fip = self._fips().get(seat)
        if len(servers) != 1 or servers[0].status != "ACTIVE" or fip is None or not fip.port_id:
            state = servers[0].status if len(servers) == 1 else f"{len(servers)} VMs"
            raise CoursekitError(f"seat {seat} is not running ({state}): resume it (or deploy) first, then reset it")
        server = servers[0]
        done = self._archive_at(seat, fip.floating_ip_address, store, name)
        self.cloud.delete_server(server.id, "deleting the seat's VM for a fresh one")
        outcomes = self.apply([Action(Kind.CREATE, seat, "reset: a fresh home", None, None)],
                              server.metadata.get(labels.META_IMAGE, ""), None)
        created = next(o for o in outcomes if o.seat == seat)
        if not created.ok:
            raise CoursekitError(f"the old home is archived ({done.path}) but the new VM failed: {created.detail}; "
                                 "deploy again to create it")
        return Outcome(seat, "reset", True, f"archived {done.files} files ({done.size:,} bytes) to {done.path}; "
                                            f"a fresh home at {self.url(seat, fip.floating_ip_address)}", time.monotonic() - started)

    def _wait_answering(self, seat: str, server_id: str, address: str) -> None:
        """Poll until the VM is ACTIVE and its Jupyter answers with the token, within the boot timeout."""
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            server = self.cloud.server(server_id)
            if self.gateway and server.status == "ACTIVE":
                self._route(self._servers())  # the woken seat is routed again, no longer shown as paused
            if server.status == "ACTIVE" and self._probe(seat, address, timeout=3) == 200:
                return
            if server.status == "ERROR":
                raise CoursekitError(f"the VM went into ERROR while waking: {(server.fault or {}).get('message', '')}")
            time.sleep(self.settings.poll_seconds)
        raise CoursekitError(f"the VM did not answer within {self.boot_timeout / 60:g} minutes of waking it")

    def _archive_then_delete(self, seat: str, server, fip, store: ArchiveStore) -> archive.Archived | None:
        """Archive a seat's disk (waking it first when it is powered off or shelved), then delete the VM and its
        address. A VM that never answered holds no work and is deleted as is; one that holds work but cannot
        be read is left in place (CoursekitError says why)."""
        status = server.status
        served = server.metadata.get(labels.META_SERVED) == "yes" or status in POWERED_OFF
        done = None
        if served or status == "ACTIVE":
            if fip is None or not fip.port_id:
                raise CoursekitError("its disk may hold work but it has no floating IP to be read through; left in place")
            if status in POWERED_OFF:
                self._wake_server(server.id, status)
                self._wait_answering(seat, server.id, fip.floating_ip_address)
            elif status != "ACTIVE":
                raise CoursekitError(f"VM {status}: its disk holds the student's work and cannot be read; left in place "
                                     f"(deploy --discard {seat} deletes it, and the work on it)")
            done = self._archive_at(seat, fip.floating_ip_address, store)
        self.cloud.delete_server(server.id)
        if fip is not None and not isinstance(fip, FrontDoor):
            self.cloud.delete_floating_ip(fip)
        return done

    def _remove(self, action: Action, fips: dict, store: ArchiveStore, progress: SeatProgress) -> Outcome:
        seat = action.seat
        try:
            if action.duplicate:
                self.cloud.delete_server(action.observed.instance_id, "deleting the duplicate VM")
                return Outcome(seat, "remove", True, "duplicate removed")
            progress.update(seat, "archiving")
            server = self.cloud.server(action.observed.instance_id)
            done = self._archive_then_delete(seat, server, fips.get(seat), store)
            progress.update(seat, "removed", str(done.path) if done else "it never served")
            return Outcome(seat, "remove", True, f"archived to {done.path}, then removed" if done else "it never served; removed")
        except CoursekitError as exc:
            progress.update(seat, "FAILED", str(exc)[:120])
            return Outcome(seat, "remove", False, f"{exc}; left in place")

    def urls(self) -> dict[str, str]:
        if self.gateway:
            door = self.gateway.doors().door
            seats = [s.metadata[labels.META_SEAT] for s in self._servers() if s.metadata.get(labels.META_SEAT)]
            return {seat: self.url(seat, door.floating_ip_address) for seat in seats} if door else {}
        return {seat: self.url(seat, fip.floating_ip_address) for seat, fip in self._fips().items() if fip.port_id}

    def student_clients(self) -> dict[str, SeatClient]:
        """seat → a client through the door its student uses (the gateway, or the seat's own address)."""
        return {seat: self.client(seat, fip.floating_ip_address) for seat, (server, fip) in sorted(self.instances_by_seat().items())
                if fip is not None and fip.port_id}

    def instances_by_seat(self) -> dict[str, tuple]:
        """seat → (its server, its floating IP)."""
        fips = self._fips()
        return {s.metadata[labels.META_SEAT]: (s, fips.get(s.metadata[labels.META_SEAT])) for s in self._servers()
                if s.metadata.get(labels.META_SEAT)}

    def status_row(self, seat: str, instance: tuple | None) -> SeatStatus:
        if instance is None:
            return SeatStatus(seat, "missing", "", "", "-", "-")
        server, fip = instance
        reachable = fip is not None and fip.port_id
        try:
            code, body = self._get(seat, fip.floating_ip_address, "/api/status") if reachable else (0, None)
            health = "ok" if code == 200 else (f"HTTP {code}" if code else "no answer")
        except UntrustedSeat:
            code, body, health = 0, None, "unexpected certificate: token withheld"
        url = self.url(seat, fip.floating_ip_address) if fip is not None else ""
        image = (code == 200 and self._running_image(seat, fip.floating_ip_address)) or server.metadata.get(labels.META_IMAGE, "")
        activity = activity_text(body) if code == 200 else "-"
        state = "paused" if POWERED_OFF.get(server.status) == SeatState.PAUSED else server.status.lower()
        return SeatStatus(seat, state, url, image, health, activity)

    def teardown_units(self) -> list[tuple[str, tuple]]:
        """Every server with its address, then every address whose server is already gone."""
        fips = self._fips()
        units = [(s.metadata.get(labels.META_SEAT, s.name), (s, fips.get(s.metadata.get(labels.META_SEAT)))) for s in self._servers()
                 if s.metadata.get(labels.META_ROLE) != GATEWAY]
        served = {seat for seat, _ in units}
        return units + [(seat, (None, fip)) for seat, fip in fips.items() if seat not in served]

    def archive_and_remove(self, seat: str, unit: tuple, store: ArchiveStore, keep_volumes: bool) -> archive.Archived | None:
        server, fip = unit
        if server is None:  # its VM was already gone: nothing to archive, release the address
            if not isinstance(fip, FrontDoor):
                self.cloud.delete_floating_ip(fip)
            return None
        return self._archive_then_delete(seat, server, fip, store)

    def left_in_place(self, unit: tuple) -> str:
        server, _ = unit
        return "the VM is left running" if server is not None and server.status == "ACTIVE" else "the VM is left in place"

    def after_teardown(self, everything_removed: bool) -> None:
        if self.gateway and everything_removed:
            self.gateway.remove()
        elif self.gateway:
            self._route(self._servers())  # the seats that went are no longer routed
        if everything_removed:
            self._delete_group_when_free()

    def extra_status_rows(self) -> list[SeatStatus]:
        """The gateway's own row, when the course has one."""
        return [self.gateway.status_row()] if self.gateway else []

    def _delete_group_when_free(self) -> None:
        deadline = time.monotonic() + self.boot_timeout
        while self._servers():
            if time.monotonic() > deadline:
                raise CoursekitError("VMs are still being deleted; run teardown again to remove the security group")
            time.sleep(self.settings.poll_seconds)
        # The seats' group names the gateway's in a rule: it goes first.
        for group in sorted(self.cloud.security_groups(self.tag), key=lambda g: g.name.endswith("-gateway")):
            self.cloud.delete_security_group(group)

    def leftovers(self, keep_volumes: bool = False) -> list[str]:
        found = [f"server {s.name}" for s in self._servers()]
        found += [f"floating IP {f.floating_ip_address}" for f in self.cloud.floating_ips(self.tag)]
        found += [f"security group {g.name}" for g in self.cloud.security_groups(self.tag)]
        return found
