"""Which versions Triton serves: the ``version_policy`` of a model's ``config.pbtxt``.

Triton (explicit model control) serves exactly the versions of the policy when the model is
(re)loaded. ``with_versions`` rewrites only that field and keeps everything else of the file
(comments, order, spacing) as it was; a config without one gets it appended. Rewriting with the
same versions gives the same text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

CONFIG = "config.pbtxt"
FIELD = "version_policy"
_COMMENT = "# Versions served, set by `visionline models promote|rollback`."


class PolicyError(ValueError):
    """The config's version_policy could not be read or rewritten."""


def policy_text(versions: Sequence[int]) -> str:
    if not versions or any(int(v) < 1 for v in versions):
        raise PolicyError(f"versions must be positive integers, got {list(versions)}")
    listed = ", ".join(str(int(v)) for v in sorted(set(versions)))
    return f"{FIELD}: {{ specific: {{ versions: [ {listed} ] }} }}"


def _top_level_tokens(text: str):
    """(start, end, depth) of each bare word outside comments and strings."""
    depth, i, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif c in "\"'":
            end = i + 1
            while end < n and text[end] != c:
                end += 2 if text[end] == "\\" else 1
            i = end + 1
        elif c in "{[":
            depth += 1
            i += 1
        elif c in "}]":
            depth -= 1
            i += 1
        elif c.isalpha() or c == "_":
            end = i
            while end < n and (text[end].isalnum() or text[end] == "_"):
                end += 1
            yield i, end, depth
            i = end
        else:
            i += 1


def _block_end(text: str, brace: int) -> int:
    """Index just after the ``}`` that closes the ``{`` at ``brace``."""
    depth, i = 0, brace
    while i < len(text):
        c = text[i]
        if c == "#":
            i = text.find("\n", i)
            if i < 0:
                break
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise PolicyError(f"unbalanced braces in {FIELD}")


def _policy_span(text: str) -> tuple[int, int] | None:
    for start, end, depth in _top_level_tokens(text):
        if depth == 0 and text[start:end] == FIELD:
            match = re.compile(r"\s*:?\s*\{").match(text, end)
            if not match:
                raise PolicyError(f"{FIELD} is not followed by a {{ ... }} block")
            return start, _block_end(text, match.end() - 1)
    return None


def with_versions(text: str, versions: Sequence[int]) -> str:
    """``text`` with its version_policy set to ``specific: { versions: [...] }``."""
    new = policy_text(versions)
    span = _policy_span(text)
    if span is not None:
        return text[: span[0]] + new + text[span[1] :]
    body = text if text.endswith("\n") or not text else text + "\n"
    return f"{body}\n{_COMMENT}\n{new}\n"


def served_versions(text: str) -> list[int] | None:
    """The versions a ``specific`` policy names; None when the config has no policy or another
    kind (``latest``, ``all``: then Triton picks by the folders present)."""
    span = _policy_span(text)
    if span is None:
        return None
    block = text[span[0] : span[1]]
    block = re.sub(r"#[^\n]*", "", block)
    match = re.search(r"specific\s*:?\s*\{\s*versions\s*:?\s*\[([^\]]*)\]", block)
    if not match:
        single = re.search(r"specific\s*:?\s*\{\s*versions\s*:?\s*(\d+)", block)
        return [int(single.group(1))] if single else None
    return sorted(int(v) for v in re.findall(r"\d+", match.group(1)))


def write_versions(model_dir: Path, versions: Sequence[int]) -> str:
    """Set the policy in ``model_dir/config.pbtxt`` atomically; returns the previous text."""
    path = model_dir / CONFIG
    if not path.is_file():
        raise PolicyError(f"no {path}")
    old = path.read_text(encoding="utf-8")
    write_text_atomic(path, with_versions(old, versions))
    return old


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
