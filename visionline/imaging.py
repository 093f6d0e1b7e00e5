"""Pure image functions: header inspection without decoding, decode, quality, model input."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import cv2
import numpy as np

from visionline.messages import FrameMeta, Quality
from visionline.models.preprocessing import resize_center_crop

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they hold the size.
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD8)}
_FILL = re.compile(rb"\xff+")
# Encoders write a few dozen segments before the frame header (a camera's APPn, tables): a
# frame of 2 million empty ones kept ingest's header walk busy for half a second.
MAX_JPEG_HEADER_SEGMENTS = 1000
# Each scan of a progressive JPEG costs the decoder a pass over the image's blocks, however few
# bytes it holds: 500,000 empty scans (7 MB) kept libjpeg busy for 50 s on a 3-megapixel frame.
# No encoder writes more than a few dozen; 500 is the limit libjpeg-turbo's own fuzzers set.
MAX_JPEG_SCANS = 500
# A frame longer than this many times its short side is first cut to the middle part that the
# centre crop keeps: resizing the whole of a 1 x 20000 frame to a short side of 224 made a
# 224 x 4,480,000 image (3 GB, 29 s) to keep 224 x 224 of it.
MAX_ASPECT = 4


class FrameRejected(Exception):
    """A frame that cannot go on; ``error_type`` is the dead-letter reason, ``frame`` what is
    known of the frame (its id and original coordinates) when the rejecting stage knows it."""

    def __init__(
        self,
        error_type: str,
        message: str,
        frame: FrameMeta | None = None,
        frame_id: str | None = None,  # when ``frame`` is not known but its id is
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.frame = frame
        self.frame_id = frame.frame_id if frame is not None else frame_id

    def of(self, frame: FrameMeta) -> FrameRejected:
        self.frame, self.frame_id = frame, frame.frame_id
        return self


@dataclass(frozen=True)
class ImageHeader:
    content_type: str
    width: int
    height: int


def sniff_content_type(data: bytes) -> str | None:
    if data.startswith(JPEG_MAGIC):
        return "image/jpeg"
    if data.startswith(PNG_MAGIC):
        return "image/png"
    return None


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos, end = 2, len(data)
    for _ in range(MAX_JPEG_HEADER_SEGMENTS):
        if pos + 4 > end:
            break
        if data[pos] != 0xFF:
            raise FrameRejected("corrupt_image", f"JPEG marker expected at byte {pos}")
        fill = _FILL.match(data, pos)  # fill bytes before a marker, at C speed
        assert fill is not None  # data[pos] is 0xFF, checked above
        pos = fill.end() - 1
        if pos + 4 > end:
            break
        marker = data[pos + 1]
        if marker in _STANDALONE_MARKERS:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in _SOF_MARKERS:
            if pos + 9 > end:
                break
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            raise FrameRejected("corrupt_image", "JPEG has no frame header before its scan")
        pos += 2 + length
    else:
        raise FrameRejected(
            "corrupt_image", f"JPEG has over {MAX_JPEG_HEADER_SEGMENTS} segments before its frame"
        )
    raise FrameRejected("truncated_image", "JPEG ends before its frame header")


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise FrameRejected("truncated_image", "PNG ends before its IHDR header")
    return struct.unpack_from(">II", data, 16)


def inspect_header(data: bytes, declared_type: str | None = None) -> ImageHeader:
    """Format and pixel size from the image header alone: no pixel is decoded."""
    content_type = sniff_content_type(data)
    if content_type is None:
        raise FrameRejected("unsupported_format", "payload is neither JPEG nor PNG")
    if declared_type and declared_type != content_type:
        raise FrameRejected(
            "content_type_mismatch", f"header says {declared_type}, bytes are {content_type}"
        )
    width, height = _jpeg_size(data) if content_type == "image/jpeg" else _png_size(data)
    if width <= 0 or height <= 0:
        raise FrameRejected("corrupt_image", f"image header gives size {width}x{height}")
    return ImageHeader(content_type, width, height)


def check_complete(data: bytes, content_type: str) -> None:
    """A cut-off upload, or a JPEG of more scans than any encoder writes, is caught here,
    before anyone spends a decode on it."""
    tail = data.rstrip(b"\x00")  # some encoders pad JPEGs with zeros
    if content_type == "image/jpeg" and not tail.endswith(b"\xff\xd9"):
        raise FrameRejected("truncated_image", "JPEG has no end-of-image marker")
    if content_type == "image/png" and not tail.endswith(PNG_IEND):
        raise FrameRejected("truncated_image", "PNG has no IEND chunk")
    if content_type == "image/png":
        _check_png_chunks(tail)
    # Entropy-coded data stuffs every 0xFF with 0x00, so FF DA is a start of scan (or a byte
    # of a metadata segment, which only ever overcounts).
    if content_type == "image/jpeg" and (scans := data.count(b"\xff\xda")) > MAX_JPEG_SCANS:
        raise FrameRejected("too_many_scans", f"JPEG has {scans} scans, over {MAX_JPEG_SCANS}")


def _check_png_chunks(data: bytes) -> None:
    """Every chunk lies within the payload. OpenCV's PNG reader allocates what a chunk's length
    claims before reading it: a 900-byte PNG whose IDAT claimed 4 GiB took 4 GiB and 3 s."""
    pos, end = len(PNG_MAGIC), len(data)
    while pos < end:
        if pos + 12 > end:
            raise FrameRejected("corrupt_image", f"PNG chunk at byte {pos} is cut short")
        (length,) = struct.unpack_from(">I", data, pos)
        if length > end - pos - 12:
            kind = data[pos + 4 : pos + 8].decode("latin-1")
            raise FrameRejected(
                "corrupt_image",
                f"PNG chunk {kind!r} at byte {pos} claims {length} bytes, past the end",
            )
        pos += 12 + length


def reduced_decode_flag(width: int, height: int, target: int) -> int:
    """The largest libjpeg scale-down (1/2, 1/4, 1/8) that keeps the short side >= target."""
    short = min(width, height)
    for factor, flag in (
        (8, cv2.IMREAD_REDUCED_COLOR_8),
        (4, cv2.IMREAD_REDUCED_COLOR_4),
        (2, cv2.IMREAD_REDUCED_COLOR_2),
    ):
        if short // factor >= target:
            return flag
    return cv2.IMREAD_COLOR


def decode(data: bytes, header: ImageHeader, target: int, reduced: bool = True) -> np.ndarray:
    """BGR pixels as stored, in the size the header gives (EXIF orientation is not applied:
    OpenCV would turn a 640 x 480 frame into 480 x 640 pixels under a message saying 640 x 480,
    and part boxes would no longer match the frame); JPEGs much larger than the model input are
    decoded at reduced scale."""
    flag = cv2.IMREAD_COLOR
    if reduced and header.content_type == "image/jpeg":
        flag = reduced_decode_flag(header.width, header.height, target)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise FrameRejected("decode_failed", f"{header.content_type} could not be decoded")
    return image


HISTOGRAM_BINS = 4  # per channel: a 4x4x4 joint colour histogram, 64 values


def colour_histogram(bgr: np.ndarray, bins: int = HISTOGRAM_BINS) -> tuple[float, ...]:
    """The frame's image descriptor for drift detection: a joint ``bins``^3 histogram of
    (B, G, R), index b*bins^2 + g*bins + r, as fractions of the pixels (rounded to 1e-5).

    Cheap (about 0.2 ms at 224x224) and honest about what it is: it sees changes of colour and
    light, not of content that keeps the same colours."""
    hist = cv2.calcHist([bgr], [0, 1, 2], None, [bins] * 3, [0, 256] * 3).ravel()
    total = float(hist.sum()) or 1.0
    return tuple(round(float(v) / total, 5) for v in hist)


def quality_measures(bgr: np.ndarray) -> Quality:
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    saturation = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)[:, :, 1]
    return Quality(
        brightness=float(grey.mean()),
        contrast=float(grey.std()),
        blur=float(cv2.Laplacian(grey, cv2.CV_64F).var()),
        saturation=float(saturation.mean()),
        histogram=colour_histogram(bgr),
    )


def centre_window(image: np.ndarray, max_aspect: int = MAX_ASPECT) -> np.ndarray:
    """The middle of an elongated image, at most ``max_aspect`` times as long as it is wide:
    what a centre crop keeps, with room to spare. A view, no copy."""
    height, width = image.shape[:2]
    keep = min(height, width) * max_aspect
    if width > keep:
        image = image[:, (width - keep) // 2 :][:, :keep]
    if height > keep:
        image = image[(height - keep) // 2 :][:keep]
    return image


def model_input(data: bytes, header: ImageHeader, size: int, reduced: bool = True):
    """Encoded frame to (uint8 RGB HWC tensor at size x size, quality measures)."""
    bgr = resize_center_crop(centre_window(decode(data, header, size, reduced)), size)
    quality = quality_measures(bgr)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(rgb), quality
