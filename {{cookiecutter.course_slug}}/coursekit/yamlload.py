"""Load YAML safely and remember the line of every key, so errors can point at it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from coursekit.errors import ConfigError, CoursekitError, Problem

KeyPath = tuple[str, ...]
MAX_BYTES = 4 * 1024 * 1024  # a 5,000-seat roster is about 0.5 MB
MAX_VALUES = 200_000  # values after expanding aliases: far above any real course, far below a billion laughs


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


class _Checks:
    """A safe loader's constructor that reports duplicate keys (mixed into both loaders below)."""

    duplicate_problems: list[tuple[int, str]]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        # Only the mapping's own keys can be duplicates: keys merged in by `<<: *base` are meant to be overridden.
        own = [(k, v) for k, v in node.value if k.tag != "tag:yaml.org,2002:merge"]
        self.flatten_mapping(node)
        seen: dict[Any, int] = {}
        for key_node, _ in own:
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


    def construct_yaml_int(self, node: yaml.ScalarNode) -> Any:
        digits = sum(c.isdigit() for c in node.value)
        if digits > MAX_DIGITS:  # Python refuses to read more than 4,300 digits
            raise Refused(node.start_mark.line + 1, f"a number of {digits:,} digits, far more than any setting takes: "
                                                    "check the value on this line (put text in quotes)")
        return super().construct_yaml_int(node)


MAX_DIGITS = 4000  # below Python's own limit, far above any checksum written as digits


class Refused(yaml.YAMLError):
    """A value the loader will not construct, with the line it is on."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line, self.message = line, message


class _Loader(_Checks, yaml.SafeLoader):
    """The pure-Python parser: slower, but its error messages are the ones users see."""


# libyaml's parser reads a 5,000-seat roster about ten times faster; a document it refuses is parsed
# again by the pure-Python one, so every message stays the same.
_FastLoader = type("_FastLoader", (_Checks, getattr(yaml, "CSafeLoader", yaml.SafeLoader)), {})
for _loader in (_Loader, _FastLoader):
    _loader.add_constructor("tag:yaml.org,2002:int", _Checks.construct_yaml_int)

# Timestamps stay strings: the schema and our own checks parse them, with clear messages.
_Loader.yaml_implicit_resolvers = _FastLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _index(node: yaml.Node, path: tuple[Any, ...], lines: dict, seen: set[int]) -> None:
    """Record the line of every key path, visiting each node once: an alias's children keep its anchor's lines."""
    if id(node) in seen:
        return
    seen.add(id(node))
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = path + (str(key_node.value),)
            lines[child] = key_node.start_mark.line + 1
            _index(value_node, child, lines, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, path + (i,), lines, seen)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else []


def _expanded_size(node: yaml.Node, limit: int, sizes: dict[int, int], active: set[int]) -> int:
    """How many values node holds once every alias is expanded, counted without expanding (capped at limit+1).
    An alias inside its own anchor counts as over the limit."""
    if id(node) in active:
        return limit + 1
    if id(node) not in sizes:
        active.add(id(node))
        total = 1
        for child in _children(node):
            total = min(limit + 1, total + _expanded_size(child, limit, sizes, active))
        active.discard(id(node))
        sizes[id(node)] = total
    return sizes[id(node)]


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


def _parse(text: str) -> tuple[yaml.SafeLoader, yaml.Node | None]:
    """(loader, root node): the fast parser when it accepts text, else the pure-Python one (which raises the message)."""
    if not _Loader.NON_PRINTABLE.search(text):  # the pure-Python reader refuses these, with a message we keep
        fast = _FastLoader(text)
        fast.duplicate_problems = []
        try:
            return fast, fast.get_single_node()
        except yaml.YAMLError:
            pass
    loader = _Loader(text)
    loader.duplicate_problems = []
    return loader, loader.get_single_node()


def load_text(text: str, file: str) -> Document:
    """Parse YAML text into a Document; syntax problems are collected, not raised."""
    tabs = _tab_problems(text, file)
    if tabs:
        return Document(None, file, problems=tabs)
    try:
        loader, node = _parse(text)
        if node is not None and _expanded_size(node, MAX_VALUES, {}, set()) > MAX_VALUES:
            return Document(None, file, problems=[Problem(
                0, "", f"too many aliases: expanding them gives more than {MAX_VALUES:,} values, or an alias "
                "refers to itself; write the values out, or use fewer aliases (*name) of large anchors (&name)", file)])
        data = loader.construct_document(node) if node is not None else None
    except Refused as exc:
        return Document(None, file, problems=[Problem(exc.line, "", exc.message, file)])
    except yaml.YAMLError as exc:
        return Document(None, file, problems=[_syntax_problem(exc, text, file)])
    except RecursionError:
        return Document(None, file, problems=[Problem(
            0, "", "the document nests too deeply (or an alias refers to itself); flatten it", file)])
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
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise CoursekitError(
            f"{path}: no such file. Run coursekit from your course repository's root, "
            "or point at the file with --config path/to/course.yaml"
        ) from None
    except OSError as exc:
        raise CoursekitError(f"{path}: cannot read it ({exc.strerror})") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError([Problem(0, "", f"the file is larger than {MAX_BYTES // 2**20} MiB; a course.yaml is a few kB "
                                           "(even 5,000 seats fit in 1 MiB): keep data files out of it", str(path))])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        bad = raw[exc.start : exc.start + 1].hex()
        raise ConfigError([Problem(line, "", f"byte 0x{bad} is not UTF-8 text; save the file as UTF-8", str(path))]) from None
    return load_text(text, str(path))
