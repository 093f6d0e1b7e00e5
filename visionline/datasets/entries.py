"""What a format reader hands the checks: the images its labels name, and the problems found.

Readers do not open images: the checks (``visionline.datasets.validate``) decode each one, so
that every reason a file is refused comes out of one place with the same wording.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from visionline.datasets.model import Box

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


class Problem(NamedTuple):
    """A file refused, and why. ``file`` is relative to the dataset folder."""

    file: str
    reason: str


@dataclass
class Entry:
    """One image as its labels name it, before its file is checked."""

    name: str  # relative to the dataset folder, for the report
    path: Path  # where the labels say the file is (not resolved: the checks do that)
    split: str = ""
    label: str | None = None  # classification
    boxes: list[Box] = field(default_factory=list)  # detection, in pixels
    # YOLO boxes: (label, cx, cy, w, h) as fractions of the image, scaled once it is decoded.
    relative_boxes: list[tuple[str, float, float, float, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # found while reading its labels


@dataclass
class Parsed:
    task: str
    classes: list[str]
    entries: list[Entry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # files that are no image's


def escapes(name: str) -> bool:
    """True for a name that points outside the folder it is relative to: absolute, a drive,
    or with ``..``. Symlinks are the checks' business (they resolve the path)."""
    posix = PurePosixPath(name.replace("\\", "/"))
    return posix.is_absolute() or ".." in posix.parts or (len(name) > 1 and name[1] == ":")


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
