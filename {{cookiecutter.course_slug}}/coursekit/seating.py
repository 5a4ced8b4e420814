"""Who sits where after `coursekit swap`: seating.yaml beside course.yaml, one `person: spare-N` line per move.

A committed file, not course.yaml rewritten (that would lose the instructor's comments) nor cloud tags (a Docker host
has none to change on a container, and a laptop rehearsal or a CI deploy reads the repository, not the cloud): every
`deploy`, `roster`, `status`, `teardown` and `takehome` reads it through seats.seats(), so a later deploy neither
moves the student back nor makes their old seat anew.
"""
from __future__ import annotations

import re
from pathlib import Path

from coursekit.errors import ConfigError
from coursekit.yamlload import load_file

FILE = "seating.yaml"
HEADER = ("# Who sits where, written by `python -m coursekit swap`: commit it, so that every deploy, roster,\n"
          "# status and teardown (here and in GitHub Actions) knows. A person's line: <their id>: <the spare they use>.\n")
SPARE = re.compile(r"spare-[1-9][0-9]{0,4}")


def read(root: Path, people: set[str], spares: int) -> tuple[tuple[str, str], ...]:
    """(person id, spare seat) pairs from root/seating.yaml ((): no file); ConfigError naming the line otherwise."""
    path = root / FILE
    if not path.is_file():
        return ()
    doc = load_file(path)
    if doc.problems:
        raise ConfigError(doc.problems)
    data = doc.data if doc.data is not None else {}
    problems = []
    if not isinstance(data, dict):
        raise ConfigError([doc.problem((), "expected lines like `ann: spare-1`")])
    taken: dict[str, str] = {}
    for person, seat in data.items():
        if person not in people:
            problems.append(doc.problem((person,), f"{person!r} is no student or instructor in course.yaml; remove the line"))
        elif not isinstance(seat, str) or not SPARE.fullmatch(seat) or int(seat.split("-")[1]) > spares:
            problems.append(doc.problem((person,), f"{seat!r} is not one of the course's spares (spare-1 to spare-{spares})"))
        elif seat in taken:
            problems.append(doc.problem((person,), f"{seat} is already {taken[seat]}'s; one person to a seat"))
        else:
            taken[seat] = person
    if problems:
        raise ConfigError(problems)
    return tuple((person, seat) for seat, person in taken.items())


def write(root: Path, seating: dict[str, str]) -> Path:
    """seating.yaml for these moves (person → spare), in a stable order."""
    path = root / FILE
    path.write_text(HEADER + "".join(f"{person}: {seat}\n" for person, seat in sorted(seating.items())))
    return path
