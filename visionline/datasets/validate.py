"""The checks every imported image goes through, each refusal a ``Problem(file, reason)``.

An image is refused with all its labels when its file is missing, escapes the dataset folder
(``..``, an absolute path, a symlink out), does not decode to the end (unreadable or
truncated), repeats an image already taken (same sha256), or when one of its labels names an
unknown class, is empty, or lies outside the image. Boxes that overhang the image by less than
``EDGE_TOLERANCE`` pixels (rounding in the tools) are clipped to it instead.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from visionline.datasets.entries import Entry, Parsed, Problem
from visionline.datasets.model import Box, Dataset, DatasetImage, round_box

EDGE_TOLERANCE = 0.5


@dataclass
class Checked:
    dataset: Dataset  # the images that passed
    files: dict[str, Path]  # sha256 -> the file to store
    problems: list[Problem]  # everything refused, in the order found


def check(root: Path, parsed: Parsed) -> Checked:
    """Decode and check every entry of ``parsed``; the refused ones become problems."""
    inside = root.resolve()
    problems = list(parsed.problems)
    images: list[DatasetImage] = []
    files: dict[str, Path] = {}
    first_seen: dict[str, str] = {}
    for entry in parsed.entries:
        image, reasons = check_entry(entry, inside, set(parsed.classes))
        if image is not None and image.sha256 in first_seen:
            reasons.append(f"duplicate image: same content as {first_seen[image.sha256]}")
        if reasons or image is None:
            problems.extend(Problem(entry.name, reason) for reason in reasons)
            continue
        first_seen[image.sha256] = entry.name
        files[image.sha256] = entry.path
        images.append(image)
    dataset = Dataset(task=parsed.task, classes=sorted(parsed.classes), images=images)  # type: ignore[arg-type]
    return Checked(dataset=dataset, files=files, problems=problems)


def check_entry(
    entry: Entry, inside: Path, classes: set[str]
) -> tuple[DatasetImage | None, list[str]]:
    """The image of ``entry`` and the reasons to refuse it (none: it is taken)."""
    reasons = list(entry.problems)
    resolved = entry.path.resolve()
    if not resolved.is_relative_to(inside):
        return None, [*reasons, f"path escapes the dataset folder (it leads to {resolved})"]
    if not resolved.is_file():
        return None, [*reasons, "missing image file"]
    data = resolved.read_bytes()
    size, error = decoded_size(data)
    if size is None:
        return None, [*reasons, f"unreadable or truncated image: {error}"]
    boxes = checked_boxes(entry, size, classes, reasons)
    if entry.label is not None and entry.label not in classes:
        reasons.append(f"unknown class {entry.label!r}")
    image = DatasetImage(
        file_name=entry.path.name if entry.label is None else f"{entry.label}/{entry.path.name}",
        sha256=hashlib.sha256(data).hexdigest(),
        width=size[0],
        height=size[1],
        split=entry.split,
        label=entry.label,
        boxes=boxes,
    )
    return image, reasons


def decoded_size(data: bytes) -> tuple[tuple[int, int] | None, str]:
    """``((width, height), "")`` when the bytes decode to the last pixel, else ``(None, why)``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.load()  # the whole image: a truncated file fails here, not at open
                return image.size, ""
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Warning) as error:
        return None, str(error) or type(error).__name__


def checked_boxes(
    entry: Entry, size: tuple[int, int], classes: set[str], reasons: list[str]
) -> list[Box]:
    """The entry's boxes in pixels, clipped within the tolerance; each bad one adds a reason."""
    width, height = size
    boxes = list(entry.boxes)
    for label, cx, cy, w, h in entry.relative_boxes:
        x0, y0 = (cx - w / 2) * width, (cy - h / 2) * height
        boxes.append(Box(label=label, box=(x0, y0, x0 + w * width, y0 + h * height)))
    taken = []
    for box in boxes:
        reason = box_problem(box, size, classes)
        if reason:
            reasons.append(reason)
            continue
        x0, y0, x1, y1 = box.box
        clipped = (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))
        taken.append(Box(label=box.label, box=round_box(clipped)))
    return taken


def box_problem(box: Box, size: tuple[int, int], classes: set[str]) -> str:
    x0, y0, x1, y1 = box.box
    shown = f"{box.label} [{x0:g}, {y0:g}, {x1:g}, {y1:g}]"
    if box.label not in classes:
        return f"unknown class {box.label!r}"
    if not x1 > x0 or not y1 > y0:
        return f"empty box {shown}"
    width, height = size
    tol = EDGE_TOLERANCE
    if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
        return f"box outside the image ({width}x{height}): {shown}"
    return ""
