"""The fuzz harness of the frame decoders: what they are given, and what they must do with it.

``raw_frames()`` draws Kafka records as a camera or an attacker could send them: real JPEG and
PNG photographs (``tests.fuzz.seeds``) under bit flips, truncations, splices, insertions and
edits of the fields a decoder trusts (SOF and IHDR sizes, sampling, depth, colour type,
segment lengths, repeated scans), or arbitrary bytes; with good, odd or broken headers and keys.

``run_decoders`` puts one record through every decoder a frame meets, as the workers call them:
ingest's ``validate_frame``, then both paths' decodes (preprocess's ``preprocess``; inspect's
``decode_frame`` and the part detector's ``frame_tensor`` and a crop of the whole frame). The
property (``check``): each returns a valid result or raises ``FrameRejected`` with a documented
reason, never any other exception; a decoded frame has the size ingest read from its header,
within the pixel cap; no step allocates more than a few frames' worth of pixels.
"""

from __future__ import annotations

import math
import struct
import time
import tracemalloc
import zlib
from dataclasses import dataclass, field

import cv2
from hypothesis import strategies as st

from services.ingest.logic import Limits, RawFrame, validate_frame
from services.inspect.logic import decode_frame
from services.preprocess.logic import preprocess
from tests.fuzz.seeds import SOF, seed_bytes
from visionline.imaging import FrameRejected
from visionline.inspection.vision import CROP, FRAME_H, FRAME_W, crop_tensors, frame_tensor
from visionline.messages import SourceRef

# Small enough that a bomb under the cap decodes in a moment, large enough for odd shapes.
LIMITS = Limits(max_bytes=1 << 20, max_pixels=2_000_000)
INPUT_SIZE = 224
# Ingest's documented dead-letter reasons (docs/operations.md), and the decoders' one.
INGEST_REASONS = {
    "missing_camera_id",
    "malformed_camera_id",
    "malformed_header",
    "empty_payload",
    "payload_too_large",
    "unsupported_format",
    "content_type_mismatch",
    "too_many_pixels",
    "too_many_scans",
    "truncated_image",
    "corrupt_image",
}
DECODE_REASONS = {"decode_failed"}
# What the decoders may hold at once: a few frames' worth of pixels (decoded BGR, RGB, a crop
# window of up to 4 frames) and the fixed-size model inputs.
FRAME_COPIES = 8
SLACK_BYTES = 16 << 20
SOURCE = SourceRef(topic="visionline.frames.raw", partition=0, offset=7)
NOW_S = 1_800_000_000.0


class DecoderBug(AssertionError):
    """A decoder broke the property: the message says how."""


@dataclass
class Outcome:
    stage: str  # where the frame stopped: "ingest", "preprocess", "inspect" or "passed"
    reason: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    peak_bytes: int = 0


def run_decoders(raw: RawFrame, limits: Limits = LIMITS) -> Outcome:
    """Every decoder a frame meets; DecoderBug when one breaks the property."""
    outcome = Outcome("passed")
    try:
        meta = _timed(outcome, "ingest", lambda: validate_frame(raw, limits))
    except FrameRejected as rejected:
        _expect(rejected, INGEST_REASONS, "ingest")
        return Outcome("ingest", rejected.error_type, outcome.seconds)
    pixels = meta.width * meta.height
    if pixels > limits.max_pixels:
        raise DecoderBug(f"ingest admitted {meta.width}x{meta.height} over the pixel cap")
    budget = FRAME_COPIES * 3 * pixels + SLACK_BYTES
    for stage, step in (("preprocess", _classify), ("inspect", _inspect)):
        try:
            _timed(outcome, stage, lambda step=step: _bounded(outcome, budget, step, meta, raw))
        except FrameRejected as rejected:
            _expect(rejected, DECODE_REASONS, stage)
            outcome.stage, outcome.reason = stage, rejected.error_type
    return outcome


def check(raw: RawFrame, limits: Limits = LIMITS) -> Outcome:
    """``run_decoders``, with any exception other than FrameRejected turned into DecoderBug
    (the workers crash on those: a restart, then a poison message)."""
    try:
        return run_decoders(raw, limits)
    except DecoderBug:
        raise
    except Exception as exc:
        raise DecoderBug(f"{type(exc).__name__}: {exc}"[:500]) from exc


