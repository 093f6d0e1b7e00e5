"""The bad-input corpus (issue 15): every kind of frame an outside tester sends, and what the
pipeline must make of it, over Kafka and over the HTTP upload service.

Each ``Kind`` says how to build the record (body, headers, key) and what comes of it:
``PROCESSED`` (a prediction on a classify camera, a part observation on an inspection camera)
or the dead-letter reason; over HTTP it may instead be answered at once (``Refused``: status and
a piece of the detail). ``None`` means the kind does not exist on that entry (a Kafka key has no
HTTP form, an upload key no Kafka one). The integration test
``tests/integration/test_bad_input_corpus.py`` runs the table through both entries and both
paths of the real stack; ``tests/unit/test_decoder_fuzz.py`` runs its Kafka records through the
decoders alone.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tests.fuzz import seeds

PROCESSED = "processed"
MAX_BYTES = 8 << 20  # ingest's and the upload service's default cap
DAY_MS = 24 * 3600 * 1000

# The frame's own id, given to the builder of headers (None: send none).
Headers = Callable[[str, int], list[tuple[str, bytes | None]]]


@dataclass(frozen=True)
class Refused:
    """An HTTP answer other than 202: its status and a piece of its detail."""

    status: int
    detail: str = ""


@dataclass(frozen=True)
class Kind:
    name: str
    body: Callable[[], bytes | None]
    kafka: str | None  # PROCESSED or a dead-letter reason; None: not sent over Kafka
    http: str | Refused | None  # PROCESSED, a reason or an answer; None: not sent over HTTP
    # Kafka headers besides the usual frame-id and captured-at (which these replace when named).
    headers: Headers | None = None
    key: str = "camera"  # "camera", "none", "unknown", "not-utf8"
    content_type: str | None = None  # HTTP Content-Type; default: image/jpeg or image/png
    # HTTP headers that replace the usual ones, given the time in epoch ms.
    http_headers: Callable[[int], dict[str, bytes]] | None = None
    http_path: str | None = None  # another camera path than the camera's own
    frame_id: str | None = None  # another id than the kind's name (duplicates share one)
    http_open: str | None = None  # a known bug of the HTTP entry, not fixed yet (xfail)


def photo_jpeg() -> bytes:
    return seeds.jpeg("chelsea", 160, 120)


def photo_png() -> bytes:
    return seeds.png("coffee", 160, 120)


def _with(name: str, value: bytes | None) -> Headers:
    """The usual headers with ``name`` set to ``value`` (or added, when it is another)."""
    return lambda frame_id, now_ms: [(name, value)]


def _drop_segment(data: bytes, marker: int) -> bytes:
    pos = data.index(bytes([0xFF, marker]))
    (length,) = struct.unpack_from(">H", data, pos + 2)
    return data[:pos] + data[pos + 2 + length :]


def _corrupt_scan(data: bytes) -> bytes:
    """Bytes in the middle of the entropy-coded data changed (no 0xFF written)."""
    out = bytearray(data)
    start = data.rindex(b"\xff\xda") + 20
    for at in range(start, len(out) - 4, 97):
        out[at] = (out[at] + 0x55) % 0xFF
    return bytes(out)


def _png_bad_crc(data: bytes) -> bytes:
    out = bytearray(data)
    out[29:33] = b"\x00\x00\x00\x00"  # IHDR's CRC
    return bytes(out)


def _png_chunk_past_end(data: bytes) -> bytes:
    """IDAT claims 4 GiB: OpenCV's PNG reader allocated that much for a 1 kB frame."""
    pos = data.index(b"IDAT") - 4
    return data[:pos] + struct.pack(">I", 0xFFFFFFFF) + data[pos + 4 :]


def _random(size: int, seed: int = 15) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def _captured(offset_ms: int) -> Headers:
    return lambda frame_id, now_ms: [("captured-at", str(now_ms + offset_ms).encode())]


def _http(**headers: bytes) -> Callable[[int], dict[str, bytes]]:
    """HTTP headers (underscores for dashes)."""
    return lambda now_ms: {name.replace("_", "-"): value for name, value in headers.items()}


