"""cloud-init user-data that turns a fresh VM into one seat: the bootstrap script plus the seat's settings."""
from __future__ import annotations

import shlex
from pathlib import Path

import yaml

BOOTSTRAP = Path(__file__).with_name("bootstrap.sh")
SEAT_ENV = "/etc/coursekit/seat.env"
BOOTSTRAP_PATH = "/usr/local/sbin/coursekit-bootstrap"


def seat_env(seat: str, image: str, token: str, site: str, **extra: str | int) -> str:
    """The bootstrap's settings as shell assignments, every value quoted."""
    values = {"SEAT": seat, "IMAGE": image, "JUPYTER_TOKEN": token, "SITE": site, **extra}
    return "".join(f"{key}={shlex.quote(str(value))}\n" for key, value in values.items())


def user_data(seat: str, image: str, token: str, site: str, hostname: str) -> str:
    """#cloud-config that writes the settings (root-only) and the bootstrap, then runs it once."""
    config = {
        "hostname": hostname,
        "write_files": [
            {"path": SEAT_ENV, "owner": "root:root", "permissions": "0600", "content": seat_env(seat, image, token, site)},
            {"path": BOOTSTRAP_PATH, "owner": "root:root", "permissions": "0755", "content": BOOTSTRAP.read_text()},
        ],
        "runcmd": [[BOOTSTRAP_PATH, SEAT_ENV]],
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1000)
