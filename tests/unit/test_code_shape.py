"""The code's shape that issue 16 set: small service entry points, no long functions."""

from __future__ import annotations

import ast
from pathlib import Path

from visionline.settings import REPO_ROOT

MAX_MAIN_LINES = 40
MAX_FUNCTION_LINES = 60


def _sources() -> list[Path]:
    roots = [REPO_ROOT / "visionline", REPO_ROOT / "services"]
    return [p for root in roots for p in sorted(root.rglob("*.py")) if "migrations" not in p.parts]


def test_every_service_entry_point_only_wires_handlers() -> None:
    long = {
        str(p.relative_to(REPO_ROOT)): n
        for p in sorted((REPO_ROOT / "services").glob("*/__main__.py"))
        if (n := len(p.read_text().splitlines())) > MAX_MAIN_LINES
    }
    assert not long, f"__main__.py over {MAX_MAIN_LINES} lines (move logic to handlers.py): {long}"


def test_no_function_is_longer_than_a_screen() -> None:
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(
                        f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name} ({lines})"
                    )
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