def _classify(meta, raw: RawFrame) -> None:
    out, tensor = preprocess(meta, raw.value, INPUT_SIZE)
    if len(tensor) != INPUT_SIZE * INPUT_SIZE * 3 or out.tensor.shape != (224, 224, 3):
        raise DecoderBug(f"preprocess gave a tensor of shape {out.tensor.shape}")
    _finite(out.quality)


def _inspect(meta, raw: RawFrame) -> None:
    bgr, scaled_rgb, quality = decode_frame(meta, raw.value)
    if bgr.shape != (meta.height, meta.width, 3):
        raise DecoderBug(f"header says {meta.width}x{meta.height}, decoded {bgr.shape}")
    _finite(quality)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    tensor, _ = frame_tensor(rgb, scaled_rgb)
    crops, _ = crop_tensors(rgb, [(0.0, 0.0, float(meta.width), float(meta.height))])
    if tensor.shape != (FRAME_H, FRAME_W, 3) or crops.shape[1:] != (CROP, CROP, 3):
        raise DecoderBug(f"inspect inputs of shapes {tensor.shape}, {crops.shape}")


def _finite(quality) -> None:
    values = [quality.brightness, quality.contrast, quality.blur, quality.saturation]
    if not all(math.isfinite(v) for v in [*values, *(quality.histogram or ())]):
        raise DecoderBug(f"quality measures not finite: {values}")


def _expect(rejected: FrameRejected, reasons: set[str], stage: str) -> None:
    if rejected.error_type not in reasons or not rejected.message:
        raise DecoderBug(f"{stage} rejected with {rejected.error_type!r}: {rejected.message!r}")


def _timed(outcome: Outcome, stage: str, call):
    start = time.perf_counter()
    try:
        return call()
    finally:
        outcome.seconds[stage] = time.perf_counter() - start


def _bounded(outcome: Outcome, budget: int, step, meta, raw: RawFrame) -> None:
    """``step``, with the arrays it allocates (numpy's and OpenCV's outputs) traced."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        step(meta, raw)
    finally:
        peak = tracemalloc.get_traced_memory()[1] - base
        if not tracing:
            tracemalloc.stop()
    outcome.peak_bytes = max(outcome.peak_bytes, peak)
    if peak > budget:
        name = getattr(step, "__name__", "step").strip("_")
        raise DecoderBug(
            f"{name}: {meta.width}x{meta.height} frame made {peak >> 20} MiB of arrays"
        )


# Strategies -----------------------------------------------------------------------------------

INTERESTING_16 = (0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 255, 256, 1023, 4095, 32767, 32768, 65535)
INTERESTING_32 = (0, 1, 2, 16, 255, 65535, 65536, 1 << 20, 1 << 24, 1 << 31, (1 << 32) - 1)


def mostly(usual, unusual, in_ten: int = 8):
    """``usual`` in_ten times out of ten, else ``unusual``: most frames should reach the
    decoders, not stop at a header check."""
    return st.integers(0, 9).flatmap(lambda n: usual if n < in_ten else unusual)


def _u16():
    return st.one_of(st.sampled_from(INTERESTING_16), st.integers(0, 0xFFFF))


def _u32():
    return st.one_of(st.sampled_from(INTERESTING_32), st.integers(0, 0xFFFFFFFF))


def jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """(offset, marker) of each marker segment before the first scan's data."""
    out, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        out.append((pos, marker))
        if marker == 0xDA:
            break
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    return out


def png_chunks(data: bytes) -> list[tuple[int, bytes, int]]:
    """(offset, type, body length) of each chunk."""
    out, pos = [], 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        out.append((pos, data[pos + 4 : pos + 8], length))
        pos += 12 + length
    return out


def _fix_png_crc(data: bytearray, pos: int, length: int) -> None:
    end = pos + 8 + length
    if end + 4 <= len(data):
        data[end : end + 4] = struct.pack(">I", zlib.crc32(bytes(data[pos + 4 : end])))


