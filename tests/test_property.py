"""Random mutations of a valid course.yaml never make coursekit raise: they get problems or a Course."""
from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow  # hundreds of generated course.yaml files per property

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


# Every command that reads course.yaml without a cloud, on random mutations: a result or a clear error,
# within a time and memory budget. Mutations lean on what once crashed or hung: float/int swaps, huge and
# negative numbers, unicode, alias structures.
HOSTILE_VALUES = (
    st.sampled_from([1000.0, 9500.0, 1e300, -1, 0, 2**63, 10**8, float("nan"), float("inf"), "", "0m", "0.5k", "::1",
                     "LOCALHOST:5000", "[::1]:5000", "./x.csv", "a/b", "=HYPERLINK(1)", "\u2028", "ü" * 300])
    | VALUES
)
ALIAS_BOMBS = st.integers(2, 12).map(
    lambda n: "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}" if i else "x"] * n) + "]\n" for i in range(8))
)
COMMAND_BUDGET_S = 10
RSS_BUDGET_MB = 400


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_commands(coursekit, course_repo, tmp_path_factory, text: str) -> None:
    import time

    from coursekit import cli

    folder = tmp_path_factory.mktemp("mutant")
    (folder / "data").mkdir()
    (folder / "data" / "brain_volumes.csv").write_bytes((course_repo / "data" / "brain_volumes.csv").read_bytes())
    (folder / "course.yaml").write_text(text, encoding="utf-8", errors="surrogateescape")
    before = _peak_rss_mb()
    for command in (["validate"], ["cost"], ["roster", "--format", "csv", "--output", str(folder / "r.csv")]):
        started = time.monotonic()
        code = cli.main([*command, "--config", str(folder / "course.yaml")])
        assert code in (0, 1), (command, code)
        assert time.monotonic() - started < COMMAND_BUDGET_S, command
    assert _peak_rss_mb() - before < RSS_BUDGET_MB


@given(data=st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_offline_command_survives_mutations(coursekit, course_repo, tmp_path_factory, monkeypatch, data):
    monkeypatch.setenv("COURSEKIT_SECRET", "property-tests-7Qx2Lm9Kp4Zt")
    monkeypatch.delenv("CI", raising=False)
    tree = yaml.safe_load((course_repo / "course.yaml").read_text())
    path = data.draw(st.sampled_from([p for p in _paths(tree) if p]))
    parent = tree
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = data.draw(HOSTILE_VALUES)
    text = yaml.safe_dump(tree, allow_unicode=True)
    if data.draw(st.booleans()):
        text = data.draw(ALIAS_BOMBS) + text
    _run_commands(coursekit, course_repo, tmp_path_factory, text)


def test_the_planner_is_linear_in_the_seat_count(coursekit):
    import time

    from coursekit.fleet.plan import Desired, Observed, plan

    timings = {}
    for count in (500, 5000):
        desired = [Desired(f"s{n}", "img", "cfg") for n in range(count)]
        observed = [Observed(f"s{n}", f"c{n}", "old" if n % 2 else "img", "cfg", "running") for n in range(count)]
        started = time.perf_counter()
        actions = plan(desired, observed)
        timings[count] = time.perf_counter() - started
        assert len(actions) == count
    assert timings[5000] < 1.0


@given(st.text(alphabet="ab*?.[!]-^\\&/", min_size=1, max_size=10), st.text(alphabet="ab.-[]!^\\&*/", min_size=1, max_size=10))
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_notebook_glob_matches_as_fnmatch_does_name_by_name(coursekit, glob, rel):
    """The one-regex glob agrees with the plain definition: fnmatch on each name, ** for any number of folders."""
    import fnmatch
    from functools import cache

    from coursekit.validate import glob_matches

    parts, names = glob.split("/"), rel.split("/")
    assume("" not in names)  # a notebook's path: names, never empty

    @cache
    def reference(i: int, j: int) -> bool:
        if i == len(parts):
            return j == len(names)
        if parts[i] == "**":
            return reference(i + 1, j) or (j < len(names) and reference(i, j + 1))
        return j < len(names) and fnmatch.fnmatchcase(names[j], parts[i]) and reference(i + 1, j + 1)

    assert glob_matches(glob, rel) == reference(0, 0)
