"""Annotated snapshot images, stored on disk and referenced from alerts by ``snapshot://`` URL.

An alert carries a short reference rather than image bytes, so alert topics stay small; the
image lives in a ``SnapshotStore`` directory that ``prune`` keeps within an age and size budget.
Writes are atomic (temp file, then ``os.replace``): a reader sees a whole JPEG or none. They are
not fsynced: a snapshot may be lost on power failure, which an alert can tolerate.

A frame that is already a JPEG can be stored as the camera sent it, with the boxes to draw
beside it (``put_frame``, ``<name>.jpg`` + ``<name>.jpg.boxes.json``): ``render`` draws them when
the snapshot is asked for. The inspect worker stores a snapshot for every frame in which a part
looks defective, and only the few an alert names are ever looked at: drawing and re-encoding
each one cost the worker a sixth of its CPU.

Keys such as ``"line-1/000123-7"`` map to ``<root>/line-1/000123-7.jpg``. Only ``[A-Za-z0-9._-]``
segments starting with a letter or digit are accepted, so a key can never climb out of the root
or collide with the dot-prefixed temp files.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SCHEME = "snapshot://"
SUFFIX = ".jpg"
BOXES_SUFFIX = ".boxes.json"  # beside a frame stored as sent: what ``render`` draws on it
TEMP_GRACE_S = 3600.0  # prune removes temp files left by a crashed writer after this long
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_MAX_KEY = 512

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

Colour = tuple[int, int, int]  # BGR


def frame_key(camera_id: str, frame_id: str) -> str:
    """The key of a frame's snapshot, ``<camera>/<frame id>``; characters a key refuses (a
    frame id may hold ``:``) become ``_``."""
    frame = _UNSAFE.sub("_", frame_id).replace("..", "__")
    return f"{camera_id}/{frame}"


GREEN: Colour = (0, 200, 0)
RED: Colour = (0, 0, 230)
ORANGE: Colour = (0, 140, 255)


def _check_key(key: str) -> str:
    """``key`` if it is a safe relative path, else ValueError."""
    if not key or len(key) > _MAX_KEY:
        raise ValueError(f"snapshot key must have 1 to {_MAX_KEY} characters: {key!r}")
    *dirs, name = key.split("/")
    for segment in [*dirs, name]:
        if not _SEGMENT.fullmatch(segment) or ".." in segment:
            raise ValueError(
                f"bad snapshot key {key!r}: '/'-separated segments of [A-Za-z0-9._-], each "
                "starting with a letter or digit, no '..'"
            )
    if any(d.endswith(SUFFIX) for d in dirs):  # the directory could clash with a snapshot file
        raise ValueError(f"bad snapshot key {key!r}: a directory may not end in {SUFFIX}")
    return key


class SnapshotStore:
    """JPEG snapshots under ``root``, pruned by age (``max_age_s``) and total size
    (``max_bytes``); ``None`` disables either limit."""

    def __init__(
        self, root: Path, max_age_s: float | None = None, max_bytes: int | None = None
    ) -> None:
        if max_age_s is not None and max_age_s < 0:
            raise ValueError("max_age_s must be >= 0")
        if max_bytes is not None and max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.root = Path(root).resolve()
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, jpeg: bytes) -> str:
        """Store ``jpeg`` (drawn already) under ``key``, replacing any earlier one; its
        reference."""
        return self._store(key, jpeg, None)

    def put_frame(self, key: str, jpeg: bytes, boxes: Sequence[AnnotatedBox]) -> str:
        """Store a JPEG frame as sent, with ``boxes`` to draw when it is rendered; its
        reference."""
        return self._store(key, jpeg, json.dumps(_boxes_json(boxes)).encode())

    def _store(self, key: str, jpeg: bytes, boxes: bytes | None) -> str:
        relative = _check_key(key) + SUFFIX
        target = self._resolve(relative)
        for attempt in range(3):  # a concurrent prune may remove the directory in between
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                # The boxes first, so that a reader that finds the frame finds its boxes.
                if boxes is None:
                    _unlink(_boxes_path(target))
                else:
                    self._write_atomic(_boxes_path(target), boxes)
                self._write_atomic(target, jpeg)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        return SCHEME + relative

    def render(self, ref: str, jpeg_quality: int = 85) -> bytes:
        """The snapshot as a JPEG, its boxes drawn if it was stored as a frame; FileNotFoundError
        once pruned, ValueError for a malformed reference."""
        path = self.path_of(ref)
        data = path.read_bytes()
        try:
            boxes = _boxes_from_json(json.loads(_boxes_path(path).read_bytes()))
        except FileNotFoundError:
            return data  # stored annotated
        except (KeyError, TypeError, ValueError) as exc:  # not what put_frame writes
            raise ValueError(f"{ref}: its boxes do not read: {exc!r}") from None
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{ref}: the stored frame does not decode")
        return encode_snapshot(annotate(image, boxes), jpeg_quality)

    def path_of(self, ref: str) -> Path:
        """The file a reference points to (it may have been pruned); ValueError if malformed."""
        if not ref.startswith(SCHEME) or not ref.endswith(SUFFIX):
            raise ValueError(f"not a snapshot reference: {ref!r}")
        relative = ref[len(SCHEME) :]
        _check_key(relative[: -len(SUFFIX)])
        return self._resolve(relative)

    def get(self, ref: str) -> bytes:
        """The stored bytes; FileNotFoundError once pruned."""
        return self.path_of(ref).read_bytes()

    def prune(self, now: float | None = None) -> int:
        """Delete snapshots older than ``max_age_s``, then the oldest until the total size is at
        most ``max_bytes``; remove emptied directories. Returns how many snapshots went."""
        now = time.time() if now is None else now
        files = self._snapshots()
        removed = 0
        if self.max_age_s is not None:
            keep = []
            for mtime, size, path in files:
                if now - mtime > self.max_age_s:
                    removed += _remove_snapshot(path)
                else:
                    keep.append((mtime, size, path))
            files = keep
        if self.max_bytes is not None:
            total = sum(size for _, size, _ in files)
            for _, size, path in sorted(files, key=lambda f: (f[0], str(f[2]))):
                if total <= self.max_bytes:
                    break
                removed += _remove_snapshot(path)
                total -= size
        self._remove_stale_temps(now)
        self._remove_empty_dirs()
        return removed

    def _resolve(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):  # a symlink inside root pointing out
            raise ValueError(f"snapshot path leaves the store: {relative!r}")
        return path

    @staticmethod
    def _write_atomic(target: Path, data: bytes) -> None:
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def _snapshots(self) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of every stored snapshot, temp files excluded."""
        out = []
        for path in self.root.rglob("*" + SUFFIX):
            if path.name.startswith("."):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            out.append((st.st_mtime, st.st_size, path))
        return out

    def _remove_stale_temps(self, now: float) -> None:
        for path in self.root.rglob(".*.tmp"):
            try:
                if now - path.stat().st_mtime > TEMP_GRACE_S:
                    path.unlink()
            except FileNotFoundError:
                pass

    def _remove_empty_dirs(self) -> None:
        dirs = sorted((p for p in self.root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in dirs:
            try:
                d.rmdir()
            except OSError:  # not empty, or gone already
                pass


def _boxes_path(path: Path) -> Path:
    return path.with_name(path.name + BOXES_SUFFIX)


def _remove_snapshot(path: Path) -> int:
    """Remove a snapshot and the boxes stored beside it; 1 if the snapshot was there."""
    removed = _unlink(path)
    _unlink(_boxes_path(path))
    return removed


def _boxes_json(boxes: Sequence[AnnotatedBox]) -> list[dict]:
    return [
        {
            "box": list(b.box),
            "label": b.label,
            "colour": list(b.colour),
            "polygons": [np.asarray(p).tolist() for p in b.polygons],
            "thickness": b.thickness,
        }
        for b in boxes
    ]


def _boxes_from_json(items: list[dict]) -> list[AnnotatedBox]:
    return [
        AnnotatedBox(
            _box4(item["box"]),
            item["label"],
            tuple(item["colour"]),  # type: ignore[arg-type]
            [np.asarray(p) for p in item["polygons"]],
            item["thickness"],
        )
        for item in items
    ]


def _unlink(path: Path) -> int:
    try:
        path.unlink()
        return 1
    except FileNotFoundError:  # another pruner was first
        return 0


@dataclass(frozen=True)
class AnnotatedBox:
    """One thing to draw: a box ``(x0, y0, x1, y1)`` (end exclusive) with an optional label
    above it and optional outline polygons (each an ``(N, 2)`` array of x, y points)."""

    box: tuple[float, float, float, float]
    label: str = ""
    colour: Colour = GREEN
    polygons: Sequence[np.ndarray] = ()
    thickness: int = 2


def part_boxes(
    box: Sequence[float],
    defective: bool,
    score: float | None = None,
    defects: Sequence[tuple[str, Sequence[float], float]] = (),
) -> list[AnnotatedBox]:
    """The usual drawing of one part: its box green when accepted, red when defective (with
    its defect score), and an orange box per defect labelled ``"<class> <score>"``."""
    label = "" if score is None else f"{'defect' if defective else 'ok'} {score:.2f}"
    out = [AnnotatedBox(_box4(box), label, RED if defective else GREEN)]
    for cls, dbox, dscore in defects:
        out.append(AnnotatedBox(_box4(dbox), f"{cls} {dscore:.2f}", ORANGE, thickness=1))
    return out


def mask_outlines(mask: np.ndarray, x0: int = 0, y0: int = 0) -> list[np.ndarray]:
    """Outer contours of a bool mask as polygons in frame pixels (the mask placed at x0, y0)."""
    contours, _ = cv2.findContours(
        np.ascontiguousarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    return [c.reshape(-1, 2) + np.array([x0, y0]) for c in contours]


def annotate(
    image_bgr: np.ndarray, boxes: Sequence[AnnotatedBox], font_scale: float = 0.4
) -> np.ndarray:
    """A copy of ``image_bgr`` (uint8, BGR or grey) with ``boxes`` drawn on it, in order.

    Labels sit on a filled strip of the box colour just above the box (inside it when the box
    touches the top edge), so they stay legible on any background.
    """
    if image_bgr.dtype != np.uint8 or image_bgr.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 image, got {image_bgr.dtype} {image_bgr.shape}")
    out = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR) if image_bgr.ndim == 2 else image_bgr.copy()
    for item in boxes:
        x0, y0, x1, y1 = (round(v) for v in item.box)
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), item.colour, item.thickness)
        polys = [np.round(np.asarray(p)).astype(np.int32).reshape(-1, 1, 2) for p in item.polygons]
        if polys:
            cv2.polylines(out, polys, True, item.colour, 1)
        if item.label:
            _label(out, item.label, (x0, y0), item.colour, font_scale)
    return out


def _label(
    image: np.ndarray, text: str, corner: tuple[int, int], colour: Colour, scale: float
) -> None:
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = corner
    top = y - h - base - 2 if y - h - base - 2 >= 0 else y
    cv2.rectangle(image, (x, top), (x + w + 2, top + h + base + 2), colour, cv2.FILLED)
    text_colour = (0, 0, 0) if sum(colour) > 350 else (255, 255, 255)
    origin = (x + 1, top + h + 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, text, origin, font, scale, text_colour, 1, cv2.LINE_AA)


def encode_snapshot(image_bgr: np.ndarray, quality: int = 85) -> bytes:
    """JPEG bytes of an (annotated) image, for ``SnapshotStore.put``."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 1..100, got {quality}")
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"cannot encode image of shape {image_bgr.shape} as JPEG")
    return buf.tobytes()


def _box4(box: Sequence[float]) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    return float(x0), float(y0), float(x1), float(y1)
