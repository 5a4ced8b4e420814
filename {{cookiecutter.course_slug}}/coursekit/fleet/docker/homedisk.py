"""Bounded seat homes on a Docker host: each home volume is an ext4 filesystem in a file of its own.

A student who fills their home gets "No space left on device"; other seats and the host do not notice.
The engine's local volume driver mounts a block device but cannot attach a file (mount(2) has no `loop`
option), and no container may do it (no privileged containers), so coursekit attaches the file as a loop
device itself: it must run as root on the engine's own machine. The volume names a link under
/run/coursekit/homes/ that coursekit points at the file's loop device before every start. After a reboot
that link is gone (/run is emptied), so a seat cannot come up on another disk: its mount fails until
`deploy` attaches the file again.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from coursekit.errors import CoursekitError

STORE = Path("/var/lib/coursekit/homes")
LINKS = Path("/run/coursekit/homes")
OWNER = "1000:100"  # docker-stacks' notebook user (NB_UID:NB_GID), who owns the home
TOOLS = {"losetup": "mount", "mkfs.ext4": "e2fsprogs", "debugfs": "e2fsprogs", "dumpe2fs": "e2fsprogs"}


def unavailable(engine_url: str) -> str | None:
    """Why homes cannot be bounded from here (None: they can). engine_url is the Docker client's base URL."""
    if not engine_url.startswith("http+docker://local"):
        return "the Docker engine runs on another machine, and its disk files must be attached there"
    if os.geteuid() != 0:
        return "attaching a disk file needs root on the Docker host (run deploy with sudo)"
    missing = [f"{tool} (Debian package {package})" for tool, package in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} is not installed"
    if not Path("/dev/loop-control").exists():
        return "this host has no loop devices (/dev/loop-control is missing)"
    return None


def driver_opts(volume: str) -> dict[str, str]:
    """The local driver's options for a bounded home: mount the ext4 filesystem behind the volume's link."""
    return {"type": "ext4", "device": str(LINKS / volume)}


def bounded(options: dict | None) -> bool:
    """True for a volume created with driver_opts()."""
    return bool(options) and str(options.get("device", "")).startswith(f"{LINKS}/")


def _image(volume: str) -> Path:
    return STORE / f"{volume}.img"


def _run(*command: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CoursekitError(f"{command[0]} failed: {exc}") from None
    if done.returncode:
        raise CoursekitError(f"{' '.join(command)} failed: {(done.stderr or done.stdout).strip()[-300:]}")
    return done.stdout


def create(volume: str, size: int) -> None:
    """A new, empty filesystem file of size bytes for volume, its root owned by the notebook user.

    A file that already exists is kept as it is: it may hold a home whose volume was removed by hand."""
    image = _image(volume)
    if image.exists():
        return
    STORE.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = image.with_suffix(".partial")
    with open(partial, "wb") as handle:  # sparse: disk is used only as the student writes
        os.fchmod(handle.fileno(), 0o600)
        handle.truncate(size)
    # No blocks reserved for root (nobody is root in a seat), and no lost+found in the student's home.
    _run("mkfs.ext4", "-q", "-F", "-m", "0", "-E", f"root_owner={OWNER}", str(partial))
    _run("debugfs", "-w", "-R", "rmdir lost+found", str(partial))
    os.replace(partial, image)


def _devices(image: Path) -> list[str]:
    """Loop devices the file is attached to now."""
    listing = _run("losetup", "--associated", str(image), "--output", "NAME", "--noheadings")
    return listing.split()


def attach(volume: str) -> None:
    """Attach volume's file (once) and point its link at that loop device: what starting its seat needs."""
    image = _image(volume)
    if not image.is_file():
        raise CoursekitError(
            f"the disk file of volume {volume} ({image}) is missing, so its seat cannot start; "
            "if it was moved, put it back; `coursekit teardown` lists what is left"
        )
    device = next(iter(_devices(image)), None) or _run("losetup", "--find", "--show", str(image)).strip()
    LINKS.mkdir(parents=True, exist_ok=True, mode=0o700)
    link, fresh = LINKS / volume, LINKS / f".{volume}.new"
    fresh.unlink(missing_ok=True)
    fresh.symlink_to(device)
    os.replace(fresh, link)


def release(volume: str) -> None:
    """Detach and delete volume's file and link: only once its volume, and so the archived home, is gone."""
    image = _image(volume)
    if image.exists():
        for device in _devices(image):
            _run("losetup", "--detach", device)
        image.unlink()
    (LINKS / volume).unlink(missing_ok=True)


def used_bytes(volume: str, mountpoint: str) -> int | None:
    """What a bounded home holds: the mounted filesystem's own count, else its superblock's (None if unreadable)."""
    mounts = Path("/proc/self/mountinfo").read_text().split("\n")
    if any(line.split(" ")[4:5] == [mountpoint] for line in mounts):
        stat = os.statvfs(mountpoint)
        return (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    try:
        header = _run("dumpe2fs", "-h", str(_image(volume)))
    except CoursekitError:
        return None
    fields = dict(line.split(":", 1) for line in header.splitlines() if ":" in line)
    number = {key: int(fields.get(key, "0").strip() or 0) for key in ("Block count", "Free blocks", "Overhead clusters", "Block size")}
    return (number["Block count"] - number["Free blocks"] - number["Overhead clusters"]) * number["Block size"]


def leftovers(prefix: str) -> list[str]:
    """Disk files whose volume name starts with prefix (teardown's final check)."""
    return [str(p) for p in sorted(STORE.glob(f"{prefix}*.img"))] if STORE.is_dir() else []
