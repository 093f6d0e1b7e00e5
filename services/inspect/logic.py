"""Inspect's business logic: one inspection frame in, its parts and their defects out.

The three models run on Triton (``Infer``); everything else here is plain functions over numpy
arrays and messages, so tests need neither a broker nor a model server.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np

from visionline.camera.frames import JPEG
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
from visionline.inspection.vision import scaled_frame
from visionline.inspection.wire import observed_part
from visionline.messages import (
    FrameMeta,
    ModelRef,
    PartObservations,
    Quality,
)

log = logging.getLogger(__name__)


class DecodedFrame(NamedTuple):
    bgr: np.ndarray  # full size: boxes are in frame pixels
    scaled_rgb: np.ndarray  # at the part detector's scale (``vision.scaled_frame``)
    quality: Quality  # measured on the scaled frame, as the part detector sees it


def decode_frame(meta: FrameMeta, image: bytes) -> DecodedFrame:
    """The frame decoded, scaled once for both the part detector and the quality measures.
    FrameRejected when it does not decode."""
    header = ImageHeader(meta.content_type, meta.width, meta.height)
    bgr = decode(image, header, 0, reduced=False)
    scaled = scaled_frame(bgr)
    return DecodedFrame(bgr, cv2.cvtColor(scaled, cv2.COLOR_BGR2RGB), quality_measures(scaled))


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
    image: bytes | None = None,
) -> str | None:
    """The reference of the frame's snapshot, stored when a part looks defective: a JPEG frame
    (``image``, as the camera sent it) with its boxes beside it, drawn only when the snapshot
    is asked for (``SnapshotStore.render``); any other frame drawn and encoded now."""
    if not wants_snapshot(parts, threshold):
        return None
    boxes = snapshot_boxes(parts, threshold)
    if image is not None and meta.content_type == JPEG:
        return store.put_frame(snapshot_key(meta), image, boxes)
    return store.put(snapshot_key(meta), encode_snapshot(annotate(bgr, boxes), jpeg_quality))
