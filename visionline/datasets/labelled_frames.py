"""Frames labelled in production as a dataset version, like any import.

The labels are those the labels worker stored from ``visionline.labels.feedback`` (an
annotator, an operator, a later inspection); the images are the frames themselves, read back
from the raw-frames topic. Each frame becomes an image of the version:

- a classify camera's frame (``label``): a classification image of that class;
- a detect camera's frame (``objects``): a detection image, one box per object, its class;
- an inspect camera's frame (``parts``): a detection image, one box per part, ``good`` or
  ``defective``, cut to the frame (a part mostly outside it is left out, as training does).

The images go through the same checks and the same store as ``visionline datasets import``, so
the version is content-addressed, and exported to CVAT, corrected and imported back, it becomes
a new version. A label whose frame is no longer on the topic (past its retention) is reported,
and a version is made of the rest only when ``skip_invalid`` says so.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from sqlalchemy import Engine

from visionline.datasets.entries import Entry, Parsed, Problem
from visionline.datasets.importing import ImportResult, check_name, keep_checked
from visionline.datasets.model import Box, FloatBox
from visionline.datasets.store import DatasetStore
from visionline.datasets.validate import check, decoded_size
from visionline.messages import LabelFeedback, Topic

LabelledFrame = tuple[LabelFeedback, bytes, str]  # the labels, the encoded image, its type

FORMAT = "labels"  # what the registry records as the version's format
GOOD, DEFECTIVE = "good", "defective"
MIN_VISIBLE = 0.5  # of a part's box inside the frame, for it to be a box of the image
SUFFIXES = {"image/png": ".png", "image/webp": ".webp", "image/bmp": ".bmp"}


class MixedTasks(ValueError):
    """Classify cameras' frames (one class each) and detect or inspect cameras' (boxes) asked
    for in one dataset."""


def task_of(label: LabelFeedback) -> str:
    return "classification" if label.label is not None else "detection"


def clipped(box: FloatBox, size: tuple[int, int]) -> FloatBox | None:
    """``box`` cut to the frame, or None when less than MIN_VISIBLE of it is inside."""
    x0, y0, x1, y1 = box
    cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, size[0]), min(y1, size[1])
    area = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    inside = max(0.0, cx1 - cx0) * max(0.0, cy1 - cy0)
    if area <= 0 or inside < MIN_VISIBLE * area:
        return None
    return (cx0, cy0, cx1, cy1)


def boxes_of(label: LabelFeedback, size: tuple[int, int]) -> list[Box]:
    """A detect frame's objects, or an inspect frame's parts, as boxes inside the frame."""
    found = [(o.class_name, o.box) for o in label.objects]
    found += [(DEFECTIVE if p.defective else GOOD, p.box) for p in label.parts]
    boxes = [(name, clipped(box, size)) for name, box in found]
    return [Box(label=name, box=box) for name, box in boxes if box is not None]


def frame_entry(label: LabelFeedback, path: Path, root: Path) -> Entry:
    name = path.relative_to(root).as_posix()
    if label.label is not None:
        return Entry(name=name, path=path, label=label.label)
    size, _ = decoded_size(path.read_bytes())
    # An undecodable frame keeps no boxes: the checks refuse its file with the reason.
    return Entry(name=name, path=path, boxes=boxes_of(label, size) if size else [])


def frame_key(label: LabelFeedback) -> tuple[str, str]:
    return label.camera_id, label.frame_id


def file_name(label: LabelFeedback, content_type: str) -> str:
    """``<camera>/<frame id><suffix>``, safe as a path whatever the ids hold."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in label.frame_id)
    camera = "".join(c if c.isalnum() or c in "._-" else "_" for c in label.camera_id)
    return f"{camera}/{safe}{SUFFIXES.get(content_type, '.jpg')}"


def write_frames(
    frames: Iterable[LabelledFrame], root: Path
) -> tuple[Parsed, set[tuple[str, str]]]:
    """The frames' images written under ``root`` and read as entries; the frames written."""
    entries, tasks, classes, seen = [], set(), set(), set()
    for label, data, content_type in frames:
        if frame_key(label) in seen:  # a frame replayed twice (a camera's retry) is one image
            continue
        seen.add(frame_key(label))
        path = root / file_name(label, content_type)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        entry = frame_entry(label, path, root)
        tasks.add(task_of(label))
        classes |= {entry.label} if entry.label else {b.label for b in entry.boxes}
        entries.append(entry)
    if len(tasks) > 1:
        raise MixedTasks(
            "frames of classify cameras (one class each) and of detect or inspect cameras "
            "(boxes) cannot be one dataset: choose the cameras of one pipeline"
        )
    task = tasks.pop() if tasks else "detection"
    return Parsed(task=task, classes=sorted(classes), entries=entries), seen


def store_labelled_frames(
    frames: Iterable[LabelledFrame],
    labels: list[LabelFeedback],
    name: str,
    source: str,
    engine: Engine,
    store: DatasetStore,
    *,
    created_by: str | None = None,
    skip_invalid: bool = False,
) -> ImportResult:
    """A version of dataset ``name`` of the labelled ``frames`` (label, encoded image, content
    type). ``labels`` are all that were asked for: one whose frame is missing is a problem."""
    check_name(name)
    with tempfile.TemporaryDirectory(prefix="visionline-labelled-") as folder:
        root = Path(folder)
        parsed, written = write_frames(frames, root)
        missing = [x for x in labels if frame_key(x) not in written]
        parsed.problems += [
            Problem(file_name(x, ""), "frame not found on the raw-frames topic (past retention?)")
            for x in missing
        ]
        checked = check(root, parsed)
        return keep_checked(checked, name, FORMAT, source, engine, store, created_by, skip_invalid)


def replay_labelled(
    engine: Engine, bootstrap: str, cameras: Sequence[str], start: float, end: float
) -> tuple[list[LabelFeedback], list[LabelledFrame]]:
    """The latest labels of ``cameras``' frames captured from ``start`` to ``end`` (epoch s),
    and the frames of them still on the raw-frames topic. A frame reaches the broker after its
    capture (late when its camera lags): the topic is read from a minute before ``start``."""
    from visionline.labels.store import labelled_frames
    from visionline.replay import replay_frames

    labels = [x for c in cameras for x in labelled_frames(engine, c, start, end)]
    wanted = {frame_key(x): x for x in labels}
    found: list[LabelledFrame] = []
    if not wanted:
        return labels, found
    since_ms, now_ms = int((start - 60) * 1000), int(time.time() * 1000)
    for frame in replay_frames(bootstrap, str(Topic.RAW_FRAMES), cameras, since_ms, now_ms):
        label = wanted.get((frame.camera_id, frame.frame_id))
        if label is not None:
            found.append((label, frame.data, frame.content_type))
    return labels, found
