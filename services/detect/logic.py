"""Detect's business logic: one frame of a detect camera in, the objects its detector found out.

The detector runs on Triton (``handlers.py``); everything here is plain functions over numpy
arrays and messages, so tests need neither a broker nor a model server.
"""

from __future__ import annotations

import cv2
import numpy as np

from visionline.imaging import ImageHeader, decode, quality_measures
from visionline.inspection.snapshots import GREEN, AnnotatedBox, annotate, encode_snapshot
from visionline.messages import DetectedObject, FrameDetections, FrameMeta, ModelRef, Quality
from visionline.models.detectors import decode as decode_outputs
from visionline.models.detectors import letterbox


def decode_frame(meta: FrameMeta, image: bytes) -> np.ndarray:
    """The frame as BGR pixels at full size (boxes are in frame pixels); FrameRejected when it
    does not decode."""
    return decode(image, ImageHeader(meta.content_type, meta.width, meta.height), 0, reduced=False)


def model_input(bgr: np.ndarray) -> tuple[np.ndarray, float, Quality]:
    """The detector's input (RGB, letterboxed, batch of one), its scale, and the frame's
    quality measured on the pixels the detector sees (no padding)."""
    image, scale = letterbox(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    height, width = bgr.shape[:2]
    seen = image[: max(1, round(height * scale)), : max(1, round(width * scale))]
    return image[None], scale, quality_measures(cv2.cvtColor(seen, cv2.COLOR_RGB2BGR))


def found_objects(
    outputs: dict[str, np.ndarray],
    scale: float,
    labels: list[str],
    min_score: float,
    max_objects: int,
    nms_iou: float,
) -> list[DetectedObject]:
    """The decoded boxes (frame pixels) with their class names, best first."""
    boxes = decode_outputs(
        outputs["heatmap"][0],
        outputs["size"][0],
        outputs["offset"][0],
        scale,
        min_score=min_score,
        top_k=max_objects,
        iou=nms_iou,
    )
    if len(labels) < outputs["heatmap"].shape[1]:
        raise ValueError(f"{len(labels)} labels for {outputs['heatmap'].shape[1]} heatmap classes")
    return [
        DetectedObject(
            box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
            class_name=labels[int(c)],
            score=float(s),
        )
        for b, c, s in zip(boxes.boxes, boxes.classes, boxes.scores, strict=True)
    ]


def detections(
    meta: FrameMeta,
    quality: Quality,
    model: ModelRef,
    objects: list[DetectedObject],
    snapshot: str | None = None,
) -> FrameDetections:
    return FrameDetections(
        frame=meta.stamped("detected"),
        quality=quality,
        model=model,
        objects=objects,
        snapshot=snapshot,
    )


def annotated_snapshot(bgr: np.ndarray, objects: list[DetectedObject], quality: int) -> bytes:
    """The frame with each object's box, class and score drawn, as JPEG."""
    boxes = [AnnotatedBox(o.box, f"{o.class_name} {o.score:.2f}", GREEN) for o in objects]
    return encode_snapshot(annotate(bgr, boxes), quality)
