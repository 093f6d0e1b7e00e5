"""Ingest's business logic: plain functions and small state objects, no broker needed."""

from __future__ import annotations

from dataclasses import dataclass

from visionline.camera_registry import CAMERA_ID, RegisteredCamera
from visionline.frame_headers import frame_id_of, header_text, parse_captured_at
from visionline.imaging import FrameRejected, check_complete, inspect_header
from visionline.messages import (
    HEADER_CAPTURED_AT,
    HEADER_CONTENT_TYPE,
    FrameMeta,
    SourceRef,
    Topic,
    image_media_type,
)


@dataclass(frozen=True)
class RawFrame:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    source: SourceRef
    timestamp_s: float  # the broker record's timestamp


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pixels: int


def camera_id_of(key: bytes | None) -> str:
    if not key:
        raise FrameRejected("missing_camera_id", "message key (the camera id) is missing")
    try:
        camera_id = key.decode()
    except UnicodeDecodeError:
        raise FrameRejected("malformed_camera_id", "message key is not UTF-8") from None
    if not CAMERA_ID.match(camera_id):
        raise FrameRejected("malformed_camera_id", f"camera id {camera_id[:80]!r} is not valid")
    return camera_id


def validate_frame(raw: RawFrame, limits: Limits) -> FrameMeta:
    """Everything about a frame that can be checked without state or decoding. A rejection
    names the frame's id whenever it is known, so its dead letter can be found by it."""
    frame_id = frame_id_of(raw.headers, raw.source, raw.timestamp_s)
    try:
        return _checked(raw, limits, frame_id)
    except FrameRejected as rejected:
        rejected.frame_id = frame_id
        raise


def _checked(raw: RawFrame, limits: Limits, frame_id: str) -> FrameMeta:
    camera_id = camera_id_of(raw.key)
    value = raw.value or b""
    if not value:
        raise FrameRejected("empty_payload", "message has no image bytes")
    if len(value) > limits.max_bytes:
        raise FrameRejected(
            "payload_too_large", f"{len(value)} bytes exceeds the {limits.max_bytes} byte cap"
        )
    declared = header_text(raw.headers, HEADER_CONTENT_TYPE)
    if declared is not None:
        media_type = image_media_type(declared)
        if media_type is None:
            raise FrameRejected("unsupported_format", f"{HEADER_CONTENT_TYPE} {declared[:60]!r}")
        declared = media_type
    captured_at = parse_captured_at(header_text(raw.headers, HEADER_CAPTURED_AT), raw.timestamp_s)
    header = inspect_header(value, declared)
    if header.width * header.height > limits.max_pixels:
        raise FrameRejected(
            "too_many_pixels",
            f"{header.width}x{header.height} exceeds the {limits.max_pixels} pixel cap",
        )
    check_complete(value, header.content_type)
    return FrameMeta(
        camera_id=camera_id,
        frame_id=frame_id,
        captured_at=captured_at,
        content_type=header.content_type,
        width=header.width,
        height=header.height,
        source=raw.source,
    )


# Where ingest sends a valid frame, by its camera's pipeline.
PIPELINE_TOPICS = {
    "classify": Topic.VALID_FRAMES,
    "inspect": Topic.INSPECTION_FRAMES,
    "detect": Topic.DETECTION_FRAMES,
}


def route(camera: RegisteredCamera) -> Topic:
    """Where an accepted frame goes: inspection cameras to the inspect path, detect cameras to
    the detector, the rest to the classifier. Same envelope on all three."""
    return PIPELINE_TOPICS.get(camera.pipeline, Topic.VALID_FRAMES)


def with_model(meta: FrameMeta, camera: RegisteredCamera) -> FrameMeta:
    """The frame says which classifier its camera's registry entry chooses (None: default)."""
    return meta.model_copy(update={"model": camera.model}) if camera.model else meta


def check_registered(camera_id: str, camera: RegisteredCamera | None) -> RegisteredCamera:
    if camera is None:
        raise FrameRejected("unknown_camera", f"camera {camera_id!r} is not registered")
    if not camera.enabled:
        raise FrameRejected("camera_disabled", f"camera {camera_id!r} is disabled")
    return camera


class RateLimiter:
    """Per-camera token bucket on capture time: a burst of one second, then ``max_fps``.

    Capture time rather than wall time, so a replay of the same frames gives the same answer.
    A camera's frames share one partition, hence one worker: the state can live in-process.
    Asked again about the frame it decided last (the worker retrying it while Redis was down),
    it gives the same answer without taking another token.
    """

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # camera -> (tokens, at)
        self._last: dict[str, tuple[str, bool]] = {}  # camera -> (frame id, answer)

    def allow(self, camera_id: str, captured_at: float, max_fps: float, frame_id: str) -> bool:
        last = self._last.get(camera_id)
        if last is not None and last[0] == frame_id:
            return last[1]
        allowed = self._take(camera_id, captured_at, max_fps)
        self._last[camera_id] = (frame_id, allowed)
        return allowed

    def _take(self, camera_id: str, captured_at: float, max_fps: float) -> bool:
        capacity = max(1.0, max_fps)
        tokens, at = self._buckets.get(camera_id, (capacity, captured_at))
        tokens = min(capacity, tokens + max(0.0, captured_at - at) * max_fps)
        allowed = tokens >= 1.0
        self._buckets[camera_id] = (tokens - 1.0 if allowed else tokens, max(at, captured_at))
        return allowed


def dedup_key(camera_id: str, frame_id: str) -> str:
    return f"visionline:dedup:{camera_id}:{frame_id}"


def source_token(source: SourceRef) -> str:
    return f"{source.topic}/{source.partition}/{source.offset}"


def claim_decision(claimed: bool, holder: str | None, me: str) -> bool:
    """Whether to go on after SET NX: a frame id already held by *this very record* is a
    redelivery after a crash (go on), held by another record is a duplicate (drop)."""
    return claimed or holder == me
