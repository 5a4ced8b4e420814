"""schema/course.schema.json: valid against its metaschema, self-explaining, strict about typos."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TEMPLATE
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

SCHEMA = json.loads((TEMPLATE / "schema" / "course.schema.json").read_text())
FIXED_KEYS = [
    ("image", "registry"),
    ("image", "repository"),
    ("image", "python_packages"),
    ("image", "base"),
    ("seats", "students", "[]", "id"),
    ("seats", "spares"),
    ("fleet", "provider"),
    ("data", "[]", "sha256"),
    ("data", "[]", "unpack"),
    ("image", "env"),
    ("test", "timeout"),
    ("test", "notebooks"),
]


def _objects(node: dict, path: str = "$"):
    """Every object schema in the tree, with where it is."""
    if node.get("type") == "object":
        yield path, node
    for key, sub in node.get("properties", {}).items():
        yield from _objects(sub, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from _objects(node["items"], f"{path}[]")
    for key, sub in node.get("$defs", {}).items():
        yield from _objects(sub, f"{path}.$defs.{key}")


def _lookup(path: tuple[str, ...]) -> dict:
    node = SCHEMA
    for part in path:
        node = node["items"] if part == "[]" else node["properties"][part]
        if "$ref" in node:
            node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def test_schema_is_valid_against_its_metaschema():
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(SCHEMA)


def test_metaschema_check_can_fail():
    with pytest.raises(SchemaError):
        Draft202012Validator.check_schema({**SCHEMA, "type": "mapping"})


def test_every_object_refuses_unknown_keys():
    objects = list(_objects(SCHEMA))
    assert len(objects) >= 10
    for path, node in objects:
        # A map keyed by the instructor's own names (image.env, test.notebooks) constrains its values instead.
        is_map = "properties" not in node and isinstance(node.get("additionalProperties"), dict)
        assert node.get("additionalProperties") is False or is_map, path


def test_every_property_has_a_description():
    for path, node in _objects(SCHEMA):
        for key, sub in node.get("properties", {}).items():
            if "$ref" not in sub:
                assert len(sub.get("description", "")) > 15, f"{path}.{key}"


@pytest.mark.parametrize("path", FIXED_KEYS, ids=lambda p: ".".join(p))
def test_fixed_keys_of_the_design_exist(path):
    assert _lookup(path)


def test_the_package_holds_no_copy_of_the_schema():
    package = TEMPLATE / "{{cookiecutter.course_slug}}" / "coursekit"
    assert not (package / "course.schema.json").exists()
    assert (Path(package / "schema.py").read_text()).count("course.schema.json") == 1


def test_the_provider_enum_is_the_registry(coursekit):
    # One registry: the schema's enum, the CLI's --provider choices and fleet_for read the same names.
    from coursekit.cli import build_parser
    from coursekit.fleet.provider import provider_class
    from coursekit.fleet.registry import PROVIDERS

    assert _lookup(("fleet", "provider"))["enum"] == sorted(PROVIDERS)
    deploy = next(a for a in build_parser()._subparsers._group_actions[0].choices["deploy"]._actions if a.dest == "provider")
    assert list(deploy.choices) == sorted(PROVIDERS)
    for name in PROVIDERS:
        assert provider_class(name).name == name


def test_the_schema_is_composed_from_the_providers_fragments(coursekit):
    """Each fleet.<provider> section of the one file is that provider's own fragment; scripts/compose-schema writes it."""
    from coursekit.fleet.registry import schema_fragments
    from coursekit.schema import compose

    fragments = schema_fragments()
    assert compose(SCHEMA, fragments) == SCHEMA, "schema/course.schema.json is stale: run scripts/compose-schema"
    changed = {**fragments, "docker": {**fragments["docker"], "description": "another text"}}
    assert compose(SCHEMA, changed) != SCHEMA  # the check can fail
    kube = compose(SCHEMA, {**fragments, "kubernetes": {"type": "object", "description": "a third kind of fleet"}})
    assert _fleet(kube)["provider"]["enum"] == sorted([*fragments, "kubernetes"]) and "kubernetes" in _fleet(kube)


def _fleet(schema: dict) -> dict:
    return schema["properties"]["fleet"]["properties"]
