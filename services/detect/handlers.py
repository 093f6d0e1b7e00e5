"""The detect worker's handler: a detect camera's frame through the detector its registry entry
names (``FrameMeta.model``, stamped by ingest), on Triton; the objects found, with their class
names from that version's labels.txt, go to ``visionline.detect.detections`` keyed by camera.

A frame that names no detector of the model repository, or one Triton does not serve, is
dead-lettered (``unknown_model``, ``model_not_served``): the camera's entry is at fault, not
the frame, and the line goes on. Triton down: the worker waits (``Worker.attempt``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2

from services.detect.logic import (
    annotated_snapshot,
    decode_frame,
    detections,
    found_objects,
    model_input,
)
from services.inference.backends import loop_client, triton_infer
from visionline.imaging import FrameRejected
from visionline.inspection.snapshots import SnapshotStore, frame_key
from visionline.messages import DetectedObject, FrameMeta, ModelRef, to_json
from visionline.models.detectors import INPUT_NAME, OUTPUTS, is_detector
from visionline.observability import DETECTED_OBJECTS
from visionline.resilience import BackendUnavailable, RetryPolicy, retrying
from visionline.settings import CommonSettings, DetectSettings
from visionline.worker import decode_message

log = logging.getLogger("visionline.detect")
READY_CACHE_S = 5.0  # how long Triton's "model ready" answer is trusted


@dataclass
class TritonDetectors:
    """Any detector of the repository on Triton: ``infer(model, batch)`` and ``ready(model)``."""

    common: CommonSettings
    settings: DetectSettings
    _ready: dict[str, tuple[float, bool]] = field(default_factory=dict)
    _known: dict[str, tuple[float, bool]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.client = loop_client(self.common.triton_grpc_url)

    async def infer(self, model: str, batch) -> tuple[dict, str]:
        timeout = self.settings.triton_timeout_s
        return await triton_infer(self.client(), model, "", {INPUT_NAME: batch}, OUTPUTS, timeout)

    def known(self, model: str) -> bool:
        """Whether ``model`` is a detector of the repository (asked again every few seconds, so
        a model trained since is found)."""
        at, answer = self._known.get(model, (-READY_CACHE_S, False))
        if time.monotonic() - at >= READY_CACHE_S:
            answer = is_detector(self.common.model_repository, model)
            self._known[model] = (time.monotonic(), answer)
        return answer

    async def ready(self, model: str) -> bool:
        """Whether Triton serves ``model``; BackendUnavailable when Triton does not answer."""
        at, answer = self._ready.get(model, (-READY_CACHE_S, False))
        if time.monotonic() - at < READY_CACHE_S:
            return answer
        timeout = self.settings.triton_timeout_s
        try:
            answer = bool(await self.client().is_model_ready(model, client_timeout=timeout))
        except Exception as exc:  # tritonclient raises its own for a server that is down
            raise BackendUnavailable(f"triton: {exc}") from exc
        self._ready[model] = (time.monotonic(), answer)
        return answer


@dataclass
class DetectHandlers:
    detectors: TritonDetectors
    labels: Callable[[str, str], list[str]]  # (model, version) -> class names
    settings: DetectSettings
    model_in_use: Callable[..., None]

    def __post_init__(self) -> None:
        s = self.settings
        self.snapshots = SnapshotStore(s.snapshot_dir, s.snapshot_max_age_s, s.snapshot_max_bytes)
        self.policy = RetryPolicy(s.retry_attempts, s.retry_backoff_s)

    async def detect(self, event) -> tuple[bytes, bytes]:
        meta, image = decode_message(event.message.value, FrameMeta)
        try:
            model = await self.check_model(meta)
            bgr = decode_frame(meta, bytes(image))
        except FrameRejected as rejected:
            raise rejected.of(meta) from None
        batch, scale, quality = model_input(bgr)
        outputs, version = await retrying(lambda: self.detectors.infer(model, batch), self.policy)
        s = self.settings
        labels = self.labels(model, version)
        objects = found_objects(outputs, scale, labels, s.min_score, s.max_objects, s.nms_iou)
        ref = ModelRef(name=model, version=version, served_by="triton")
        self.model_in_use(ref)
        for found in objects:
            DETECTED_OBJECTS.labels(meta.camera_id, found.class_name).inc()
        snapshot = await asyncio.to_thread(self.snapshot, meta, bgr, objects) if objects else None
        return meta.camera_id.encode(), to_json(detections(meta, quality, ref, objects, snapshot))

    async def check_model(self, meta: FrameMeta) -> str:
        model = meta.model
        if not model or not self.detectors.known(model):
            raise FrameRejected(
                "unknown_model",
                f"camera {meta.camera_id}'s model {model!r} is not a detector of the model "
                "repository: set its model (PATCH /v1/cameras/{id})",
            )
        if not await retrying(lambda: self.detectors.ready(model), self.policy):
            raise FrameRejected(
                "model_not_served",
                f"Triton does not serve {model!r}: promote a version (`visionline models promote`)",
            )
        return model

    def snapshot(self, meta: FrameMeta, bgr, objects: list[DetectedObject]) -> str | None:
        try:
            jpeg = annotated_snapshot(bgr, objects, self.settings.snapshot_jpeg_quality)
            return self.snapshots.put(frame_key(meta.camera_id, meta.frame_id), jpeg)
        except (OSError, cv2.error) as exc:  # a full disk must not stop the camera
            log.error("snapshot of %s/%s not stored: %s", meta.camera_id, meta.frame_id, exc)
            return None

    async def prune(self) -> None:
        if removed := await asyncio.to_thread(self.snapshots.prune):
            log.info("pruned %d old snapshots", removed)
