"""What the image build may take from the course repository: regular files inside it, nothing else.

A build copies notebooks/, the repository's own data files, the Dockerfile and the lock into the image or
its build context. A symlink there is followed by a copy, so one link (to /proc/self/environ, ~/.ssh, a
runner's credentials) would publish whatever it points at to every student. Links to regular files inside
the repository are fine and copied as those files; everything else is refused with its path, both by
`validate` and again by the build's staging.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from coursekit.errors import CoursekitError

NOTEBOOKS = "notebooks"
# What the image carries from the repository (besides data[] files and notebooks/), and what archives must stay out of.
COPIED = (NOTEBOOKS, "data", ".coursekit", "Dockerfile", ".dockerignore")
MAX_PROBLEMS = 20


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def file_problem(root: Path, rel: str) -> str | None:
    """Why root/rel cannot go into a build: a link out of the repository, a folder link, or not a regular file."""
    root = root.resolve()
    path = root / rel
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        return f"is a link to nothing (it points at {os.readlink(path)!r}); remove it" if path.is_symlink() else None
    except (OSError, RuntimeError):
        return "is a link that loops or cannot be followed; remove it"
    if not _inside(real, root):
        return (f"is a link to {real}, outside this repository; the build would copy that file into the image "
                "for every student to read. Copy the file into the repository instead")
    if real == root / ".git" or root / ".git" in real.parents:
        return "is a link into .git; copy the file instead"
    mode = os.stat(real).st_mode
    if stat.S_ISDIR(mode) and path.is_symlink():
        return f"is a link to a folder ({real.relative_to(root) or '.'}); use a real folder or link files one by one"
    if not stat.S_ISDIR(mode) and not stat.S_ISREG(mode):
        return "is not a regular file (a device, socket or pipe); remove it"
    return None


def tree_problems(root: Path, folder: str = NOTEBOOKS) -> list[tuple[str, str]]:
    """(path, why) for every path under root/folder (the folder included) that a build must not copy, at most
    MAX_PROBLEMS. Only links and special files need a closer look; plain files and folders are fine as they are."""
    found: list[tuple[str, str]] = []
    top = root / folder
    if top.is_symlink():
        return [(folder, why)] if (why := file_problem(root, folder)) else []
    pending = [top]
    while pending and len(found) < MAX_PROBLEMS:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.name == ".ipynb_checkpoints":
                continue
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            elif entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                rel = str(PurePosixPath(Path(entry.path).relative_to(root)))
                if why := file_problem(root, rel):
                    found.append((rel, why))
    return sorted(found)[:MAX_PROBLEMS]


def require_clean(root: Path, extra: tuple[str, ...] = ()) -> None:
    """Raise a CoursekitError naming every path under notebooks/ (and the extra files) that a build must not copy."""
    found = tree_problems(root) + [(rel, why) for rel in extra if (why := file_problem(root, rel))]
    if found:
        raise CoursekitError("the build would copy what it must not:\n  " + "\n  ".join(f"{rel} {why}" for rel, why in found))


def dockerfile_sources(root: Path) -> set[str]:
    """The top-level repository paths the Dockerfile's COPY and ADD take from the build context ("." for all)."""
    try:
        text = (root / "Dockerfile").read_text(errors="replace")
    except OSError:
        return set()
    sources = set()
    for line in text.replace("\\\n", " ").splitlines():
        words = line.split()
        if len(words) < 3 or words[0].upper() not in ("COPY", "ADD") or any(w.startswith("--from") for w in words[1:]):
            continue  # --from copies from another image, not from the repository
        args = [w for w in words[1:] if not w.startswith("--")]
        for source in args[:-1]:
            first = PurePosixPath(source.strip('"[],')).parts
            sources.add(first[0] if first and first[0] != "/" else ".")
    return sources


def target_problem(root: Path, target: str) -> str | None:
    """Why an archive folder may not be root/target: inside what the build copies, or (in the repository) reached
    through a link."""
    root = root.resolve()
    path = Path(target) if os.path.isabs(target) else root / target
    normal = Path(os.path.normpath(path))
    real = normal.resolve()
    if not os.path.isabs(target) and real != normal:
        return (f"{target!r} goes through a link (it is really {real}); archives hold students' work, so give the "
                "real folder")
    for copied in (*COPIED, *(s for s in dockerfile_sources(root) if s != ".")):
        if _inside(real, root / copied):
            return (f"{target!r} is inside {copied}, which the build copies into the image: every student (and the "
                    "image's registry) would get the archives. Use a folder the build does not copy, like archives")
    return None
