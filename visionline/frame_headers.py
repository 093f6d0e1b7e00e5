"""The raw frames topic's wire format, read the same way by ingest and by the replay of a
camera's frames: header values, the frame id (the camera's, or one made from the record) and the
capture time."""

from __future__ import annotations

import re
from datetime import datetime

from visionline.imaging import FrameRejected
from visionline.messages import FRAME_ID, HEADER_CAPTURED_AT, HEADER_FRAME_ID, SourceRef

# A capture time further than this from the broker's clock is a camera bug, not a frame.
MAX_CLOCK_SKEW_S = 7 * 24 * 3600


def header_text(headers: list[tuple[str, bytes | None]], name: str) -> str | None:
    """The last value of a header (later ones win), as text."""
    value = None
    for key, raw in headers:
        if key.lower() == name and raw is not None:
            try:
                value = raw.decode().strip()
            except UnicodeDecodeError:
                raise FrameRejected("malformed_header", f"header {name} is not UTF-8") from None
    return value or None


def parse_captured_at(text: str | None, default: float) -> float:
    """Epoch milliseconds, or ISO 8601 with a zone; missing means the broker's timestamp."""
    if text is None:
        return default
    try:
        captured = float(text) / 1000 if re.fullmatch(r"\d{1,16}(\.\d+)?", text) else None
        if captured is None:
            parsed = datetime.fromisoformat(text)
            if parsed.tzinfo is None:
                raise ValueError("no time zone")
            captured = parsed.timestamp()
    except ValueError as exc:
        raise FrameRejected(
            "malformed_header",
            f"{HEADER_CAPTURED_AT} {text[:40]!r} is not epoch ms or ISO 8601 ({exc})",
        ) from None
    if abs(captured - default) > MAX_CLOCK_SKEW_S:
        raise FrameRejected("malformed_header", f"{HEADER_CAPTURED_AT} is more than 7 days off")
    return captured


def auto_frame_id(source: SourceRef, timestamp_s: float) -> str:
    """The id of a frame sent without one: the record's position and broker timestamp. Stable
    on replay, and unique for the life of a deployment: a new or restarted broker counts
    offsets from 0 again (issue 15: ``auto-0-0`` came back, and its alerts were lost)."""
    return f"auto-{source.partition}-{source.offset}-{round(timestamp_s * 1000)}"


def frame_id_of(
    headers: list[tuple[str, bytes | None]], source: SourceRef, timestamp_s: float
) -> str:
    """The camera's frame id; without one, ``auto_frame_id`` of the record."""
    frame_id = header_text(headers, HEADER_FRAME_ID)
    if frame_id is None:
        return auto_frame_id(source, timestamp_s)
    if not FRAME_ID.match(frame_id):
        raise FrameRejected("malformed_header", f"{HEADER_FRAME_ID} {frame_id[:80]!r} is not valid")
    return frame_id
