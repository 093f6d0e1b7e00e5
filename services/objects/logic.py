"""Objects' business logic: a detect camera's detections in, its tracked objects' events out.

The tracking and the rules are ``visionline.detection``; here are the conversions to and from
the wire and the saved form of a camera's state (``CameraObjects`` pickled, signed with an
HMAC so that only a worker holding the secret can have its pickle loaded).
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
from dataclasses import dataclass
from typing import Literal, cast

from visionline.detection.objects import CameraObjects, DetectFrame, ObjectBox
from visionline.detection.objects import ObjectEvent as TrackedEvent
from visionline.messages import FrameDetections, ObjectEvent

STATE_KEY = "visionline:objects:state:{camera}"
Kind = Literal["dwell", "line", "count", "seen"]
Severity = Literal["info", "warning", "critical"]


def detect_frame(message: FrameDetections) -> DetectFrame:
    frame = message.frame
    boxes = tuple(ObjectBox(o.box, o.class_name, o.score) for o in message.objects)
    return DetectFrame(
        frame.camera_id, frame.frame_id, frame.captured_at, frame.width, frame.height, boxes
    )


def event_message(event: TrackedEvent, message: FrameDetections) -> ObjectEvent:
    """The public event: what the tracker said, with the frame's time, model and snapshot."""
    return ObjectEvent(
        event_id=event.event_id,
        camera_id=event.camera_id,
        frame_id=event.frame_id,
        captured_at=message.frame.captured_at,
        rule=event.rule,
        kind=cast(Kind, event.kind),
        severity=cast(Severity, event.severity),
        track_id=event.track_id,
        class_name=event.class_name,
        box=event.box,
        score=event.score,
        detail=event.detail,
        model=message.model,
        snapshot=message.snapshot,
    )


@dataclass
class SavedState:
    """A camera's tracker state and the last detections message folded into it."""

    objects: CameraObjects
    partition: int
    offset: int

    def has_seen(self, partition: int, offset: int) -> bool:
        """The message was folded in before (a replay after a crash): skip it."""
        return partition == self.partition and offset <= self.offset


def seal(state: SavedState, secret: bytes) -> bytes:
    body = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    return hmac.new(secret, body, hashlib.sha256).digest() + body


def unseal(blob: bytes, secret: bytes) -> SavedState | None:
    """The state, or None when its signature does not match (another secret, or tampered
    with): a fresh state then starts, under a new epoch, rather than loading untrusted bytes."""
    mac, body = blob[:32], blob[32:]
    if not hmac.compare_digest(mac, hmac.new(secret, body, hashlib.sha256).digest()):
        return None
    state = pickle.loads(body)  # noqa: S301 - signed by a worker holding the secret
    return state if isinstance(state, SavedState) else None
