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
        # Importing a.b.c runs a/__init__ and a/b/__init__ first: those are edges too.
        edges += [(".".join(t.split(".")[:n]), level) for t, level in list(edges) for n in range(2, t.count(".") + 1)]
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


LIGHT = ("coursekit.fleet", "coursekit.fleet.registry")  # what the core may read of the fleet: the providers' sections


def test_no_module_outside_fleet_reaches_into_it_but_the_cli():
    """The fleet depends on the rest, never the other way: only the CLI (which wires them) imports a fleet module;
    the rest may read the registry, which reaches each provider's light section by name."""
    climbs = sorted(f"{m} imports {t}" for m, edges in _imports().items() for t, _ in edges
                    if t.startswith("coursekit.fleet") and not m.startswith("coursekit.fleet") and m != "coursekit.cli"
                    and t not in LIGHT)
    assert climbs == []


def test_the_core_names_no_provider():
    """Outside fleet/, no module says which providers exist: a new one is a package and a registry line."""
    import re

    package = TEMPLATE / "{{cookiecutter.course_slug}}" / "coursekit"
    words = re.compile(r"openstack|jetstream|dockerhost|DockerProvider|provider == |fleet\.docker\b", re.IGNORECASE)
    found = [f"{path.relative_to(package)}:{n}: {line.strip()}" for path in sorted(package.glob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if words.search(line)]
    assert found == []


def test_the_sections_are_light(course_repo):
    """validate, config, cost and the registry's sections load no cloud or engine SDK: `coursekit validate` is fast."""
    import subprocess
    import sys

    code = ("import sys, coursekit.config, coursekit.cost, coursekit.validate, coursekit.imagetest as _; "
            "from coursekit.fleet import registry; [registry.section(n) for n in registry.PROVIDERS]; "
            "print(sorted(m for m in ('openstack', 'keystoneauth1') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=course_repo, check=True)
    assert result.stdout.strip() == "[]"


def test_the_docker_sdk_is_imported_only_by_the_engine():
    """One Docker boundary, as fleet/openstack/cloud.py is OpenStack's: the SDK and its errors stay in engine.py."""
    import ast

    package = TEMPLATE / "{{cookiecutter.course_slug}}" / "coursekit"
    importers = sorted({str(path.relative_to(package)) for path in package.rglob("*.py")
                       for node in ast.walk(ast.parse(path.read_text()))
                       if isinstance(node, (ast.Import, ast.ImportFrom))
                       and any(name.split(".")[0] == "docker" for name in
                               ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]))})
    assert importers == ["engine.py"]
