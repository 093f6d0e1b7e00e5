"""The inspect worker's handlers: a frame's parts found and judged by the inspection models,
with snapshot and label-sample evidence kept beside them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
from redis import RedisError

from services.inspect.backends import triton_models
from services.inspect.logic import decode_frame, observations, store_snapshot
from visionline.camera_health import record_shed
from visionline.imaging import FrameRejected
from visionline.inspection.inspector import Inspector
from visionline.inspection.samples import SampleStore, reasons_for
from visionline.inspection.sampling import LabelSampler, LabelSampling
from visionline.inspection.shedding import FrameShedder, Shedding
from visionline.inspection.snapshots import SnapshotStore
from visionline.messages import FrameMeta, to_json
from visionline.observability import INSPECTION_FRAMES_SHED, INSPECTION_WAIT_SECONDS
from visionline.resilience import RestAfterFailure, RetryPolicy
from visionline.settings import CommonSettings, InspectSettings
from visionline.worker import decode_message

log = logging.getLogger("visionline.inspect")


def build_inspector(common: CommonSettings, settings: InspectSettings) -> Inspector:
    infer, served_version = triton_models(
        common.triton_grpc_url, settings.model_version, settings.triton_timeout_s
    )
    return Inspector(
        infer,
        served_version,
        RetryPolicy(settings.retry_attempts, settings.retry_backoff_s),
        min_part_score=settings.min_part_score,
        max_parts=settings.max_parts,
        max_crop_batch=settings.max_crop_batch,
        crop_model=settings.crop_model or None,
    )


def decoded(meta: FrameMeta, image: bytes):
    """(BGR, RGB, scaled RGB, quality) of the frame; in a thread: OpenCV lets go of the GIL,
    so another frame's decoding or model calls go on meanwhile."""
    bgr, scaled_rgb, quality = decode_frame(meta, image)
    return bgr, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), scaled_rgb, quality


@dataclass
class ShedCounter:
    """Shed frames per camera in Redis, for the operator API and the dashboard; a Redis that
    fails is left alone for a while (the metric still counts)."""

    redis: object
    rest: RestAfterFailure = field(default_factory=RestAfterFailure)

    def count(self, camera_id: str) -> None:
        if self.rest.resting():
            return
        try:
            record_shed(self.redis, camera_id, time.time())
        except RedisError as exc:
            self.rest.failed()
            log.warning("shed frames not counted in Redis for %.0f s: %s", self.rest.rest_s, exc)


@dataclass
class InspectHandlers:
    inspector: Inspector
    settings: InspectSettings
    model_in_use: Callable[..., None]
    shed_counter: ShedCounter | None = None

    def __post_init__(self) -> None:
        s = self.settings
        self.snapshots = SnapshotStore(s.snapshot_dir, s.snapshot_max_age_s, s.snapshot_max_bytes)
        self.samples = SampleStore(s.sample_dir, s.sample_max_age_s, s.sample_max_bytes)
        per_minute = s.samples_per_camera_per_minute
        self.sampler = LabelSampler(LabelSampling(max_per_camera_per_minute=per_minute))
        policy = Shedding(s.shed_late_after_s, s.shed_gap_per_late_s, s.shed_max_gap_s)
        self.shedder = FrameShedder(policy)

    async def inspect(self, event) -> tuple[bytes, bytes] | None:
        """The frame's observations, or None when it is shed (nothing is published)."""
        meta, image = decode_message(event.message.value, FrameMeta)
        # Up to InspectSettings.frames_in_flight frames are inspected at once: the shedding
        # and its count are decided here, before the first wait, in the frames' order.
        if not self.inspects(meta, event.message.timestamp):
            return None
        shed = self.shedder.shed_before(meta.camera_id)
        image = bytes(image)  # the frame as the camera sent it: decoded, and kept as evidence
        try:
            bgr, rgb, scaled_rgb, quality = await asyncio.to_thread(decoded, meta, image)
        except FrameRejected as rejected:
            raise rejected.of(meta) from None
        parts, models = await self.inspector.inspect(rgb, scaled_rgb)
        ref = await asyncio.to_thread(self.snapshot, meta, bgr, parts, image)
        self.model_in_use(*models)
        message = observations(meta, quality, parts, models, ref, shed)
        await asyncio.to_thread(self.keep_sample, message, image)
        return meta.camera_id.encode(), to_json(message)

    def inspects(self, meta: FrameMeta, forwarded_at: float | None) -> bool:
        """Whether the frame is inspected or shed (counted), from how long it waited since
        ingest forwarded it (its Kafka timestamp)."""
        waited = max(0.0, time.time() - forwarded_at) if forwarded_at else 0.0
        INSPECTION_WAIT_SECONDS.labels(meta.camera_id).set(waited)
        if self.shedder.inspect(meta.camera_id, meta.captured_at, waited):
            return True
        INSPECTION_FRAMES_SHED.labels(meta.camera_id).inc()
        if self.shed_counter is not None:
            self.shed_counter.count(meta.camera_id)
        log.debug("shed %s/%s after %.2f s of wait", meta.camera_id, meta.frame_id, waited)
        return False

    def snapshot(self, meta: FrameMeta, bgr, parts, image: bytes) -> str | None:
        threshold, quality = self.settings.snapshot_threshold, self.settings.snapshot_jpeg_quality
        try:
            return store_snapshot(self.snapshots, meta, bgr, parts, threshold, quality, image)
        except OSError as exc:  # a full disk must not stop the line: publish without evidence
            log.error("snapshot of %s/%s not stored: %s", meta.camera_id, meta.frame_id, exc)
            return None

    def keep_sample(self, message, jpeg: bytes) -> None:
        reasons = reasons_for(message, self.sampler, self.settings.snapshot_threshold)
        if not reasons:
            return
        try:
            self.samples.keep(message, jpeg, reasons)
        except OSError as exc:  # as for snapshots: the line goes on without the sample
            log.error("sample %s not kept: %s", message.frame.frame_id, exc)

    async def prune(self) -> None:
        removed = await asyncio.to_thread(self.snapshots.prune)
        removed_samples = await asyncio.to_thread(self.samples.prune)
        if removed or removed_samples:
            log.info("pruned %d old snapshots, %d samples", removed, removed_samples)