@st.composite
def edit_jpeg_fields(draw, data: bytes) -> bytes:
    """An edit of what a JPEG decoder trusts: SOF size, precision, components, sampling,
    a segment's length; a segment dropped or doubled; scans repeated."""
    segments = jpeg_segments(data)
    if not segments:
        return data
    out = bytearray(data)
    pos, marker = draw(st.sampled_from(segments))
    kind = draw(st.sampled_from(["sof", "length", "drop", "double", "scans", "body"]))
    sofs = [p for p, m in segments if m in SOF]
    if kind == "sof" and sofs:
        sof = draw(st.sampled_from(sofs))
        field_at = draw(st.sampled_from([1, 4, 5, 7, 9, 11, 12]))  # type precision h w n id hv
        if field_at == 1:  # another coding: progressive, lossless, arithmetic
            out[sof + 1] = draw(st.sampled_from(sorted(SOF)))
        elif field_at in (5, 7) and sof + field_at + 2 <= len(out):
            out[sof + field_at : sof + field_at + 2] = struct.pack(">H", draw(_u16()))
        elif sof + field_at < len(out):
            out[sof + field_at] = draw(st.integers(0, 255))
    elif kind == "length":
        out[pos + 2 : pos + 4] = struct.pack(">H", draw(_u16()))
    elif kind == "drop" and marker != 0xDA:
        length = struct.unpack_from(">H", out, pos + 2)[0]
        del out[pos : pos + 2 + length]
    elif kind == "double" and marker != 0xDA:
        length = struct.unpack_from(">H", out, pos + 2)[0]
        out[pos:pos] = out[pos : pos + 2 + length]
    elif kind == "scans":
        sos = [p for p, m in segments if m == 0xDA]
        if sos:
            length = struct.unpack_from(">H", out, sos[0] + 2)[0]
            header = bytes(out[sos[0] : sos[0] + 2 + length])
            out[-2:-2] = header * draw(st.integers(1, 1500))
    elif pos + 4 < len(out):
        length = min(struct.unpack_from(">H", out, pos + 2)[0], len(out) - pos - 4)
        at = pos + 4 + draw(st.integers(0, max(0, length - 1)))
        if at < len(out):
            out[at] = draw(st.integers(0, 255))
    return bytes(out)


@st.composite
def edit_png_fields(draw, data: bytes) -> bytes:
    """An edit of what a PNG decoder trusts: IHDR size, depth, colour type, compression,
    filter, interlace; a chunk's length; a chunk dropped, doubled or added; IDAT's zlib."""
    chunks = png_chunks(data)
    if not chunks:
        return data
    out = bytearray(data)
    kind = draw(st.sampled_from(["ihdr", "length", "drop", "double", "add", "idat"]))
    fix_crc = draw(st.booleans()) or kind == "ihdr"
    pos, ctype, length = draw(st.sampled_from(chunks))
    if kind == "ihdr" and chunks[0][1] == b"IHDR":
        pos, _, length = chunks[0]
        field_at = draw(st.sampled_from([8, 12, 16, 17, 18, 19, 20]))
        if pos + field_at + 4 > len(out):  # a cut-off IHDR: nothing to edit
            pass
        elif field_at in (8, 12):
            out[pos + field_at : pos + field_at + 4] = struct.pack(">I", draw(_u32()))
        else:
            out[pos + field_at] = draw(st.sampled_from([0, 1, 2, 3, 4, 6, 8, 16, 255]))
    elif kind == "length":
        out[pos : pos + 4] = struct.pack(">I", draw(_u32()))
        fix_crc = False
    elif kind == "drop":
        del out[pos : pos + 12 + length]
        fix_crc = False
    elif kind == "double":
        out[pos:pos] = out[pos : pos + 12 + length]
    elif kind == "add":
        body = draw(st.binary(max_size=64))
        name = draw(
            st.sampled_from([b"tEXt", b"zTXt", b"iCCP", b"eXIf", b"PLTE", b"tRNS", b"aBcD"])
        )
        chunk = struct.pack(">I", len(body)) + name + body
        out[pos:pos] = chunk + struct.pack(">I", zlib.crc32(chunk[4:]))
        fix_crc = False
    elif ctype == b"IDAT":
        try:  # a stream split over several IDATs, or already broken, is left alone
            body = bytearray(
                zlib.decompressobj().decompress(bytes(out[pos + 8 : pos + 8 + length]))
            )
        except zlib.error:
            body = bytearray()
        if body:
            body[draw(st.integers(0, len(body) - 1))] = draw(st.integers(0, 255))
            packed = zlib.compress(bytes(body))
            out[pos : pos + 12 + length] = (
                struct.pack(">I", len(packed)) + b"IDAT" + packed + b"\0\0\0\0"
            )
            length = len(packed)
    if fix_crc:
        _fix_png_crc(out, pos, length)
    return bytes(out)


