"""Inspect's business logic: one inspection frame in, its parts and their defects out.

The three models run on Triton (``Infer``); everything else here is plain functions over numpy
arrays and messages, so tests need neither a broker nor a model server.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np

from visionline.imaging import ImageHeader, decode, quality_measures
from visionline.inspection.snapshots import (
    ORANGE,
    AnnotatedBox,
    SnapshotStore,
    annotate,
    encode_snapshot,
    frame_key,
    part_boxes,
)
from visionline.inspection.tracking import PartDetection
from visionline.inspection.vision import (
    Letterbox,
)
from visionline.inspection.wire import observed_part
from visionline.messages import (
    FrameMeta,
    ModelRef,
    PartObservations,
    Quality,
)

log = logging.getLogger(__name__)


def decode_frame(meta: FrameMeta, image: bytes) -> tuple[np.ndarray, Quality]:
    """The frame as BGR pixels at full size (boxes are in frame pixels) and its quality,
    measured at the part detector's scale. FrameRejected when it does not decode."""
    header = ImageHeader(meta.content_type, meta.width, meta.height)
    bgr = decode(image, header, 0, reduced=False)
    return bgr, frame_quality(bgr)


def frame_quality(bgr: np.ndarray) -> Quality:
    """Quality measures of the frame as the part detector sees it (scaled, no padding)."""
    height, width = bgr.shape[:2]
    size = Letterbox.of(width, height).size
    return quality_measures(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA))


def observations(
    meta: FrameMeta,
    quality: Quality,
    parts: Sequence[PartDetection],
    models: list[ModelRef],
    snapshot: str | None = None,
    frames_shed_before: int = 0,
) -> PartObservations:
    return PartObservations(
        frame=meta.stamped("inspected"),
        quality=quality,
        models=models,
        parts=[observed_part(p) for p in parts],
        snapshot=snapshot,
        frames_shed_before=frames_shed_before,
    )


def wants_snapshot(parts: Sequence[PartDetection], threshold: float) -> bool:
    return any(p.defect_score >= threshold for p in parts)


def snapshot_key(meta: FrameMeta) -> str:
    return frame_key(meta.camera_id, meta.frame_id)


def snapshot_boxes(parts: Sequence[PartDetection], threshold: float) -> list[AnnotatedBox]:
    """Each part's box (red when defective, with its score), and its defects in orange with
    class, score and outline."""
    out: list[AnnotatedBox] = []
    for part in parts:
        out += part_boxes(part.box, part.defect_score >= threshold, part.defect_score)
        for defect in part.defects:
            polygons = [np.asarray(defect.polygon)] if defect.polygon else []
            label = f"{defect.defect_class} {defect.score:.2f}"
            out.append(AnnotatedBox(defect.box, label, ORANGE, polygons, thickness=1))
    return out


def store_snapshot(
    store: SnapshotStore,
    meta: FrameMeta,
    bgr: np.ndarray,
    parts: Sequence[PartDetection],
    threshold: float,
    jpeg_quality: int = 85,
) -> str | None:
    """The reference of the frame's annotated snapshot, stored when a part looks defective."""
    if not wants_snapshot(parts, threshold):
        return None
    image = annotate(bgr, snapshot_boxes(parts, threshold))
    return store.put(snapshot_key(meta), encode_snapshot(image, jpeg_quality))
