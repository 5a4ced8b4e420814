"""A VM seat's home: read as one tar through the VM's own streamer (Caddy passes it with the seat's token), archived
and verified path by path, written onto a spare, and saved before its VM goes (woken first when it is off)."""
from __future__ import annotations

import time
from typing import BinaryIO

from coursekit import archive, labels
from coursekit.archivestore import ArchiveStore, archive_to
from coursekit.errors import CoursekitError
from coursekit.fleet.openstack.allocation import Allocation
from coursekit.fleet.openstack.cloud import POWERED_OFF, fault
from coursekit.fleet.openstack.doors import Doors
from coursekit.seatclient import SeatClient, UntrustedSeat

HOME_TAR = "/coursekit/home.tar"
SEAT_REPORT = "/coursekit/seat.json"


def answers(client: SeatClient, timeout: float = 5) -> bool:
    """The seat's Jupyter answers its credential."""
    return client.get("/api/status", timeout)[0] == 200


def running_image(client: SeatClient, timeout: float = 5) -> str | None:
    """The image the VM says it runs (the bootstrap writes it; Caddy serves it with the token)."""
    status, body = client.get(SEAT_REPORT, timeout)
    return body.get("image") if status == 200 and isinstance(body, dict) else None


class Homes:
    """The students' homes on the course's VMs, reached through the course's door."""

    def __init__(self, at: Allocation, doors: Doors):
        self.at, self.doors = at, doors

    def tar_source(self, seat: str, address: str) -> archive.TarSource:
        """The VM's home folder as one tar stream: hidden files, links and any name included, which Jupyter's
        contents API would hide."""
        client = self.doors.client(seat, address)

        def stream():
            try:
                yield from client.stream(HOME_TAR)
            except UntrustedSeat:
                raise
            except CoursekitError as exc:
                raise archive.ArchiveError(f"cannot read the home folder through its VM: {exc}") from None
        return stream

    def archive(self, seat: str, address: str, store: ArchiveStore, name: str | None = None) -> archive.Archived:
        """Archive the seat's home (as name, else the seat) and verify it path by path."""
        return archive_to(store, name or seat, self.tar_source(seat, address), archive.course_checksums(self.at.course.data))

    def upload(self, seat: str, address: str, tar: BinaryIO, size: int) -> None:
        """Unpack a tar of a home (under jovyan/) into the seat's home, through its streamer."""
        self.doors.client(seat, address).upload(HOME_TAR, tar, size, "application/x-tar")

    def wait_answering(self, seat: str, server_id: str, address: str) -> None:
        """Poll until the VM is ACTIVE and its Jupyter answers with the token, within the boot timeout."""
        deadline = time.monotonic() + self.at.boot_timeout
        while time.monotonic() < deadline:
            server = self.at.cloud.server(server_id)
            if server.status == "ACTIVE":
                self.doors.sync(self.at.servers())  # a woken seat is routed again, no longer shown as paused
                if answers(self.doors.client(seat, address), timeout=3):
                    return
            if server.status == "ERROR":
                raise CoursekitError(f"the VM went into ERROR while waking: {fault(server)}")
            time.sleep(self.at.settings.poll_seconds)
        raise CoursekitError(f"the VM did not answer within {self.at.boot_timeout / 60:g} minutes of waking it")

    def retire(self, seat: str, server, address, store: ArchiveStore) -> archive.Archived | None:
        """Archive a seat's disk (waking it first when it is powered off or shelved), then delete the VM and give back
        its address. A VM that never answered holds no work and is deleted as is; one that holds work but cannot be
        read is left in place (CoursekitError says why)."""
        status = server.status
        served = server.metadata.get(labels.META_SERVED) == "yes" or status in POWERED_OFF
        done = None
        if served or status == "ACTIVE":
            if address is None or not address.port_id:
                raise CoursekitError("its disk may hold work but it has no floating IP to be read through; left in place")
            if status in POWERED_OFF:
                self.at.wake(server.id, status)
                self.wait_answering(seat, server.id, address.floating_ip_address)
            elif status != "ACTIVE":
                raise CoursekitError(f"VM {status}: its disk holds the student's work and cannot be read; left in place "
                                     f"(deploy --discard {seat} deletes it, and the work on it)")
            done = self.archive(seat, address.floating_ip_address, store)
        self.at.cloud.delete_server(server.id)
        self.doors.release(address)
        return done
