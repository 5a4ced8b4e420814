"""cloud-init user-data that turns a fresh VM into one seat: the bootstrap script plus the seat's settings."""
from __future__ import annotations

import shlex
from pathlib import Path

import yaml

BOOTSTRAP = Path(__file__).with_name("bootstrap.sh")
UPDATER = Path(__file__).with_name("update.sh")
HOMESTREAM = Path(__file__).with_name("homestream.py")
SEAT_ENV = "/etc/coursekit/seat.env"
TLS_CERT = "/etc/coursekit/tls/seat.crt"
TLS_KEY = "/etc/coursekit/tls/seat.key"
BOOTSTRAP_PATH = "/usr/local/sbin/coursekit-bootstrap"
UPDATER_PATH = "/usr/local/sbin/coursekit-update"
HOMESTREAM_PATH = "/usr/local/sbin/coursekit-homestream"
HOMESTREAM_SERVICE = f"""[Unit]
Description=coursekit: the seat's home folder as a tar stream on the loopback interface, for archives
After=docker.service

[Service]
ExecStart=/usr/bin/python3 {HOMESTREAM_PATH} coursekit-${{SEAT}}-home 8890
EnvironmentFile={SEAT_ENV}
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""
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


def user_data(seat: str, image: str, token: str, site: str, hostname: str, tls: tuple[str, str] | None = None) -> str:
    """#cloud-config that writes the settings (root-only), the seat's TLS certificate and key when given,
    the bootstrap, the updater and the home streamer, runs the bootstrap once and starts the updater's timer."""
    tls_files = [
        {"path": TLS_CERT, "owner": "root:root", "permissions": "0644", "content": tls[0]},
        {"path": TLS_KEY, "owner": "root:root", "permissions": "0600", "content": tls[1]},
    ] if tls else []
    env = seat_env(seat, image, token, site, **({"TLS_CERT": TLS_CERT, "TLS_KEY": TLS_KEY} if tls else {}))
    config = {
        "hostname": hostname,
        "write_files": [
            {"path": SEAT_ENV, "owner": "root:root", "permissions": "0600", "content": env},
            *tls_files,
            {"path": BOOTSTRAP_PATH, "owner": "root:root", "permissions": "0755", "content": BOOTSTRAP.read_text()},
            {"path": UPDATER_PATH, "owner": "root:root", "permissions": "0755", "content": UPDATER.read_text()},
            {"path": HOMESTREAM_PATH, "owner": "root:root", "permissions": "0755", "content": HOMESTREAM.read_text()},
            {"path": "/etc/systemd/system/coursekit-homestream.service", "content": HOMESTREAM_SERVICE},
            {"path": "/etc/systemd/system/coursekit-update.service", "content": UPDATER_SERVICE},
            {"path": "/etc/systemd/system/coursekit-update.timer", "content": UPDATER_TIMER},
        ],
        "runcmd": [[BOOTSTRAP_PATH, SEAT_ENV], ["systemctl", "enable", "--now", "coursekit-update.timer"]],
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1000)
