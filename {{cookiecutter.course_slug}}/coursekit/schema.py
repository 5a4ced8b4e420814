"""The course.yaml JSON Schema: loading it, explaining its errors, applying its defaults."""
from __future__ import annotations

import difflib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators

from coursekit.errors import CoursekitError
from coursekit.yamlload import Document

SCHEMA_PATH = Path(__file__).with_name("course.schema.json")
_TYPE_WORDS = {"object": "a mapping of keys", "array": "a list", "string": "text", "integer": "a whole number", "number": "a number", "boolean": "true or false"}


# JSON Schema counts 1000.0 as an integer; coursekit uses integers as counts, ports and ranges, so a float is refused.
_STRICT_TYPES = Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda checker, value: isinstance(value, int) and not isinstance(value, bool)
)
@cache
def _ecma(pattern: str) -> re.Pattern:
    """A schema pattern as JSON Schema means it (ECMA-262): `$` is the end of the text. Python's `$` also matches
    before a final newline, so "NAME\\n" would pass "^[A-Z]+$" and break the Dockerfile or clouds.yaml."""
    return re.compile(re.sub(r"(?<!\\)\$(?=\)|\||$)", r"\\Z", pattern))


def _pattern(validator, pattern: str, instance: Any, schema: dict):
    if validator.is_type(instance, "string") and not _ecma(pattern).search(instance):
        yield ValidationError(f"{instance[:80]!r} does not match {pattern!r}")


CourseValidator = validators.extend(Draft202012Validator, {"pattern": _pattern}, type_checker=_STRICT_TYPES)


@cache
def course_schema() -> dict:
    """The schema that the post-generation hook copied next to this module."""
    try:
        return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CoursekitError(f"{SCHEMA_PATH} is missing; it comes from the course template's schema/ (re-bake, or copy it back)") from None


def compose(schema: dict, fragments: dict[str, dict]) -> dict:
    """schema with fleet.provider's choices and each fleet.<provider> section from that provider's own fragment (pure)."""
    fleet = schema["properties"]["fleet"]
    props = fleet["properties"]
    shared = {key: value for key, value in props.items() if key not in props["provider"]["enum"] and key not in fragments}
    provider = {**shared["provider"], "enum": sorted(fragments)}
    return {**schema, "properties": {**schema["properties"], "fleet": {
        **fleet, "properties": {**shared, "provider": provider, **fragments}}}}


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a yes/no value; put it in quotes if you meant text)"
    if isinstance(value, dict):
        return "a mapping of keys"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"text {value!r}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    # Explicit YAML tags make other kinds: !!binary, !!set, !!timestamp.
    kinds = {bytes: "binary data (a !!binary tag)", set: "a set (a !!set tag)"}
    kind = next((word for cls, word in kinds.items() if isinstance(value, cls)), None)
    return kind or f"a {type(value).__name__} (a YAML tag made it; write the value in quotes)"


def _short(key: Any) -> str:
    """A key as a message quotes it: a 300 kB key is its first 80 characters."""
    return repr(key) if len(str(key)) <= 80 else repr(str(key)[:80]) + f"... ({len(str(key)):,} characters)"


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else "allowed: " + ", ".join(choices)


def _explain(error: ValidationError, doc: Document) -> list[tuple[tuple, str]]:
    path, kind, value, instance = tuple(error.absolute_path), error.validator, error.validator_value, error.instance
    if kind == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        return [((*path, key), f"unknown key {_short(key)}; {_suggest(str(key)[:200], allowed)}") for key in instance if key not in allowed]
    if kind == "required":
        key = error.message.split("'")[1]
        description = error.schema["properties"].get(key, {}).get("description", "")
        return [(path, f"missing required key {key!r}" + (f" ({description})" if description else ""))]
    if kind == "type":
        types = [value] if isinstance(value, str) else value
        expected = " or ".join(_TYPE_WORDS.get(t, t) for t in types)
        quote = "string" in types and isinstance(instance, (int, float)) and not isinstance(instance, bool)
        whole = "integer" in types and isinstance(instance, float) and instance.is_integer()
        hint = "; put it in quotes" if quote else (f"; write it without a decimal point ({int(instance)})" if whole else "")
        return [(path, f"expected {expected}, got {_describe(instance)}{hint}")]
    if kind == "enum":
        return [(path, f"{instance!r} is not a valid choice; {_suggest(instance, [str(v) for v in value])}")]
    if kind == "minLength":
        return [(path, "must not be empty")]
    if kind == "pattern" and "propertyNames" in error.relative_schema_path:
        return [((*path, instance), f"{instance!r} is not a valid name (letters, digits and '_', not starting with a digit)")]
    if kind == "pattern" and path[-1:] == ("cloud",):
        return [(path, f"{instance[:80]!r} is not a clouds.yaml entry name (letters, digits, '.', '_' and '-', one line)")]
    if kind == "minProperties":
        allowed = ", ".join(error.schema.get("properties", {}))
        return [(path, f"is empty; give at least one of: {allowed}")]
    if kind == "maxLength":
        return [(path, f"is {len(instance):,} characters long; at most {value:,} are allowed")]
    if kind == "maxItems":
        return [(path, f"has {len(instance):,} entries; at most {value:,} are allowed (a course has at most 5,000 seats)")]
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        bound = {"minimum": "at least", "exclusiveMinimum": "more than", "maximum": "at most", "exclusiveMaximum": "less than"}[kind]
        return [(path, f"{instance!r} is out of range; it must be {bound} {value:,}")]
    return [(path, error.message[:300])]


def schema_problems(doc: Document) -> list:
    """Every schema violation in doc, as located Problems with plain-language messages."""
    validator = CourseValidator(course_schema())
    return [doc.problem(path, message) for error in validator.iter_errors(doc.data) for path, message in _explain(error, doc)]


def _resolve(node: dict, root: dict) -> dict:
    ref = node.get("$ref", "")
    if ref.startswith("#/"):
        for part in ref[2:].split("/"):
            root = root[part]
        return root
    return node


def with_defaults(data: Any, node: dict | None = None, root: dict | None = None) -> Any:
    """A copy of valid data with every schema default filled in (absent mappings count as empty)."""
    root = root or course_schema()
    node = _resolve(node or root, root)
    if isinstance(data, dict) and "properties" in node:
        out = dict(data)
        for key, sub in node["properties"].items():
            sub = _resolve(sub, root)
            if key not in out and "default" in sub:
                out[key] = sub["default"]
            elif key not in out and sub.get("type") == "object":
                out[key] = {}
            if key in out:
                out[key] = with_defaults(out[key], sub, root)
        return out
    if isinstance(data, list) and "items" in node:
        return [with_defaults(item, node["items"], root) for item in data]
    return data
