"""Inspect's business logic: one inspection frame in, its parts and their defects out.

The three models run on Triton (``Infer``); everything else here is plain functions over numpy
arrays and messages, so tests need neither a broker nor a model server.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from services.inference.logic import BackendUnavailable, RetryPolicy
from visionline.imaging import ImageHeader, decode, quality_measures
from visionline.inspection.snapshots import (
    ORANGE,
    AnnotatedBox,
    SnapshotStore,
    annotate,
    encode_snapshot,
    part_boxes,
)
from visionline.inspection.tracking import PartDetection
from visionline.inspection.vision import (
    ANOMALY_OUTPUTS,
    CROP_INPUT,
    DEFECT_DETECTOR,
    DEFECT_OUTPUTS,
    FRAME_INPUT,
    PART_ANOMALY,
    PART_DETECTOR,
    PART_OUTPUTS,
    CropDecoding,
    Letterbox,
    crop_tensors,
    decode_parts,
    frame_tensor,
    part_detections,
)
from visionline.inspection.wire import observed_part
from visionline.messages import (
    FrameMeta,
    ModelRef,
    PartObservations,
    Quality,
)

log = logging.getLogger(__name__)

# (model, input name, uint8 batch, output names) -> (outputs by name, version that served it)
Infer = Callable[[str, str, np.ndarray, Sequence[str]], Awaitable[tuple[dict, str]]]
# model -> the version the server would serve now (for a model a frame did not need)
ServedVersion = Callable[[str], Awaitable[str]]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


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


async def retrying(
    call: Callable[[], Awaitable], policy: RetryPolicy, sleep=asyncio.sleep
) -> object:
    """``call()``, tried again after each BackendUnavailable with doubling backoff; the last
    failure is raised (the worker then exits and the frame comes back)."""
    delays = policy.delays()
    for attempt in range(len(delays) + 1):
        try:
            return await call()
        except BackendUnavailable as exc:
            if attempt == len(delays):
                raise
            log.warning("Triton unavailable (%s); retrying in %.1fs", exc, delays[attempt])
            await sleep(delays[attempt])
    raise AssertionError("unreachable")


@dataclass
class Inspector:
    """Part detector on the frame, then the anomaly and defect models together on the crops."""

    infer: Infer
    served_version: ServedVersion
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    min_part_score: float = 0.3
    max_parts: int = 20
    max_crop_batch: int = 16
    decoding: CropDecoding = field(default_factory=CropDecoding)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    versions: dict[str, str] = field(default_factory=dict)  # last version served, per model

    async def inspect(self, rgb: np.ndarray) -> tuple[list[PartDetection], list[ModelRef]]:
        tensor, letterbox = frame_tensor(rgb)
        found = await self._run(PART_DETECTOR, FRAME_INPUT, tensor[None], PART_OUTPUTS)
        outputs = {name: value[0] for name, value in found.items()}
        parts = decode_parts(outputs, letterbox, self.min_part_score, self.max_parts)
        if parts:
            crops, windows = crop_tensors(rgb, [box for box, _ in parts])
            anomaly, defects = await asyncio.gather(
                self._run(PART_ANOMALY, CROP_INPUT, crops, ANOMALY_OUTPUTS),
                self._run(DEFECT_DETECTOR, CROP_INPUT, crops, DEFECT_OUTPUTS),
            )
            # One score per crop, whether the model says [N] or [N, 1] (Triton needs dims).
            anomaly["anomaly_score"] = anomaly["anomaly_score"].reshape(len(windows))
            detections = part_detections(parts, windows, anomaly, defects, self.decoding)
        else:
            detections = []
            await asyncio.gather(*(self._know_version(m) for m in (PART_ANOMALY, DEFECT_DETECTOR)))
        return detections, self.model_refs()

    def model_refs(self) -> list[ModelRef]:
        return [
            ModelRef(name=name, version=self.versions[name], served_by="triton")
            for name in (PART_DETECTOR, PART_ANOMALY, DEFECT_DETECTOR)
        ]

    async def _run(
        self, model: str, input_name: str, batch: np.ndarray, outputs: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """The model on ``batch``, in requests of at most ``max_crop_batch``, retried."""
        chunks = []
        for start in range(0, len(batch), self.max_crop_batch):
            part = np.ascontiguousarray(batch[start : start + self.max_crop_batch])
            found, version = await retrying(
                lambda part=part: self.infer(model, input_name, part, outputs),
                self.policy,
                self.sleep,
            )
            self.versions[model] = str(version)
            chunks.append(found)
        return {name: np.concatenate([c[name] for c in chunks]) for name in outputs}

    async def _know_version(self, model: str) -> None:
        if model not in self.versions:
            version = await retrying(lambda: self.served_version(model), self.policy, self.sleep)
            self.versions[model] = str(version)


def observations(
    meta: FrameMeta,
    quality: Quality,
    parts: Sequence[PartDetection],
    models: list[ModelRef],
    snapshot: str | None = None,
) -> PartObservations:
    return PartObservations(
        frame=meta.stamped("inspected"),
        quality=quality,
        models=models,
        parts=[observed_part(p) for p in parts],
        snapshot=snapshot,
    )


def wants_snapshot(parts: Sequence[PartDetection], threshold: float) -> bool:
    return any(p.defect_score >= threshold for p in parts)


def snapshot_key(meta: FrameMeta) -> str:
    """``<camera>/<frame id>``; characters a snapshot key refuses (a frame id may hold ``:``)
    become ``_``."""
    frame = _UNSAFE.sub("_", meta.frame_id).replace("..", "__")
    return f"{meta.camera_id}/{frame}"


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
