"""The template's own code, the bundled coursekit and the tests pass ruff (config in pyproject.toml)."""
import functools
import subprocess
import sys

from conftest import TEMPLATE


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=TEMPLATE, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@functools.cache
def _imports() -> dict[str, list[tuple[str, bool]]]:
    """module → [(coursekit module it imports, at module level?)], read from the bundled package's source."""
    import ast

    package = TEMPLATE / "{{cookiecutter.course_slug}}" / "coursekit"
    found: dict[str, list[tuple[str, bool]]] = {}
    for path in package.rglob("*.py"):
        name = ".".join(("coursekit", *path.relative_to(package).with_suffix("").parts)).removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                       for n in ast.walk(node)}
        top = {id(node) for node in tree.body}
        edges = []
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("coursekit"):
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("coursekit")]
            else:
                continue
            edges += [(t, id(node) in top) for t in targets]
        found[name] = edges
    return {m: [(t, level) for t, level in edges if t in found] for m, edges in found.items()}


def test_the_package_has_no_import_circle():
    graph = {m: {t for t, _ in edges if t != m} for m, edges in _imports().items()}  # lazy imports too
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        for target in sorted(graph[module]):
            if not target.startswith(module + "."):  # a package importing its own modules is no circle
                visit(target, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_no_module_outside_fleet_reaches_into_it_but_the_cli():
    """The fleet depends on the rest, never the other way: only the CLI (which wires them) imports a fleet module."""
    climbs = sorted(f"{m} imports {t}" for m, edges in _imports().items() for t, _ in edges
                    if t.startswith("coursekit.fleet") and not m.startswith("coursekit.fleet") and m != "coursekit.cli")
    assert climbs == []
