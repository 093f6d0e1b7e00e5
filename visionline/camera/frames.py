"""Frames as sources hand them out: raw BGR arrays, or bytes that are already encoded."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

JPEG = "image/jpeg"
PNG = "image/png"
_JPEG_SOI = b"\xff\xd8"
_JPEG_COM = b"\xff\xfe"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """Bytes that go on the wire as they are (a JPEG or PNG file, a pre-encoded frame)."""

    data: bytes
    content_type: str = JPEG
    # When the source knows when it captured the frame (epoch ms); else publishing stamps it.
    captured_at_ms: int | None = None
    # When the source names the frame (to publish its labels under the same id); else publishing
    # gives it one.
    frame_id: str | None = None


Frame = np.ndarray | EncodedFrame


class FrameSource(Protocol):
    """What ``open_source`` gives and the publisher reads: frames, then ``close()``."""

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


def sniff_content_type(data: bytes) -> str | None:
    """``image/jpeg`` or ``image/png`` from the magic bytes, else None."""
    if data.startswith(_JPEG_SOI + b"\xff"):
        return JPEG
    if data.startswith(_PNG_MAGIC):
        return PNG
    return None


def encode_jpeg(frame: np.ndarray, quality: int = 80) -> bytes:
    """A BGR (or grey) frame as JPEG bytes."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 1-100, got {quality}")
    ok, buffer = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"could not encode a frame of shape {frame.shape} as JPEG")
    return buffer.tobytes()


def to_encoded(frame: Frame, quality: int) -> EncodedFrame:
    """What goes on the wire for ``frame``: encoded bytes pass through, arrays become JPEG."""
    if isinstance(frame, EncodedFrame):
        return frame
    return EncodedFrame(encode_jpeg(frame, quality))


def tag_jpeg(data: bytes, text: str) -> bytes:
    """``data`` with a JPEG comment segment right after SOI: same pixels, different bytes."""
    if not data.startswith(_JPEG_SOI):
        raise ValueError("not a JPEG")
    comment = text.encode()[:65000]
    return _JPEG_SOI + _JPEG_COM + struct.pack(">H", len(comment) + 2) + comment + data[2:]
