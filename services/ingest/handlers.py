"""The ingest worker's handler: a raw frame checked, stamped and routed, or rejected."""

from __future__ import annotations

import time

from services.ingest.logic import (
    Limits,
    RateLimiter,
    RawFrame,
    check_registered,
    claim_decision,
    dedup_key,
    route,
    source_token,
    validate_frame,
    with_model,
)
from visionline.camera_health import record_frame
from visionline.camera_registry import CameraRegistry
from visionline.imaging import FrameRejected
from visionline.kafka import source_of
from visionline.logs import set_frame
from visionline.messages import FrameMeta, Topic, pack_envelope
from visionline.settings import IngestSettings


class Ingest:
    """The stateful part of ingest: registry, rate limits, duplicate ids in Redis."""

    def __init__(self, settings: IngestSettings, registry: CameraRegistry, redis_client) -> None:
        self.settings = settings
        self.limits = Limits(settings.max_bytes, settings.max_pixels)
        self.registry = registry
        self.redis = redis_client
        self.rate = RateLimiter()

    def admit(self, raw: RawFrame) -> tuple[FrameMeta, Topic]:
        """The frame's metadata and the topic it goes to; FrameRejected when it goes nowhere."""
        meta = validate_frame(raw, self.limits)
        set_frame(meta.camera_id, meta.frame_id)  # this frame's log records say which it is
        try:
            camera = check_registered(meta.camera_id, self.registry.get(meta.camera_id))
            rate = camera.max_fps
            if not self.rate.allow(meta.camera_id, meta.captured_at, rate, meta.frame_id):
                raise FrameRejected("rate_limited", f"camera exceeds {camera.max_fps} frames/s")
            if not self._claim(meta, raw):
                raise FrameRejected("duplicate_frame", f"frame id {meta.frame_id} already seen")
        except FrameRejected as rejected:
            raise rejected.of(meta) from None
        return with_model(meta, camera).stamped("ingested"), route(camera)

    def _claim(self, meta: FrameMeta, raw: RawFrame) -> bool:
        key, me = dedup_key(meta.camera_id, meta.frame_id), source_token(raw.source)
        claimed = bool(self.redis.set(key, me, nx=True, ex=self.settings.dedup_ttl_s))
        holder = None if claimed else self.redis.get(key)
        return claim_decision(claimed, holder.decode() if holder else None, me)

    def handle(self, event) -> tuple[Topic, bytes, bytes]:
        raw = raw_frame(event)
        meta, topic = self.admit(raw)
        # Per-camera activity for the operator API (last frame, fps, health).
        record_frame(self.redis, meta.camera_id, meta.frame_id, meta.captured_at, time.time())
        return topic, raw.key, pack_envelope(meta, raw.value)


def raw_frame(event) -> RawFrame:
    message = event.message
    return RawFrame(
        key=message.key,
        value=message.value,
        headers=list(message.headers or ()),
        source=source_of(event),
        timestamp_s=message.timestamp,
    )
