"""Load YAML safely and remember the line of every key, so errors can point at it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from coursekit.errors import ConfigError, CoursekitError, Problem

KeyPath = tuple[str, ...]


def format_path(path: tuple[Any, ...]) -> str:
    """Render ("seats", "students", 2, "id") as seats.students[2].id."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass
class Document:
    """Parsed YAML plus the line where each key path starts."""

    data: Any
    file: str
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def line(self, path: tuple[Any, ...]) -> int:
        """Line of the deepest existing prefix of path (0 if none)."""
        path = tuple(p if isinstance(p, int) else str(p) for p in path)
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 0)

    def problem(self, path: tuple[Any, ...], message: str) -> Problem:
        """A Problem located at path."""
        return Problem(self.line(path), format_path(path), message, self.file)


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps dates as strings and reports duplicate keys."""

    duplicate_problems: list[tuple[int, str]]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        self.flatten_mapping(node)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, float, bool)):
                continue  # unhashable keys are refused by SafeLoader itself
            if key in seen:
                self.duplicate_problems.append(
                    (line, f"duplicate key {key!r} (first defined on line {seen[key]}); keep only one")
                )
            else:
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


# Timestamps stay strings: the schema and our own checks parse them, with clear messages.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _index(node: yaml.Node, path: tuple[Any, ...], lines: dict, active: set[int]) -> None:
    if id(node) in active:  # a recursive alias; its lines are already known
        return
    lines.setdefault(path, node.start_mark.line + 1)
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = path + (str(key_node.value),)
            lines[child] = key_node.start_mark.line + 1
            _index(value_node, child, lines, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, path + (i,), lines, active)
    active.discard(id(node))


def _tab_problems(text: str, file: str) -> list[Problem]:
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            problems.append(
                Problem(number, "", "a tab is used for indentation; YAML indents with spaces only (replace the tab with spaces)", file)
            )
    return problems


def _syntax_problem(exc: yaml.YAMLError, text: str, file: str) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text[: exc.position].count("\n") + 1
        return Problem(line, "", f"the character U+{exc.character:04X} is not allowed in YAML; delete it", file)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    what = " ".join(str(part) for part in (getattr(exc, "context", None), getattr(exc, "problem", None)) if part)
    hint = "check the indentation, and put quotes around values that contain ': ' or start with a special character"
    return Problem(mark.line + 1 if mark else 0, "", f"YAML syntax error: {what or exc}; {hint}", file)


def load_text(text: str, file: str) -> Document:
    """Parse YAML text into a Document; syntax problems are collected, not raised."""
    tabs = _tab_problems(text, file)
    if tabs:
        return Document(None, file, problems=tabs)
    try:
        loader = _Loader(text)  # the reader rejects control characters already here
        loader.duplicate_problems = []
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        return Document(None, file, problems=[_syntax_problem(exc, text, file)])
    doc = Document(data, file)
    if node is not None:
        _index(node, (), doc.lines, set())
    doc.problems = [Problem(line, "", message, file) for line, message in loader.duplicate_problems]
    if data is None:
        doc.problems.append(Problem(0, "", "the file is empty; start from the course.yaml that cookiecutter generated", file))
    elif not isinstance(data, dict):
        kind = type(data).__name__.replace("str", "a single value").replace("list", "a list")
        doc.problems.append(
            Problem(1, "", f"the top level must be a mapping of keys (course:, image:, seats:, ...), found {kind}", file)
        )
    return doc


def load_file(path: Path) -> Document:
    """Read and parse a YAML file; a missing or unreadable file is a CoursekitError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CoursekitError(
            f"{path}: no such file. Run coursekit from your course repository's root, "
            "or point at the file with --config path/to/course.yaml"
        ) from None
    except OSError as exc:
        raise CoursekitError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        bad = raw[exc.start : exc.start + 1].hex()
        raise ConfigError([Problem(line, "", f"byte 0x{bad} is not UTF-8 text; save the file as UTF-8", str(path))]) from None
    return load_text(text, str(path))