@st.composite
def mutate_bytes(draw, data: bytes) -> bytes:
    """A blind mutation: bit flips, byte sets, truncation, deletion, duplication, insertion."""
    out = bytearray(data)
    kind = draw(st.sampled_from(["flip", "set", "truncate", "delete", "dup", "insert"]))
    if not out:
        return bytes(draw(st.binary(max_size=64)))
    at = draw(st.integers(0, len(out) - 1))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            spot = draw(st.integers(0, len(out) - 1))
            out[spot] ^= 1 << draw(st.integers(0, 7))
    elif kind == "set":
        out[at] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF, 0xD9, 0xDA]))
    elif kind == "truncate":
        del out[at:]
    elif kind == "delete":
        del out[at : at + draw(st.integers(1, 256))]
    elif kind == "dup":
        out[at:at] = out[at : at + draw(st.integers(1, 256))]
    else:
        out[at:at] = draw(st.binary(min_size=1, max_size=64))
    return bytes(out)


@st.composite
def image_bytes(draw) -> bytes:
    """A seed photograph under 0-4 mutations, a splice of two, or arbitrary bytes; often
    with its end marker restored, so that the frame reaches the decoders."""
    seeds = seed_bytes()
    source = draw(mostly(st.just("seed"), st.sampled_from(["splice", "arbitrary"])))
    if source == "arbitrary":
        magic = draw(st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"]))
        return magic + draw(st.binary(max_size=2048))
    data = draw(st.sampled_from(seeds))
    if source == "splice":
        other = draw(st.sampled_from(seeds))
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + other[draw(st.integers(0, len(other))) :]
    for _ in range(draw(st.integers(0, 4))):
        if data.startswith(b"\xff\xd8") and draw(st.booleans()):
            data = draw(edit_jpeg_fields(data))
        elif data.startswith(b"\x89PNG") and draw(st.booleans()):
            data = draw(edit_png_fields(data))
        else:
            data = draw(mutate_bytes(data))
    if draw(st.booleans()):
        if data.startswith(b"\xff\xd8") and not data.endswith(b"\xff\xd9"):
            data += b"\xff\xd9"
        elif data.startswith(b"\x89PNG") and not data.endswith(b"IEND\xaeB`\x82"):
            data += b"\x00\x00\x00\x00IEND\xaeB`\x82"
    return data


def _text_header():
    return st.one_of(
        st.binary(max_size=40),
        st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass")),
    )


CONTENT_TYPES = [b"image/jpeg", b"image/png", b"IMAGE/JPEG", b"image/png; q=1", b"image/gif", b""]


def headers():
    """Mostly what a camera sends (nothing, or a frame id and a time), else anything."""
    good = [("frame-id", b"f-0001"), ("captured-at", str(int(NOW_S * 1000)).encode())]
    content_type = st.one_of(st.sampled_from(CONTENT_TYPES), _text_header())
    frame_id = st.one_of(st.just(b"f-0001"), st.just(b"x" * 200), _text_header())
    captured = st.one_of(
        st.just(str(int(NOW_S * 1000)).encode()),
        st.just(b"2027-01-15T08:00:00+00:00"),
        st.integers(-(10**20), 10**20).map(lambda n: str(n).encode()),
        _text_header(),
    )
    one = st.one_of(
        st.tuples(st.just("content-type"), content_type),
        st.tuples(st.just("frame-id"), frame_id),
        st.tuples(st.just("captured-at"), captured),
        st.tuples(st.sampled_from(["Content-Type", "FRAME-ID", "x-other"]), _text_header()),
        st.tuples(st.sampled_from(["content-type", "frame-id"]), st.none()),
    )
    usual = st.sampled_from([[], good])
    return mostly(usual, st.lists(one, min_size=1, max_size=4), in_ten=7)


def keys():
    """Mostly a valid camera id."""
    odd = st.one_of(st.none(), st.just(b""), st.binary(max_size=80))
    return mostly(st.sampled_from([b"cam-1", b"line-7"]), odd, in_ten=9)


@st.composite
def raw_frames(draw) -> RawFrame:
    return RawFrame(
        key=draw(keys()),
        value=draw(image_bytes()),
        headers=draw(headers()),
        source=SOURCE,
        timestamp_s=NOW_S,
    )
