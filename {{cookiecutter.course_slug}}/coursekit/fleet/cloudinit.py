"""cloud-init user-data that turns a fresh VM into one seat: the bootstrap script plus the seat's settings."""
from __future__ import annotations

import shlex
from pathlib import Path

import yaml

BOOTSTRAP = Path(__file__).with_name("bootstrap.sh")
UPDATER = Path(__file__).with_name("update.sh")
HOMESTREAM = Path(__file__).with_name("homestream.py")
GATEWAY_BOOTSTRAP = Path(__file__).with_name("gateway.sh")
GATEWAY_ROUTES = Path(__file__).with_name("gatewayroutes.py")
GATEWAY_RENDER = Path(__file__).with_name("gateway.py")
GATEWAY_ENV = "/etc/coursekit/gateway.env"
GATEWAY_LIB = "/usr/local/lib/coursekit"
GATEWAY_BOOTSTRAP_PATH = "/usr/local/sbin/coursekit-gateway-bootstrap"
GATEWAY_CERT = "/etc/coursekit/tls/gateway.crt"
GATEWAY_KEY = "/etc/coursekit/tls/gateway.key"
GATEWAY_SERVICE = f"""[Unit]
Description=coursekit: the gateway's control service (routes from coursekit deploy, Caddy reloads)
After=network-online.target caddy.service

[Service]
ExecStart=/usr/bin/python3 {GATEWAY_LIB}/gatewayroutes.py {GATEWAY_ENV}
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""
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
# Each stream becomes the home's owner keeping one capability, reading past file modes (a student's own mode-000
# files are work too): it writes (a swap onto this seat) only what the student could, and only under Docker's
# volumes; the rest of the system is read-only, no new privileges. It never follows a link (homestream.py).
CapabilityBoundingSet=CAP_DAC_READ_SEARCH CAP_SETUID CAP_SETGID
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=/var/lib/docker/volumes
ProtectHome=yes
PrivateTmp=yes

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


def _tls_files(tls: tuple[str, str] | None, cert: str, key: str) -> list[dict]:
    return [
        {"path": cert, "owner": "root:root", "permissions": "0644", "content": tls[0]},
        {"path": key, "owner": "root:root", "permissions": "0600", "content": tls[1]},
    ] if tls else []


def user_data(seat: str, image: str, token: str, site: str, hostname: str, tls: tuple[str, str] | None = None,
              gateway_port: int | None = None, mirror: str | None = None) -> str:
    """#cloud-config that writes the settings (root-only), the seat's TLS certificate and key when given,
    the bootstrap, the updater and the home streamer, runs the bootstrap once and starts the updater's timer.
    With gateway_port the seat serves plain HTTP on that port under /<seat>/, for the course's gateway only;
    with mirror (host:port) it pulls the course image through the gateway's cache."""
    tls_files = _tls_files(tls, TLS_CERT, TLS_KEY)
    extra = {"TLS_CERT": TLS_CERT, "TLS_KEY": TLS_KEY} if tls else {}
    if gateway_port:
        extra.update(GATEWAY_PORT=gateway_port, BASE_URL=f"/{seat}/")
    if mirror:
        extra["MIRROR"] = mirror
    env = seat_env(seat, image, token, site, **extra)
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


def gateway_user_data(site: str, token: str, hostname: str, tls: tuple[str, str] | None = None,
                      upstream: str = "", registry_auth: tuple[str, str] | None = None, title: str = "",
                      subdomains: bool = False) -> str:
    """#cloud-config for the course's gateway: its settings (root-only), its TLS certificate and key when
    given, Caddy's route renderer and the control service, and, with upstream, a pull-through cache of that
    registry (with registry_auth for a private image); no cloud credential of any kind."""
    values = {"SITE": site, "TOKEN": token, "ROUTES": f"{GATEWAY_LIB}/gatewayroutes.py", **({"TITLE": title} if title else {}),
              **({"SUBDOMAINS": "1"} if subdomains else {}),
              **({"TLS_CERT": GATEWAY_CERT, "TLS_KEY": GATEWAY_KEY} if tls else {}),
              **({"REGISTRY_UPSTREAM": upstream} if upstream else {}),
              **({"REGISTRY_USERNAME": registry_auth[0], "REGISTRY_PASSWORD": registry_auth[1]} if registry_auth else {})}
    env = "".join(f"{key}={shlex.quote(str(value))}\n" for key, value in values.items())
    config = {
        "hostname": hostname,
        "write_files": [
            {"path": GATEWAY_ENV, "owner": "root:root", "permissions": "0600", "content": env},
            *_tls_files(tls, GATEWAY_CERT, GATEWAY_KEY),
            {"path": GATEWAY_BOOTSTRAP_PATH, "owner": "root:root", "permissions": "0755", "content": GATEWAY_BOOTSTRAP.read_text()},
            {"path": f"{GATEWAY_LIB}/gatewayroutes.py", "owner": "root:root", "permissions": "0644", "content": GATEWAY_ROUTES.read_text()},
            {"path": f"{GATEWAY_LIB}/gateway.py", "owner": "root:root", "permissions": "0644", "content": GATEWAY_RENDER.read_text()},
            {"path": "/etc/systemd/system/coursekit-gateway.service", "content": GATEWAY_SERVICE},
        ],
        "runcmd": [[GATEWAY_BOOTSTRAP_PATH, GATEWAY_ENV]],
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1000)
