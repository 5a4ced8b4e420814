"""The OpenStack cloud behind a small interface: every openstacksdk call of the openstack provider goes
through here, and SDK and keystoneauth errors become CoursekitError, naming what was being done.

Calls that may meet a quota still freeing up (403/409) or a passing 5xx are retried with back-off; after
a 5xx on a create, `adopt` looks for what the failed call made anyway before any retry.
"""
from __future__ import annotations

import secrets
import time
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import keystoneauth1.exceptions as ksaerr
import openstack
import openstack.exceptions as oserr

from coursekit.errors import CoursekitError
from coursekit.fleet.plan import SeatState

# Nova's statuses of a VM that is powered off, and what a seat in each is: shelved is coursekit's pause.
POWERED_OFF = {"SHUTOFF": SeatState.STOPPED, "SHELVED": SeatState.PAUSED, "SHELVED_OFFLOADED": SeatState.PAUSED,
               "SUSPENDED": SeatState.STOPPED, "PAUSED": SeatState.STOPPED}

RETRIES = 4
# How to bring back a VM that is off, by its nova status: what it is called, and the SDK call.
WAKE_CALLS = {"SHUTOFF": ("starting the VM", "start_server"), "SHELVED": ("unshelving the VM", "unshelve_server"),
              "SHELVED_OFFLOADED": ("unshelving the VM", "unshelve_server"), "SUSPENDED": ("resuming the VM", "resume_server"),
              "PAUSED": ("unpausing the VM", "unpause_server")}


def _status(exc: Exception) -> int:
    return getattr(exc, "status_code", None) or 0


