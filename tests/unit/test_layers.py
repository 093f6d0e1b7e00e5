"""Layers go one way: the services import the shared package, never the reverse (issue 16)."""

from __future__ import annotations

import ast

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
