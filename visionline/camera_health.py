"""Camera activity: ingest counts each accepted frame in Redis, the inspect worker each frame it
shed (load shedding), the operator API reads both back.

Per camera, one counter per wall-clock second (``visionline:activity:<camera>:<second>``, gone
after ``BUCKET_TTL_S``) and a hash with the last accepted frame
(``visionline:activity:<camera>:last``). A frame costs ingest one pipelined round trip; nothing
needs pruning. Camera ids hold no ``:``, so one camera's keys never collide with another's.

Health, from the registry and that activity:

- ``disabled``: the camera is disabled in the registry (its frames are rejected anyway);
- ``ok``: a frame within ``stale_after_s(max_fps)``: 5 s, or 5 frame intervals at its
  ``max_fps`` when that is longer;
- ``stale``: its last frame is older than that, but within the last ``WINDOW_S`` seconds;
- ``silent``: no frame in the last ``WINDOW_S`` seconds (or none ever);
- ``unknown``: Redis could not be read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

WINDOW_S = 60  # fps is averaged over this many seconds
BUCKET_TTL_S = 2 * WINDOW_S
LAST_TTL_S = 7 * 24 * 3600  # how long the last frame is remembered
STALE_AFTER_S = 5.0
STALE_AFTER_FRAMES = 5
PREFIX = "visionline:activity"

Health = Literal["ok", "stale", "silent", "disabled", "unknown"]


def bucket_key(camera_id: str, second: int) -> str:
    return f"{PREFIX}:{camera_id}:{second}"


def last_key(camera_id: str) -> str:
    return f"{PREFIX}:{camera_id}:last"


def shed_key(camera_id: str, second: int) -> str:
    return f"{PREFIX}:{camera_id}:shed:{second}"


def _counted(bucket: str) -> list[tuple[Any, ...]]:
    return [("INCR", bucket), ("EXPIRE", bucket, BUCKET_TTL_S)]


def activity_commands(
    camera_id: str, frame_id: str, captured_at: float, now: float
) -> list[tuple[Any, ...]]:
    """The Redis commands that record one accepted frame (pure: ingest pipelines them)."""
    last = last_key(camera_id)
    return [
        *_counted(bucket_key(camera_id, int(now))),
        ("HSET", last, "at", repr(now), "captured_at", repr(captured_at), "frame_id", frame_id),
        ("EXPIRE", last, LAST_TTL_S),
    ]


def _pipelined(redis_client, commands: list[tuple[Any, ...]]) -> None:
    pipe = redis_client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    pipe.execute()


def record_frame(redis_client, camera_id: str, frame_id: str, captured_at: float, now: float):
    _pipelined(redis_client, activity_commands(camera_id, frame_id, captured_at, now))


def record_shed(redis_client, camera_id: str, now: float) -> None:
    """One frame of ``camera_id`` the inspect worker shed (visionline/inspection/shedding.py)."""
    _pipelined(redis_client, _counted(shed_key(camera_id, int(now))))


@dataclass(frozen=True)
class Activity:
    last_frame_at: float | None  # when ingest accepted its last frame (epoch seconds)
    last_captured_at: float | None  # that frame's capture time
    last_frame_id: str | None
    frames_last_minute: int
    shed_last_minute: int = 0  # inspection frames the inspect worker shed

    @property
    def fps(self) -> float:
        return round(self.frames_last_minute / WINDOW_S, 3)


def window_seconds(now: float) -> list[int]:
    """The ``WINDOW_S`` whole seconds up to and including the current one."""
    current = int(now)
    return list(range(current - WINDOW_S + 1, current + 1))


def parse_activity(
    counts: Sequence[bytes | None],
    last: dict[bytes, bytes],
    shed: Sequence[bytes | None] = (),
) -> Activity:
    """An ``Activity`` from the bucket counters (MGET), the last-frame hash (HGETALL) and the
    shed frames' counters (MGET)."""
    frames = sum(int(c) for c in counts if c is not None)

    def number(field: bytes) -> float | None:
        try:
            value = float(last[field])
        except (KeyError, ValueError):
            return None
        return value if math.isfinite(value) else None

    frame_id = last.get(b"frame_id")
    return Activity(
        number(b"at"),
        number(b"captured_at"),
        frame_id.decode(errors="replace") if frame_id else None,
        frames,
        sum(int(c) for c in shed if c is not None),
    )


def read_activity(redis_client, camera_ids: Sequence[str], now: float) -> dict[str, Activity]:
    """Every camera's activity in one round trip."""
    pipe = redis_client.pipeline(transaction=False)
    seconds = window_seconds(now)
    for camera_id in camera_ids:
        pipe.mget([bucket_key(camera_id, s) for s in seconds])
        pipe.hgetall(last_key(camera_id))
        pipe.mget([shed_key(camera_id, s) for s in seconds])
    replies = pipe.execute()
    return {
        camera_id: parse_activity(replies[3 * i], replies[3 * i + 1], replies[3 * i + 2])
        for i, camera_id in enumerate(camera_ids)
    }


def stale_after_s(max_fps: float) -> float:
    return max(STALE_AFTER_S, STALE_AFTER_FRAMES / max_fps)


def health(enabled: bool, max_fps: float, activity: Activity | None, now: float) -> Health:
    if not enabled:
        return "disabled"
    if activity is None:
        return "unknown"
    if activity.last_frame_at is None:
        return "silent"
    age = now - activity.last_frame_at
    if age <= stale_after_s(max_fps):
        return "ok"
    return "stale" if age <= WINDOW_S else "silent"