def _http_captured(offset_ms: int) -> Callable[[int], dict[str, bytes]]:
    return lambda now_ms: {"X-Captured-At": str(now_ms + offset_ms).encode()}


def _iso_at(now_ms: int) -> bytes:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now_ms / 1000)).encode()


def _iso(frame_id: str, now_ms: int) -> list[tuple[str, bytes | None]]:
    return [("captured-at", _iso_at(now_ms))]


def _http_iso(now_ms: int) -> dict[str, bytes]:
    return {"X-Captured-At": _iso_at(now_ms)}


KINDS: list[Kind] = [
    # Who sends it, and the headers --------------------------------------------------------
    Kind("empty", lambda: b"", "empty_payload", Refused(400, "empty body")),
    Kind("null-value", lambda: None, "empty_payload", None),
    Kind("no-key", photo_jpeg, "missing_camera_id", None, key="none"),
    Kind("key-not-utf8", photo_jpeg, "malformed_camera_id", None, key="not-utf8"),
    Kind(
        "unknown-camera",
        photo_jpeg,
        "unknown_camera",
        Refused(401, "invalid camera key"),
        key="unknown",
        http_path="ghost",
    ),
    Kind(
        "bad-camera-path", photo_jpeg, None, Refused(401, "invalid camera key"), http_path="%FF%FE"
    ),
    Kind(
        "no-camera-key",
        photo_jpeg,
        None,
        Refused(401, "missing X-Camera-Key"),
        http_headers=_http(X_Camera_Key=b""),
    ),
    Kind(
        "wrong-camera-key",
        photo_jpeg,
        None,
        Refused(401, "invalid camera key"),
        http_headers=_http(X_Camera_Key=b"wrong"),
    ),
    Kind(
        "frame-id-not-utf8",
        photo_jpeg,
        "malformed_header",
        Refused(400, "not UTF-8"),
        headers=_with("frame-id", b"f-\xff\xfe"),
        http_headers=_http(X_Frame_Id=b"f-\xff\xfe"),
    ),
    Kind(
        "frame-id-utf8",
        photo_jpeg,
        "malformed_header",
        Refused(400, "A-Z a-z 0-9"),
        headers=_with("frame-id", "caméra-1".encode()),
        http_headers=_http(X_Frame_Id="caméra-1".encode()),
    ),
    Kind(
        "frame-id-oversized",
        photo_jpeg,
        "malformed_header",
        Refused(400, "A-Z a-z 0-9"),
        headers=_with("frame-id", b"f" * 4000),
        http_headers=_http(X_Frame_Id=b"f" * 4000),
    ),
    Kind("frame-id-null-header", photo_jpeg, PROCESSED, None, headers=_with("frame-id", None)),
    Kind(
        "captured-at-not-a-time",
        photo_jpeg,
        "malformed_header",
        Refused(400, "X-Captured-At"),
        headers=_with("captured-at", b"not-a-time"),
        http_headers=_http(X_Captured_At=b"not-a-time"),
    ),
    Kind(
        "captured-at-oversized",
        photo_jpeg,
        "malformed_header",
        Refused(400, "X-Captured-At"),
        headers=_with("captured-at", b"9" * 4000),
        http_headers=_http(X_Captured_At=b"9" * 4000),
    ),
    Kind(
        "captured-at-5000-digits",
        photo_jpeg,
        "malformed_header",
        Refused(400, "X-Captured-At"),
        headers=_with("captured-at", b"9" * 5000),
        http_headers=_http(X_Captured_At=b"9" * 5000),
    ),
    Kind(
        "captured-at-future",
        photo_jpeg,
        "malformed_header",
        Refused(400, "X-Captured-At"),
        headers=_captured(30 * DAY_MS),
        http_headers=_http_captured(30 * DAY_MS),
    ),
    Kind(
        "captured-at-past",
        photo_jpeg,
        "malformed_header",
        Refused(400, "X-Captured-At"),
        headers=_captured(-30 * DAY_MS),
        http_headers=_http_captured(-30 * DAY_MS),
    ),
    Kind(
        "captured-at-iso",
        photo_jpeg,
        PROCESSED,
        PROCESSED,
        headers=_iso,
        http_headers=_http_iso,
    ),
    Kind(
        "captured-at-iso-no-zone",
        photo_jpeg,
        "malformed_header",
        Refused(400, "X-Captured-At"),
        headers=_with("captured-at", b"2026-12-05T10:00:00"),
        http_headers=_http(X_Captured_At=b"2026-12-05T10:00:00"),
    ),
    Kind("duplicate-first", photo_jpeg, PROCESSED, PROCESSED, frame_id="twice"),
    Kind("duplicate-second", photo_png, "duplicate_frame", "duplicate_frame", frame_id="twice"),
    Kind(
        "content-type-upper-params",
        photo_jpeg,
        PROCESSED,
        PROCESSED,
        headers=_with("content-type", b"IMAGE/JPEG; q=1"),
        content_type="IMAGE/JPEG; q=1",
    ),
    Kind(
        "content-type-gif-on-jpeg",
        photo_jpeg,
        "unsupported_format",
        Refused(415),
        headers=_with("content-type", b"image/gif"),
        content_type="image/gif",
    ),
    Kind(
        "jpeg-declared-png",
        photo_jpeg,
        "content_type_mismatch",
        "content_type_mismatch",
        headers=_with("content-type", b"image/png"),
        content_type="image/png",
    ),
    Kind(
        "over-byte-cap",
        lambda: _random(MAX_BYTES + 1),
        "payload_too_large",
        Refused(413),
        content_type="image/jpeg",
    ),
    # Bytes that are not a whole JPEG or PNG ------------------------------------------------
    Kind(
        "truncated-jpeg",
        lambda: photo_jpeg()[: len(photo_jpeg()) // 2],
        "truncated_image",
        "truncated_image",
    ),
    Kind("truncated-png", lambda: photo_png()[:-40], "truncated_image", "truncated_image"),
    Kind(
        "jpeg-trailing-bytes",
        lambda: photo_jpeg() + b"trailing",
        "truncated_image",
        "truncated_image",
    ),
    Kind(
        "wrong-magic",
        lambda: b"\x00" + photo_jpeg()[1:],
        "unsupported_format",
        "unsupported_format",
        content_type="image/jpeg",
    ),
    Kind(
        "text",
        lambda: b"this is not an image at all\n" * 10,
        "unsupported_format",
        Refused(415),
        content_type="text/plain",
    ),
    Kind(
        "json",
        lambda: json.dumps({"image": "cat.jpg", "w": 640}).encode(),
        "unsupported_format",
        Refused(415),
        content_type="application/json",
    ),
    Kind(
        "random-bytes",
        lambda: _random(4096),
        "unsupported_format",
        Refused(415),
        content_type="application/octet-stream",
    ),
    Kind(
        "random-bytes-declared-jpeg",
        lambda: _random(4096),
        "unsupported_format",
        "unsupported_format",
        headers=_with("content-type", b"image/jpeg"),
        content_type="image/jpeg",
    ),
    *(
        Kind(
            fmt.lower(),
            lambda fmt=fmt: seeds.other_format(fmt),
            "unsupported_format",
            Refused(415),
            content_type=f"image/{fmt.lower()}",
        )
        for fmt in ("GIF", "BMP", "TIFF", "WEBP")
    ),
    Kind(
        "jpeg-zero-width",
        lambda: seeds.claiming(photo_jpeg(), 0, 120),
        "corrupt_image",
        "corrupt_image",
    ),
    Kind(
        "png-zero-height",
        lambda: seeds.claiming(photo_png(), 160, 0),
        "corrupt_image",
        "corrupt_image",
    ),
    Kind(
        "png-chunk-past-end",
        lambda: _png_chunk_past_end(photo_png()),
        "corrupt_image",
        "corrupt_image",
    ),
    Kind(
        "jpeg-bomb",
        lambda: seeds.claiming(photo_jpeg(), 50_000, 50_000),
        "too_many_pixels",
        "too_many_pixels",
    ),
    Kind(
        "png-bomb",
        lambda: seeds.claiming(photo_png(), 100_000, 100_000),
        "too_many_pixels",
        "too_many_pixels",
    ),
    Kind("jpeg-scan-bomb", lambda: seeds.scan_bomb(600), "too_many_scans", "too_many_scans"),
    Kind("png-bad-crc", lambda: _png_bad_crc(photo_png()), "decode_failed", "decode_failed"),
    Kind(
        "jpeg-no-quant-table",
        lambda: _drop_segment(photo_jpeg(), 0xDB),
        "decode_failed",
        "decode_failed",
    ),
    # Odd but valid images: decided on -----------------------------------------------------
    Kind("jpeg-corrupt-scan", lambda: _corrupt_scan(photo_jpeg()), PROCESSED, PROCESSED),
    Kind("jpeg-zero-padded", lambda: photo_jpeg() + b"\x00" * 64, PROCESSED, PROCESSED),
    Kind(
        "jpeg-claims-more-than-it-holds",
        lambda: seeds.claiming(photo_jpeg(), 4000, 3000),
        PROCESSED,
        PROCESSED,
    ),
    Kind("jpeg-cmyk", lambda: seeds.cmyk_jpeg("astronaut", 160, 120), PROCESSED, PROCESSED),
    Kind("jpeg-grey", lambda: seeds.grey_jpeg("rocket", 160, 120), PROCESSED, PROCESSED),
    Kind(
        "jpeg-progressive",
        lambda: seeds.progressive_jpeg("chelsea", 160, 120),
        PROCESSED,
        PROCESSED,
    ),
    Kind(
        "jpeg-restart-markers", lambda: seeds.restart_jpeg("coffee", 160, 120), PROCESSED, PROCESSED
    ),
    Kind(
        "jpeg-exif-rotated",
        lambda: seeds.exif_rotated_jpeg("chelsea", 160, 120),
        PROCESSED,
        PROCESSED,
    ),
    Kind("jpeg-444", lambda: seeds.jpeg_444("astronaut", 160, 120), PROCESSED, PROCESSED),
    Kind("png-grey", lambda: seeds.grey_png("rocket", 160, 120), PROCESSED, PROCESSED),
    Kind("png-16bit", lambda: seeds.png_16bit("coffee", 160, 120), PROCESSED, PROCESSED),
    Kind("png-alpha", lambda: seeds.alpha_png("chelsea", 160, 120), PROCESSED, PROCESSED),
    Kind("png-palette", lambda: seeds.palette_png("astronaut", 160, 120), PROCESSED, PROCESSED),
    Kind("png-bilevel", lambda: seeds.bilevel_png("rocket", 160, 120), PROCESSED, PROCESSED),
    Kind("png-1x1", lambda: seeds.noise_image(".png", 1, 1), PROCESSED, PROCESSED),
    Kind("jpeg-1x1", lambda: seeds.noise_image(".jpg", 1, 1), PROCESSED, PROCESSED),
    Kind("png-4000x1", lambda: seeds.noise_image(".png", 4000, 1), PROCESSED, PROCESSED),
    Kind("jpeg-1x20000", lambda: seeds.noise_image(".jpg", 1, 20000), PROCESSED, PROCESSED),
    Kind("jpeg-2000x8", lambda: seeds.noise_image(".jpg", 2000, 8), PROCESSED, PROCESSED),
    Kind("png-200000x1", lambda: seeds.flat_png(200_000, 1), PROCESSED, PROCESSED),
]


def standard_headers(frame_id: str, now_ms: int) -> list[tuple[str, bytes | None]]:
    return [("frame-id", frame_id.encode()), ("captured-at", str(now_ms).encode())]


def kafka_headers(kind: Kind, frame_id: str, now_ms: int) -> list[tuple[str, bytes | None]]:
    """The record's headers: the usual ones, with those the kind names replaced."""
    extra = kind.headers(frame_id, now_ms) if kind.headers else []
    named = {name for name, _ in extra}
    return [h for h in standard_headers(frame_id, now_ms) if h[0] not in named] + extra


def http_content_type(kind: Kind, body: bytes | None) -> str:
    if kind.content_type:
        return kind.content_type
    return "image/png" if (body or b"").startswith(b"\x89PNG") else "image/jpeg"
