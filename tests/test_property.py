"""Random mutations of a valid course.yaml never make coursekit raise: they get problems or a Course."""
from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=6,
)
YAML_CHARS = st.sampled_from(list(" \t\n:-[]{}#&*!|>'\"%@`,?=0aZ"))
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


def _check(coursekit, course_repo, text: str) -> None:
    from coursekit.config import build_course, problems
    from coursekit.errors import ConfigError
    from coursekit.yamlload import load_text

    doc = load_text(text, "course.yaml")
    found = problems(doc, course_repo)
    if found:
        assert all(p.message for p in found)
        str(ConfigError(found))
    else:
        course = build_course(doc.data, course_repo)
        assert course.course.hours > 0


@given(data=st.data())
@SETTINGS
def test_structural_mutations_never_raise(coursekit, course_repo, data):
    tree = yaml.safe_load((course_repo / "course.yaml").read_text())
    paths = [p for p in _paths(tree) if p]
    path = data.draw(st.sampled_from(paths))
    parent = tree
    for part in path[:-1]:
        parent = parent[part]
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace":
        parent[path[-1]] = data.draw(VALUES)
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[data.draw(st.text(max_size=12))] = data.draw(VALUES)
    else:
        parent.append(data.draw(VALUES))
    _check(coursekit, course_repo, yaml.safe_dump(tree, allow_unicode=True))


@given(data=st.data())
@SETTINGS
def test_text_mutations_never_raise(coursekit, course_repo, data):
    text = (course_repo / "course.yaml").read_text()
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 8))
        insert = data.draw(st.text(alphabet=YAML_CHARS, max_size=6) | st.text(max_size=3))
        text = text[:at] + insert + text[at + cut:]
    _check(coursekit, course_repo, text)
