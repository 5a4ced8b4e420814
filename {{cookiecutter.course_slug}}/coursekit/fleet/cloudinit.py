"""cloud-init user-data that turns a fresh VM into one seat: the bootstrap script plus the seat's settings."""
from __future__ import annotations

import shlex
from pathlib import Path

import yaml

BOOTSTRAP = Path(__file__).with_name("bootstrap.sh")
UPDATER = Path(__file__).with_name("update.sh")
SEAT_ENV = "/etc/coursekit/seat.env"
BOOTSTRAP_PATH = "/usr/local/sbin/coursekit-bootstrap"
UPDATER_PATH = "/usr/local/sbin/coursekit-update"
UPDATER_SERVICE = f"""[Unit]
Description=coursekit: switch the seat to the image in the server's metadata
After=docker.service

[Service]
Type=oneshot
ExecStart={UPDATER_PATH} {SEAT_ENV}
"""
UPDATER_TIMER = """[Unit]
Description=coursekit: check the server's metadata for a new course image

[Timer]
OnBootSec=60s
OnUnitInactiveSec=20s

[Install]
WantedBy=timers.target
"""


def seat_env(seat: str, image: str, token: str, site: str, **extra: str | int) -> str:
    """The bootstrap's settings as shell assignments, every value quoted."""
    values = {"SEAT": seat, "IMAGE": image, "JUPYTER_TOKEN": token, "SITE": site, **extra}
    return "".join(f"{key}={shlex.quote(str(value))}\n" for key, value in values.items())


def user_data(seat: str, image: str, token: str, site: str, hostname: str) -> str:
    """#cloud-config that writes the settings (root-only), the bootstrap and the updater, runs the
    bootstrap once and starts the updater's timer."""
    config = {
        "hostname": hostname,
        "write_files": [
            {"path": SEAT_ENV, "owner": "root:root", "permissions": "0600", "content": seat_env(seat, image, token, site)},
            {"path": BOOTSTRAP_PATH, "owner": "root:root", "permissions": "0755", "content": BOOTSTRAP.read_text()},
            {"path": UPDATER_PATH, "owner": "root:root", "permissions": "0755", "content": UPDATER.read_text()},
            {"path": "/etc/systemd/system/coursekit-update.service", "content": UPDATER_SERVICE},
            {"path": "/etc/systemd/system/coursekit-update.timer", "content": UPDATER_TIMER},
        ],
        "runcmd": [[BOOTSTRAP_PATH, SEAT_ENV], ["systemctl", "enable", "--now", "coursekit-update.timer"]],
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1000)
