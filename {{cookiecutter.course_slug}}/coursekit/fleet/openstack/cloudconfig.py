"""clouds.yaml for a CI runner: the course's cloud entry (fleet.openstack.cloud) with an application credential.

The workflows hand over the repository's secrets (OS_APPLICATION_CREDENTIAL_ID, _SECRET) and its optional
variables OS_AUTH_URL, OS_REGION_NAME and OS_INTERFACE; unset or empty ones mean Jetstream2 at IU.
"""
from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Mapping

import yaml

from coursekit.errors import CoursekitError

JETSTREAM2_IU = {"OS_AUTH_URL": "https://js2.jetstream-cloud.org:5000/v3/", "OS_REGION_NAME": "IU", "OS_INTERFACE": "public"}
INTERFACES = ("public", "internal", "admin")
DEFAULT_PATH = Path("~/.config/openstack/clouds.yaml")


def settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The cloud's address, region and interface (defaults for what is unset or empty), checked."""
    found = {key: (environ.get(key) or "").strip() or default for key, default in JETSTREAM2_IU.items()}
    url = urllib.parse.urlsplit(found["OS_AUTH_URL"])
    if url.scheme not in ("http", "https") or not url.hostname or any(c.isspace() for c in found["OS_AUTH_URL"]):
        raise CoursekitError(f"OS_AUTH_URL {found['OS_AUTH_URL'][:100]!r} is not an address like "
                             f"{JETSTREAM2_IU['OS_AUTH_URL']}; fix the repository variable (Settings → Variables)")
    if found["OS_INTERFACE"] not in INTERFACES:
        raise CoursekitError(f"OS_INTERFACE {found['OS_INTERFACE'][:40]!r} is not one of {', '.join(INTERFACES)}")
    if not found["OS_REGION_NAME"].replace("-", "").replace("_", "").isalnum():
        raise CoursekitError(f"OS_REGION_NAME {found['OS_REGION_NAME'][:40]!r} is not a region name (like IU or TACC)")
    return found


def clouds_yaml(cloud: str, environ: Mapping[str, str]) -> str:
    """clouds.yaml text with one entry, cloud, authenticated by the application credential in environ."""
    credential = {key: (environ.get(f"OS_APPLICATION_CREDENTIAL_{key.upper()}") or "").strip() for key in ("id", "secret")}
    if missing := [f"OS_APPLICATION_CREDENTIAL_{k.upper()}" for k, v in credential.items() if not v]:
        raise CoursekitError(f"{' and '.join(missing)} not set: add the Jetstream2 application credential to the "
                             "repository's secrets (Settings → Secrets and variables → Actions) under these names")
    found = settings(environ)
    entry = {"auth_type": "v3applicationcredential", "identity_api_version": 3,
             "region_name": found["OS_REGION_NAME"], "interface": found["OS_INTERFACE"],
             "auth": {"auth_url": found["OS_AUTH_URL"], "application_credential_id": credential["id"],
                      "application_credential_secret": credential["secret"]}}
    return yaml.safe_dump({"clouds": {cloud: entry}}, sort_keys=False)


def write(path: Path, text: str) -> Path:
    """Write text to path, owner-only from the first byte, replacing it whole."""
    path = path.expanduser()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, path)
    return path
