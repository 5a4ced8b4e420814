"""The openstack provider: one VM per seat (Jetstream2 or any OpenStack cloud) through openstacksdk.

Everything it creates carries the course's tag (servers, floating IPs, the security groups), and each server's
metadata names its seat, so any machine with clouds.yaml and COURSEKIT_SECRET finds the fleet. How students reach
a seat is the door's (doors.py), chosen once from fleet.openstack.access; a deploy's boots are boot.py's, and a
seat's home on its VM is homes.py's.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from coursekit import archive, labels
from coursekit.archivestore import ArchiveStore
from coursekit.config import Course
from coursekit.errors import CoursekitError
from coursekit.fleet import homestream
from coursekit.fleet.openstack.allocation import Allocation
from coursekit.fleet.openstack.boot import Boot
from coursekit.fleet.openstack.cloud import POWERED_OFF, Cloud, age, fault
from coursekit.fleet.openstack.doors import DOORS
from coursekit.fleet.openstack.homes import Homes, running_image
from coursekit.fleet.plan import Action, Kind, Observed, Outcome, SeatState, SeatStatus
from coursekit.fleet.provider import Provider, spool_work
from coursekit.parallel import each
from coursekit.schedule import activity_text, jupyter_clocks, parse_time, seat_clock
from coursekit.seatclient import SeatClient, UntrustedSeat
from coursekit.seats import SeatTokens


class OpenStackProvider(Provider):
    """Reconciles the course's seats as VMs."""

    name = "openstack"

    def __init__(self, course: Course, tokens: SeatTokens, connection=None, backoff: float = 1.0):
        super().__init__(course, tokens)
        self.settings = course.fleet.openstack
        self.cloud = Cloud(connection, backoff) if connection is not None else Cloud.connect(self.settings.cloud, backoff)
        self.at = Allocation(self.cloud, course, tokens)
        self.doors = DOORS[self.settings.access](self.at)
        self.homes = Homes(self.at, self.doors)

    @classmethod
    def connect(cls, course: Course, tokens: SeatTokens) -> OpenStackProvider:
        return cls(course, tokens)

    def fingerprint(self) -> str:
        s = self.settings
        text = json.dumps([s.flavor, s.image, s.network, s.key_name, sorted(s.ssh_cidrs), s.dns_domain] + self.doors.fingerprint())
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def resolve_image(self, ref: str) -> str:
        """VMs pull the image themselves: the reference is what is desired."""
        return ref

    def object_store(self) -> Cloud:
        """The fleet's own cloud holds swift:// archives."""
        return self.cloud

    def _seat_servers(self) -> list:
        return [s for s in self.at.servers() if s.metadata.get(labels.META_SEAT)]

    # Observing ----------------------------------------------------------------------------------

    def _observe(self, server, fip) -> Observed:
        seat = server.metadata[labels.META_SEAT]
        served = server.metadata.get(labels.META_SERVED) == "yes"  # a VM that never answered holds no work yet
        state, detail = SeatState.STOPPED, f"VM {server.status}"
        image = server.metadata.get(labels.META_IMAGE, "")  # what was asked of the VM
        clocks, paused_at = {}, None
        if server.status == "ACTIVE" and fip is not None and fip.port_id:
            client = self.doors.client(seat, fip.floating_ip_address)
            try:
                answer, body = client.get("/api/status", 5)
            except UntrustedSeat as exc:
                answer, state, detail = -1, SeatState.FAILED, str(exc)
            if answer == 200:
                state, detail, clocks = SeatState.RUNNING, "", jupyter_clocks(body)
                image = running_image(client) or image
            elif answer == -1:
                served = True  # cannot tell what it holds: treat it as holding work
            elif age(server) < self.at.boot_timeout:
                state = SeatState.STARTING
            else:
                state, detail = SeatState.FAILED, "the VM is up but Jupyter does not answer on HTTPS"
        elif server.status == "ACTIVE":
            state, detail = SeatState.STARTING, "floating IP not attached yet"  # deploy attaches it; no need to replace
        elif server.status == "BUILD":
            stuck = age(server) >= self.at.boot_timeout
            state = SeatState.FAILED if stuck else SeatState.STARTING
            detail = f"stuck in BUILD for {age(server) / 60:.1f} minutes" if stuck else ""
        elif server.status == "ERROR":
            state, detail = SeatState.FAILED, f"VM in ERROR: {fault(server)}"
        elif server.status in POWERED_OFF:
            state, detail = POWERED_OFF[server.status], f"VM {server.status}"
            paused_at = parse_time(server.metadata.get(labels.META_PAUSED))
        return Observed(seat, server.id, image, server.metadata.get(labels.META_SETTINGS, ""), state, detail, holds_work=served,
                        paused_at=paused_at, **clocks)

    def observe(self) -> list[Observed]:
        """The course's VMs as they are (2 API calls, whatever the fleet's size)."""
        reach = self.doors.reach()
        return each(lambda server: self._observe(server, reach.get(server.metadata[labels.META_SEAT])), self._seat_servers())

    def apply(self, actions: list[Action], image: str, store: ArchiveStore | None) -> list[Outcome]:
        return Boot(self.at, self.doors, self.homes, self.fingerprint()).apply(actions, image, store)

    # Pausing ------------------------------------------------------------------------------------

    def pause(self, observed: list[Observed], now: datetime) -> list[Outcome]:
        """Shelve each seat's VM (no SUs; its disk, address and link stay), noting when in its metadata; done
        when every VM is shelved. One shared poll of the course's servers follows, as after a boot."""
        started, when = time.monotonic(), now.astimezone(timezone.utc).isoformat(timespec="seconds")
        outcomes: dict[str, Outcome] = {}

        def shelve(seat: Observed) -> None:
            try:
                self.cloud.set_metadata(seat.instance_id, "noting the pause", **{labels.META_PAUSED: when})
                self.cloud.shelve(seat.instance_id)
            except CoursekitError as exc:
                outcomes[seat.seat] = Outcome(seat.seat, "pause", False, str(exc), time.monotonic() - started)

        with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
            list(pool.map(shelve, observed))
        deadline = started + self.at.boot_timeout
        while pending := [o for o in observed if o.seat not in outcomes]:
            time.sleep(self.settings.poll_seconds)
            servers = {s.id: s for s in self.at.servers()}
            for seat in pending:
                server = servers.get(seat.instance_id)
                if server is None:
                    outcomes[seat.seat] = Outcome(seat.seat, "pause", False, "the VM disappeared while shelving")
                elif POWERED_OFF.get(server.status) == SeatState.PAUSED:
                    outcomes[seat.seat] = Outcome(seat.seat, "pause", True, f"VM {server.status}: no SUs, its disk stays",
                                                  time.monotonic() - started)
                elif server.status == "ERROR" or time.monotonic() > deadline:
                    outcomes[seat.seat] = Outcome(seat.seat, "pause", False, f"VM {server.status} instead of shelved; pause again")
        return [outcomes[o.seat] for o in observed] + self.doors.sync(self.at.servers())

    # Homes --------------------------------------------------------------------------------------

    def archive(self, seat: str, store: ArchiveStore) -> archive.Archived:
        """Archive a seat's home through its VM with its credential, and verify it path by path."""
        fip = self.doors.reach().get(seat)
        if fip is None or not fip.port_id:
            raise archive.ArchiveError("it has no floating IP to be read through")
        return self.homes.archive(seat, fip.floating_ip_address, store)

    def move_home(self, seat: str, spare: str, store: ArchiveStore) -> str:
        """Copy the student's work onto the spare's VM through its home streamer (their files win; the spare's own stay
        beside them): from the seat's VM when it answers, else from its newest archive, else nothing. Then the old
        seat, if it runs, is paused (shelved: its disk stays for `deploy` or teardown to archive)."""
        reach = self.doors.reach()
        if spare not in self.urls() or getattr(reach.get(spare), "port_id", None) is None:
            raise CoursekitError(f"{spare} is not deployed: deploy first, then swap onto it")
        old = [self._observe(s, reach.get(seat)) for s in self._seat_servers() if s.metadata[labels.META_SEAT] == seat][:1]
        running = bool(old) and old[0].state is SeatState.RUNNING  # its Jupyter answers at its address
        why = f"{seat}'s VM cannot be read ({old[0].detail or 'it is not running'}); " if old and not running else ""
        with tempfile.SpooledTemporaryFile(64 << 20) as spooled:  # all of it, before the spare is touched
            read = (f"{seat}'s VM", self.homes.tar_source(seat, reach.get(seat).floating_ip_address)) if running else None
            copied, source = spool_work(seat, store, spooled, homestream.TOP, read, why)
            if not copied:
                return source
            size = spooled.tell()
            spooled.seek(0)
            self.homes.upload(spare, reach.get(spare).floating_ip_address, spooled, size)
        if running:
            paused = self.pause(old, datetime.now(timezone.utc))
            if not all(o.ok for o in paused):
                source += f"; pausing {seat} failed ({'; '.join(o.detail for o in paused if not o.ok)}), it still runs"
        return source

    def reset(self, seat: str, store: ArchiveStore, name: str) -> Outcome:
        """Archive the running seat's home as `name` (verified), then a new VM from the same image: the seat keeps its
        address (its own floating IP, or its path on the gateway), so its link and credential stay."""
        started = time.monotonic()
        servers = [s for s in self._seat_servers() if s.metadata[labels.META_SEAT] == seat and s.status != "DELETED"]
        fip = self.doors.reach().get(seat)
        if len(servers) != 1 or servers[0].status != "ACTIVE" or fip is None or not fip.port_id:
            state = servers[0].status if len(servers) == 1 else f"{len(servers)} VMs"
            raise CoursekitError(f"seat {seat} is not running ({state}): resume it (or deploy) first, then reset it")
        server = servers[0]
        done = self.homes.archive(seat, fip.floating_ip_address, store, name)
        self.cloud.delete_server(server.id, "deleting the seat's VM for a fresh one")
        outcomes = self.apply([Action(Kind.CREATE, seat, "reset: a fresh home", None, None)], server.metadata.get(labels.META_IMAGE, ""), None)
        created = next(o for o in outcomes if o.seat == seat)
        if not created.ok:
            raise CoursekitError(f"the old home is archived ({done.path}) but the new VM failed: {created.detail}; "
                                 "deploy again to create it")
        return Outcome(seat, "reset", True, f"archived {done.files} files ({done.size:,} bytes) to {done.path}; "
                                            f"a fresh home at {self.doors.url(seat, fip.floating_ip_address)}", time.monotonic() - started)

    # Reading --------------------------------------------------------------------------------------

    def urls(self) -> dict[str, str]:
        return {seat: self.doors.url(seat, fip.floating_ip_address) for seat, (_, fip) in self.instances_by_seat().items()
                if fip is not None and fip.port_id}

    def student_clients(self) -> dict[str, SeatClient]:
        """seat → a client through the door its student uses (the gateway, or the seat's own address)."""
        return {seat: self.doors.client(seat, fip.floating_ip_address) for seat, (_, fip) in sorted(self.instances_by_seat().items())
                if fip is not None and fip.port_id}

    def instances_by_seat(self) -> dict[str, tuple]:
        """seat → (its server, the floating IP it is reached through)."""
        reach = self.doors.reach()
        return {s.metadata[labels.META_SEAT]: (s, reach.get(s.metadata[labels.META_SEAT])) for s in self._seat_servers()}

    def status_row(self, seat: str, instance: tuple | None) -> SeatStatus:
        if instance is None:
            return SeatStatus(seat, "missing", "", "", "-", "-")
        server, fip = instance
        reachable = fip is not None and fip.port_id
        client = self.doors.client(seat, fip.floating_ip_address) if fip is not None else None
        try:
            code, body = client.get("/api/status", 5) if reachable else (0, None)
            health = "ok" if code == 200 else (f"HTTP {code}" if code else "no answer")
        except UntrustedSeat:
            code, body, health = 0, None, "unexpected certificate: token withheld"
        url = self.doors.url(seat, fip.floating_ip_address) if fip is not None else ""
        image = (code == 200 and running_image(client)) or server.metadata.get(labels.META_IMAGE, "")
        is_paused = POWERED_OFF.get(server.status) is SeatState.PAUSED
        paused_at = parse_time(server.metadata.get(labels.META_PAUSED)) if server.status in POWERED_OFF else None
        return SeatStatus(seat, "paused" if is_paused else server.status.lower(), url, image, health,
                          activity_text(body) if code == 200 else "-", clock=seat_clock(seat, is_paused, paused_at, body if code == 200 else None))

    def extra_status_rows(self) -> list[SeatStatus]:
        return self.doors.status_rows()

    # Teardown -------------------------------------------------------------------------------------

    def teardown_units(self) -> list[tuple[str, tuple]]:
        """Every seat's server with its address, then every address of a seat whose server is already gone."""
        reach = self.doors.reach()
        units = [(s.metadata.get(labels.META_SEAT, s.name), (s, reach.get(s.metadata.get(labels.META_SEAT, ""))))
                 for s in self.at.servers() if labels.META_ROLE not in s.metadata]  # a seat's, or a stray VM of the course's
        served = {seat for seat, _ in units}
        return units + [(seat, (None, fip)) for seat, fip in reach.own.items() if seat not in served]

    def archive_and_remove(self, seat: str, unit: tuple, store: ArchiveStore, keep_volumes: bool) -> archive.Archived | None:
        server, fip = unit
        if server is None:  # its VM was already gone: nothing to archive, give back the address
            self.doors.release(fip)
            return None
        return self.homes.retire(seat, server, fip, store)

    def left_in_place(self, unit: tuple) -> str:
        server, _ = unit
        return "the VM is left running" if server is not None and server.status == "ACTIVE" else "the VM is left in place"

    def after_teardown(self, everything_removed: bool) -> None:
        self.doors.close(everything_removed)
        if not everything_removed:
            return
        deadline = time.monotonic() + self.at.boot_timeout
        while self.at.servers():
            if time.monotonic() > deadline:
                raise CoursekitError("VMs are still being deleted; run teardown again to remove the security group")
            time.sleep(self.settings.poll_seconds)
        self.doors.remove_groups()

    def leftovers(self, keep_volumes: bool = False) -> list[str]:
        found = [f"server {s.name}" for s in self.at.servers()]
        found += [f"floating IP {f.floating_ip_address}" for f in self.cloud.floating_ips(self.at.tag)]
        found += [f"security group {g.name}" for g in self.cloud.security_groups(self.at.tag)]
        return found