class Cloud:
    """One connection (clouds.yaml entry or OS_* variables), with the calls the provider makes."""

    def __init__(self, connection, backoff: float = 1.0):
        self.conn, self.backoff = connection, backoff
        self._found: dict[tuple[str, str], Any] = {}  # flavors, images, networks and key pairs seen by name

    @classmethod
    def connect(cls, cloud: str, backoff: float = 1.0) -> Cloud:
        try:
            return cls(openstack.connect(cloud=cloud), backoff)  # reads clouds.yaml; authenticates on first use
        except (oserr.SDKException, ksaerr.ClientException) as exc:
            raise CoursekitError(
                f"cannot use cloud {cloud!r} ({exc}); put its application credential in clouds.yaml "
                "(see clouds.yaml.example) or set OS_* variables and use cloud: envvars"
            ) from None

    # The two ways to call -------------------------------------------------------------------------

    def call(self, what: str, thunk: Callable[[], Any]) -> Any:
        """One API call, given as a thunk (reaching conn.compute or conn.network may already authenticate);
        SDK errors become CoursekitError naming what failed."""
        try:
            result = thunk()
            return list(result) if hasattr(result, "__next__") else result  # listings are lazy generators
        except (oserr.SDKException, ksaerr.ClientException) as exc:
            raise CoursekitError(f"{what} failed: {exc}") from None

    def retrying(self, what: str, thunk: Callable[[], Any], adopt: Callable[[], Any] | None = None) -> Any:
        """Retry 403/409/5xx with back-off (quota may free up as deletes finish); then give up clearly.
        After a 5xx, adopt() may find what the failed call created anyway; that is returned instead of retrying."""
        for attempt in range(1, RETRIES + 1):
            try:
                return thunk()
            except ksaerr.ClientException as exc:
                raise CoursekitError(f"{what}: {exc}") from None
            except oserr.HttpException as exc:
                code = _status(exc)
                if code >= 500 and adopt is not None and (found := self.call(f"{what} (looking for it)", adopt)) is not None:
                    return found
                if (code not in (403, 409) and code < 500) or attempt == RETRIES:
                    raise CoursekitError(f"{what}: {exc.details or exc} (HTTP {code})") from None
                time.sleep(min(2 ** attempt, 30) * self.backoff)
            except oserr.SDKException as exc:
                raise CoursekitError(f"{what}: {exc}") from None
        raise AssertionError("unreachable")

    # Compute ----------------------------------------------------------------------------------------

    def servers(self, tags: str) -> list:
        return self.call("listing the course's servers", lambda: self.conn.compute.servers(tags=tags))

    def server(self, server_id: str):
        return self.call("reading the VM", lambda: self.conn.compute.get_server(server_id))

    def create_server(self, adopt: Callable[[], Any], **attrs) -> Any:
        return self.retrying("creating the VM failed", lambda: self.conn.compute.create_server(**attrs), adopt)

    def delete_server(self, server_id: str, what: str = "deleting the VM") -> None:
        self.call(what, lambda: self.conn.compute.delete_server(server_id))

    def set_metadata(self, server_id: str, what: str, **items: str) -> None:
        self.retrying(what, lambda: self.conn.compute.set_server_metadata(server_id, **items))

    def wake(self, server_id: str, status: str) -> None:
        """Start, unshelve, resume or unpause a VM, as its status needs; its disk stays."""
        what, call = WAKE_CALLS.get(status, ("starting the VM", "start_server"))
        self.retrying(what, lambda: getattr(self.conn.compute, call)(server_id))

    def shelve(self, server_id: str) -> None:
        """Shelve a VM: Jetstream2 charges nothing for it and keeps its disk."""
        self.retrying("shelving the VM", lambda: self.conn.compute.shelve_server(server_id))

    def find(self, kind: str, name: str):
        """A flavor, image, network or key pair by name (None when there is none). One that exists is looked up
        once per connection: a deploy's preflight, its gateway and its boots ask for the same ones (two calls each)."""
        if (kind, name) in self._found:
            return self._found[kind, name]
        service, method = {"flavor": ("compute", "find_flavor"), "image": ("image", "find_image"),
                           "network": ("network", "find_network"), "key pair": ("compute", "find_keypair")}[kind]
        found = self.call(f"looking up the {kind} {name!r}", lambda: getattr(getattr(self.conn, service), method)(name))
        if found is not None:
            self._found[kind, name] = found
        return found

    def compute_limits(self):
        return self.call("reading compute quotas", lambda: self.conn.compute.get_limits()).absolute

    # Network ----------------------------------------------------------------------------------------

    def floating_ips(self, tags: str) -> list:
        return self.call("listing the course's floating IPs", lambda: self.conn.network.ips(tags=tags))

    def create_floating_ip(self, network_id: str, description: str, tags: list[str]):
        fip = self.retrying("creating a floating IP", lambda: self.conn.network.create_ip(
            floating_network_id=network_id, description=description))
        self.call("tagging the floating IP", lambda: self.conn.network.set_tags(fip, tags))
        return fip

    def attach_floating_ip(self, fip, server_id: str) -> None:
        ports = self.call("finding the VM's port", lambda: self.conn.network.ports(device_id=server_id))
        if not ports:
            raise CoursekitError("the VM has no network port")
        self.retrying("attaching the floating IP", lambda: self.conn.network.update_ip(fip, port_id=ports[0].id))

    def delete_floating_ip(self, fip) -> None:
        self.call("releasing the floating IP", lambda: self.conn.network.delete_ip(fip))

    def network_quota(self):
        return self.call("reading network quotas", lambda: self.conn.network.get_quota(self.conn.current_project_id, details=True))

    def security_groups(self, tags: str) -> list:
        return self.call("listing security groups", lambda: self.conn.network.security_groups(tags=tags))

    def create_security_group(self, name: str, description: str, tags: list[str], rules: list[tuple[int, str]]):
        """A security group admitting TCP on each (port, source) rule, tagged; a source is a CIDR, or
        group:<id> for members of another security group (a remote-group rule)."""
        group = self.call("creating the security group", lambda: self.conn.network.create_security_group(
            name=name, description=description))
        self.call("tagging the security group", lambda: self.conn.network.set_tags(group, tags))
        self.add_rules(group, rules)
        return group

    def add_rules(self, group, rules: list[tuple[int, str]]) -> None:
        """Admit TCP on each (port, source): a CIDR, or group:<id> for members of another security group."""
        for port, cidr in rules:
            source = {"remote_group_id": cidr.removeprefix("group:")} if cidr.startswith("group:") else {"remote_ip_prefix": cidr}
            self.call("adding a security group rule", lambda port=port, source=source: self.conn.network.create_security_group_rule(
                security_group_id=group.id, direction="ingress", ethertype="IPv6" if ":" in source.get("remote_ip_prefix", "") else "IPv4",
                protocol="tcp", port_range_min=port, port_range_max=port, **source))

    def delete_security_group(self, group) -> None:
        self.call("deleting the security group", lambda: self.conn.network.delete_security_group(group))

    # Object store (Swift) -------------------------------------------------------------------------

    def create_container(self, name: str) -> None:
        self.retrying(f"creating the object store container {name!r}", lambda: self.conn.object_store.create_container(name=name))

    def upload_object(self, container: str, name: str, path: Path, metadata: dict[str, str]) -> None:
        """Upload a file (in segments when it is larger than the store takes in one piece)."""
        self.retrying(f"uploading {name}", lambda: self.conn.object_store.create_object(
            container, name, filename=str(path), metadata=metadata))

    def stream_object(self, container: str, name: str) -> Iterator[bytes]:
        """An object's bytes, as they are read."""
        try:
            yield from self.conn.object_store.stream_object(name, container, chunk_size=1 << 20)
        except oserr.NotFoundException:
            raise CoursekitError(f"{container}/{name} is not in the object store (the upload did not arrive)") from None
        except (oserr.SDKException, ksaerr.ClientException) as exc:
            raise CoursekitError(f"reading {container}/{name} failed: {exc}") from None

    def delete_object(self, container: str, name: str) -> None:
        self.call(f"deleting {container}/{name}", lambda: self.conn.object_store.delete_object(name, container=container))

    def objects(self, container: str, prefix: str) -> list:
        try:
            return self.call(f"listing the object store container {container!r}",
                             lambda: self.conn.object_store.objects(container, prefix=prefix))
        except CoursekitError as exc:
            if "404" in str(exc) or "Not Found" in str(exc):
                return []
            raise

    def temp_url(self, container: str, name: str, seconds: int) -> str:
        """A link that downloads one object without a credential until it expires (Swift TempURL, HMAC-SHA1 as the
        SDK signs it); the container gets a random signing key the first time."""
        store = self.conn.object_store

        def key() -> bytes | str:
            found = store.get_temp_url_key(container)
            if found:
                return found
            store.set_container_temp_url_key(container, secrets.token_hex(32))
            return store.get_temp_url_key(container)
        signing_key = self.call(f"reading the download-link key of {container!r}", key)
        endpoint = urllib.parse.urlsplit(self.call("finding the object store", store.get_endpoint))
        prefix, _, account = endpoint.path.partition("/v1/")  # Ceph RGW (Jetstream2) serves Swift under /swift
        path = f"/v1/{account.strip('/')}/{container}/{urllib.parse.quote(name)}"
        signed = self.call(f"signing a download link for {name}",
                           lambda: store.generate_temp_url(path, seconds, "GET", temp_url_key=signing_key))
        return f"{endpoint.scheme}://{endpoint.netloc}{prefix}{signed}"

    def object_metadata(self, container: str, name: str) -> dict[str, str] | None:
        """An object's metadata (None when there is no such object)."""
        try:
            found = self.conn.object_store.get_object_metadata(name, container)
        except oserr.NotFoundException:
            return None
        except (oserr.SDKException, ksaerr.ClientException) as exc:
            raise CoursekitError(f"reading {container}/{name} failed: {exc}") from None
        return {key.lower(): value for key, value in (found.metadata or {}).items()}


def age(server) -> float:
    """Seconds since the server was created."""
    created = datetime.fromisoformat(server.created_at.replace("Z", "+00:00"))
    return (datetime.now(timezone.utc) - created).total_seconds()


def fault(server) -> str:
    """What nova says went wrong with a server in ERROR."""
    return (server.fault or {}).get("message", "no fault given")
