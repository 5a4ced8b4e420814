"""One deploy of VM seats: preflight, create or replace with bounded concurrency, then one shared poll of the course's
servers until every seat answers, so API requests in flight are bounded, not boots in flight."""
from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from coursekit import labels
from coursekit.archivestore import ArchiveStore
from coursekit.errors import CoursekitError
from coursekit.fleet.openstack import quota
from coursekit.fleet.openstack.allocation import Allocation
from coursekit.fleet.openstack.cloud import fault
from coursekit.fleet.openstack.doors import Doors, Reach
from coursekit.fleet.openstack.homes import Homes, answers, running_image
from coursekit.fleet.plan import Action, Kind, Outcome, SeatState
from coursekit.fleet.progress import SeatProgress


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


class Boot:
    """Carries out one plan on the course's VMs."""

    def __init__(self, at: Allocation, doors: Doors, homes: Homes, fingerprint: str):
        self.at, self.cloud, self.settings = at, at.cloud, at.settings
        self.doors, self.homes, self.fingerprint = doors, homes, fingerprint

    def apply(self, actions: list[Action], image: str, store: ArchiveStore | None) -> list[Outcome]:
        """Preflight, then create/replace with bounded concurrency, one shared poll until every seat answers."""
        outcomes: dict[str, Outcome] = {}
        work = [a for a in actions if a.kind in (Kind.CREATE, Kind.REPLACE)]
        reach = self.doors.reach()
        found = quota.check(self.cloud, self.settings, sum(a.kind is Kind.CREATE for a in actions),
                            self.doors.need(actions, reach)) if work else {}
        created, reach = self.doors.open(actions, reach, lambda: (found.get("public") or self.cloud.find("network", "public")).id)
        group = self.doors.security_group() if work else None
        items = [_Seat(a) for a in work]
        with SeatProgress([a.seat for a in actions], f"deploy {self.at.slug}") as progress:
            for action in actions:
                if action.kind is Kind.KEEP:
                    progress.update(action.seat, "ready" if action.observed.state is SeatState.RUNNING else "starting")
                elif action.kind is Kind.BLOCKED:
                    outcomes[action.seat] = Outcome(action.seat, "blocked", False, action.reason)
                    progress.update(action.seat, "LEFT IN PLACE", action.observed.detail[:120])
                elif action.kind is Kind.REMOVE:
                    outcomes[action.seat] = self._remove(action, reach, store, progress)
            with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
                for future in [pool.submit(self._launch, i, image, found, group, reach, store, progress) for i in items]:
                    future.result()
                updating = list(pool.map(lambda a: self._update(a, image, reach, progress), [a for a in actions if a.kind is Kind.UPDATE]))
                waking = list(pool.map(lambda a: self._wake(a, reach, progress), [a for a in actions if a.kind is Kind.WAKE]))
            waiting = [i for i in items if i.outcome is None] + updating + waking
            waiting += [_Seat(a, fip=reach.get(a.seat), server_id=a.observed.instance_id)
                        for a in actions if a.kind is Kind.KEEP and a.observed.state is SeatState.STARTING]
            self._wait(waiting, image, found, group, progress, created)
            served = self.doors.sync(self.at.servers(), created, image or None)
            for item in items + waiting + waking:
                if item.outcome:
                    outcomes[item.action.seat] = item.outcome
        for action in actions:
            if action.kind is Kind.KEEP and action.seat not in outcomes:
                fip = reach.get(action.seat)
                outcomes[action.seat] = Outcome(action.seat, "keep", True,
                                                self.doors.url(action.seat, fip.floating_ip_address) if fip else "up to date")
        return [outcomes[a.seat] for a in actions if a.seat in outcomes] + served

    def _remove(self, action: Action, reach: Reach, store: ArchiveStore, progress: SeatProgress) -> Outcome:
        seat = action.seat
        try:
            if action.duplicate:
                self.cloud.delete_server(action.observed.instance_id, "deleting the duplicate VM")
                return Outcome(seat, "remove", True, "duplicate removed")
            progress.update(seat, "archiving")
            done = self.homes.retire(seat, self.cloud.server(action.observed.instance_id), reach.get(seat), store)
            progress.update(seat, "removed", str(done.path) if done else "it never served")
            return Outcome(seat, "remove", True, f"archived to {done.path}, then removed" if done else "it never served; removed")
        except CoursekitError as exc:
            progress.update(seat, "FAILED", str(exc)[:120])
            return Outcome(seat, "remove", False, f"{exc}; left in place")

    def _create_server(self, item: _Seat, image: str, found: dict, group) -> None:
        seat, at = item.action.seat, self.at
        user_data = self.doors.user_data(seat, image, item.fip.floating_ip_address)
        attrs = dict(
            name=at.server_name(seat), flavor_id=found["flavor"].id, image_id=found["image"].id,
            networks=[{"uuid": found["network"].id}], security_groups=[{"name": group.name}],
            user_data=base64.b64encode(user_data.encode()).decode(),  # the proxy layer does not encode it
            metadata={labels.META_COURSE: at.slug, labels.META_SEAT: seat, labels.META_IMAGE: image,
                      labels.META_SETTINGS: self.fingerprint},
            tags=[at.tag, at.seat_tag(seat)],
            **({"key_name": self.settings.key_name} if self.settings.key_name else {}),
        )

        def existing():
            # The server may exist despite a 5xx: look it up by tag before any retry.
            mine = self.cloud.servers(f"{at.tag},{at.seat_tag(seat)}")
            return mine[0] if mine else None

        item.server_id = self.cloud.create_server(existing, **attrs).id

    def _launch(self, item: _Seat, image: str, found: dict, group, reach: Reach, store: ArchiveStore, progress: SeatProgress) -> None:
        seat = item.action.seat
        try:
            if item.action.kind is Kind.REPLACE:
                progress.update(seat, "replacing", item.action.reason)
                if item.action.observed.state is SeatState.RUNNING:  # a VM's disk goes with it: save the work first
                    done = self.homes.archive(seat, reach.get(seat).floating_ip_address, store)
                    progress.update(seat, "replacing", f"work archived to {done.path}")
                self.cloud.delete_server(item.action.observed.instance_id, "deleting the old VM")
            item.fip = self.doors.address_for(seat, reach, found["public"].id)
            progress.update(seat, "creating", item.fip.floating_ip_address)
            self._create_server(item, image, found, group)
            progress.update(seat, "building")
        except CoursekitError as exc:
            item.outcome = Outcome(seat, item.action.kind.value, False, str(exc), time.monotonic() - item.started)
            progress.update(seat, "FAILED", str(exc)[:120])

    def _wake(self, action: Action, reach: Reach, progress: SeatProgress) -> _Seat:
        """Wake a seat whose disk holds work; it is done when Jupyter answers again, as after a boot."""
        item = _Seat(action, fip=reach.get(action.seat), server_id=action.observed.instance_id, attached=True)
        try:
            if item.fip is None:
                raise CoursekitError("it has no floating IP to be reached through")
            self.at.wake(item.server_id)
            progress.update(action.seat, "waking", action.observed.detail)
        except CoursekitError as exc:
            item.outcome = item.finish(False, str(exc))
        return item

    def _update(self, action: Action, image: str, reach: Reach, progress: SeatProgress) -> _Seat:
        """Ask the VM for the new image through its metadata; its updater swaps the container and keeps
        the home folder. The seat is done when the VM reports the new image and Jupyter answers."""
        item = _Seat(action, fip=reach.get(action.seat), server_id=action.observed.instance_id, attached=True)
        try:
            self.cloud.set_metadata(item.server_id, "asking the VM for the new image", **{labels.META_IMAGE: image})
            progress.update(action.seat, "updating", "the VM pulls the new image; the home folder stays")
        except CoursekitError as exc:
            item.outcome = item.finish(False, str(exc))
        return item

    def _wait(self, waiting: list[_Seat], image: str, found: dict, group, progress: SeatProgress, created: str | None) -> None:
        """Poll the course's servers (one call per round for all seats) until each seat answers or fails; the follow-up
        work of a round (attach, recreate, probe) runs with bounded concurrency. Each round also lets the door catch up
        (a new gateway comes up and takes the routes of the seats that have addresses)."""
        door_ready = created is None
        deadline = time.monotonic() + self.at.boot_timeout
        with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
            while (pending := [i for i in waiting if i.outcome is None]) or not door_ready:
                time.sleep(self.settings.poll_seconds)
                listed = self.at.servers()
                servers = {s.id: s for s in listed}
                synced = self.doors.sync(listed, created, image or None)
                door_ready = all(o.ok for o in synced) or time.monotonic() > deadline
                if pending and created and not door_ready:
                    continue  # seats are reached through what is not up yet: nothing to probe
                for future in [pool.submit(self._step, i, servers.get(i.server_id), image, found, group, progress) for i in pending]:
                    future.result()
                for item in pending:
                    if item.outcome and not item.outcome.ok:
                        progress.update(item.action.seat, "FAILED", item.outcome.detail[:120])

    def _step(self, item: _Seat, server, image: str, found: dict, group, progress: SeatProgress) -> None:
        """Move one booting seat on by what its server shows."""
        seat = item.action.seat
        minutes = f"{self.at.boot_timeout / 60:g} minutes"
        try:
            if server is None:
                item.outcome = item.finish(False, "the VM disappeared while booting")
            elif server.status == "ERROR" and not item.recreated and item.action.kind in (Kind.CREATE, Kind.REPLACE):
                # A VM that failed in its first boot holds no work: one more try.
                progress.update(seat, "recreating", fault(server))
                self.cloud.delete_server(server.id, "deleting the failed VM")
                item.recreated, item.started = True, time.monotonic()
                self._create_server(item, image, found, group)
            elif server.status == "ERROR" and item.recreated:
                item.outcome = item.finish(False, f"VM in ERROR twice: {fault(server)}")
            elif server.status == "ERROR":
                item.outcome = item.finish(False, f"VM in ERROR: {fault(server)}; its disk holds the student's work, so it is left in place")
            elif time.monotonic() - item.started > self.at.boot_timeout and item.action.kind is Kind.UPDATE:
                item.outcome = item.finish(False, f"the VM did not switch to {image} within {minutes} "
                                                  "(its log: journalctl -u coursekit-update); deploy again to retry")
            elif time.monotonic() - item.started > self.at.boot_timeout:
                item.outcome = item.finish(False, f"not answering after {minutes} (VM {server.status}); deploy again to replace it")
            elif server.status == "ACTIVE" and not item.attached:
                self.doors.attach(item.fip, item.server_id)
                item.attached = True
                progress.update(seat, "booting", item.fip.floating_ip_address)
            if item.attached and item.outcome is None and server.status == "ACTIVE" and self._serves(item, image):
                marks = {labels.META_SERVED: "yes", labels.META_PAUSED: ""}  # from now on its disk may hold work, and it is awake
                if any(server.metadata.get(key, "") != value for key, value in marks.items()):
                    self.cloud.set_metadata(server.id, "marking the VM as serving", **marks)
                item.outcome = item.finish(True, self.doors.url(seat, item.fip.floating_ip_address))
                progress.update(seat, "ready", item.outcome.detail)
        except CoursekitError as exc:
            item.outcome = item.finish(False, str(exc))

    def _serves(self, item: _Seat, image: str) -> bool:
        """Jupyter answers with the seat's token (and, for an update, the VM reports the new image)."""
        client = self.doors.client(item.action.seat, item.fip.floating_ip_address)
        if not answers(client, timeout=3):
            return False
        return item.action.kind is not Kind.UPDATE or running_image(client, timeout=3) == image
