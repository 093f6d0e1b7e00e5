"""Layers go one way: the services import the shared package, never the reverse, and no
module imports itself back through others (issue 16)."""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

from visionline.settings import REPO_ROOT


def imported_modules(tree: ast.AST) -> set[str]:
    """Every module an ``import`` or ``from ... import`` names, at any depth (function-level
    imports too)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_shared_package_never_imports_a_service():
    offending = {}
    for path in sorted((REPO_ROOT / "visionline").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        services = sorted(m for m in imported_modules(tree) if m.split(".")[0] == "services")
        if services:
            offending[str(path.relative_to(REPO_ROOT))] = services
    assert offending == {}


def test_imports_are_found_at_any_depth():
    tree = ast.parse("import a.b\nfrom c import d\ndef f():\n    from services.x import y\n")
    assert imported_modules(tree) == {"a.b", "c", "services.x"}


PROJECT_PACKAGES = ("visionline", "services")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PROJECT_PACKAGES
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
    }


def imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every module (or module attribute) an import names, at any depth, relative ones resolved:
    ``from a import b`` gives ``a.b``, which ``import_graph`` reads as ``a`` unless ``b`` is a
    submodule."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: None if is_package else -1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Project module -> the project modules it imports (the longest known prefix of each name)."""

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        names = imported_names(tree, module, path.name == "__init__.py")
        graph[module] = {known(n) for n in names if known(n)} - {module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle, as a path that returns to its start, per strongly connected group of modules."""
    cycles, done = [], set()
    for start in sorted(graph):
        if start in done:
            continue
        path = _path_back(graph, start)
        if path:
            cycles.append(path)
            done |= set(path)
    return cycles


def _path_back(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """The shortest import path from ``start`` back to itself (breadth first), if any."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        module = queue.popleft()
        for target in sorted(graph.get(module, ())):
            if target == start:
                path = [module]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if target not in came_from:
                came_from[target] = module
                queue.append(target)
    return None


def test_no_import_cycle_among_project_modules():
    cycles = import_cycles(import_graph(project_modules()))
    assert not cycles, "import cycles (function-level imports count too):\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles
    )


def test_a_cycle_is_found_and_shown_as_a_path():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert import_cycles(graph) == [["a", "b", "c", "a"], ["e", "e"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_relative_imports_resolve_to_project_modules():
    tree = ast.parse("from . import b\nfrom .c import d\nfrom .. import e\n")
    names = imported_names(tree, "pkg.sub.mod", is_package=False)
    assert {"pkg.sub.b", "pkg.sub.c.d", "pkg.e"} <= names
