"""The one exception tree: everything a user can fix is a CoursekitError."""
from __future__ import annotations

from dataclasses import dataclass


class CoursekitError(Exception):
    """A problem the user can fix; the message says what, where and how."""


@dataclass(frozen=True, order=True)
class Problem:
    """One finding in a config file, located by line and key path."""

    line: int
    path: str
    message: str
    file: str = "course.yaml"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        path = self.path if len(self.path) <= MAX_PATH else self.path[: MAX_PATH - 3] + "..."  # a key may be huge
        return f"{where}: {path}: {self.message}" if path else f"{where}: {self.message}"


MAX_SHOWN = 100  # problems listed; the rest are counted
MAX_PATH = 120  # characters of a key path in a message
MAX_MESSAGE = 600  # characters of one problem: a value quoted in it may be megabytes long


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 30] + f"... ({len(text):,} characters)"


class ConfigError(CoursekitError):
    """course.yaml has one or more problems; all are reported at once (the first hundred listed)."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        count = len(self.problems)
        files = sorted({p.file for p in self.problems})
        where = f" in {files[0]}" if len(files) == 1 else ""
        head = f"{count} problem{'s' if count != 1 else ''}{where}:" if count else ""
        lines = [f"  {_clip(str(p))}" for p in self.problems[:MAX_SHOWN]]
        if count > MAX_SHOWN:
            lines.append(f"  ... and {count - MAX_SHOWN:,} more; fix these first")
        super().__init__("\n".join([head, *lines]))


class SecretError(CoursekitError):
    """COURSEKIT_SECRET is missing or too weak."""


class DockerError(CoursekitError):
    """The Docker engine is unreachable or refused a request."""


class BuildError(CoursekitError):
    """An image build step failed; the message shows the step and its last output."""


class PublishError(CoursekitError):
    """Logging in to or pushing to the registry failed."""


class ImageTestError(CoursekitError):
    """One or more checks of `coursekit test` failed."""


class ArchiveError(CoursekitError):
    """A seat's home could not be archived, or its archive does not match the home."""


class BudgetError(CoursekitError):
    """The course needs more SUs than the allocation holds."""
