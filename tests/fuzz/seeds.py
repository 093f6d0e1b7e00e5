"""Real photographs (scikit-image's bundled data) encoded the ways cameras and outside testers
encode them: the seeds the fuzzer mutates, and the valid-but-odd kinds of the bad-input corpus.

Every builder is cached and deterministic: the same bytes on every run.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from functools import cache

import cv2
import numpy as np
from PIL import Image
from skimage import data as skdata

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
EXIF_ORIENTATION = 0x0112


@cache
def photo(name: str = "chelsea", width: int = 96, height: int = 64) -> np.ndarray:
    """An RGB uint8 photograph from scikit-image, resized to width x height."""
    rgb = getattr(skdata, name)()
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def _pil(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def jpeg(name: str = "chelsea", width: int = 96, height: int = 64, quality: int = 90) -> bytes:
    bgr = cv2.cvtColor(photo(name, width, height), cv2.COLOR_RGB2BGR)
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def progressive_jpeg(name: str = "chelsea", width: int = 96, height: int = 64) -> bytes:
    return _pil(Image.fromarray(photo(name, width, height)), "JPEG", progressive=True)


def grey_jpeg(name: str = "chelsea", width: int = 96, height: int = 64) -> bytes:
    return _pil(Image.fromarray(photo(name, width, height)).convert("L"), "JPEG")


def cmyk_jpeg(name: str = "chelsea", width: int = 96, height: int = 64) -> bytes:
    return _pil(Image.fromarray(photo(name, width, height)).convert("CMYK"), "JPEG")


def jpeg_444(name: str = "chelsea", width: int = 96, height: int = 64) -> bytes:
    return _pil(Image.fromarray(photo(name, width, height)), "JPEG", subsampling=0, quality=95)


def restart_jpeg(name: str = "chelsea", width: int = 96, height: int = 64) -> bytes:
    """With restart markers every MCU row or so (cameras that stream JPEG often set them)."""
    bgr = cv2.cvtColor(photo(name, width, height), cv2.COLOR_RGB2BGR)
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_RST_INTERVAL, 4])[1].tobytes()


def exif_rotated_jpeg(name: str = "chelsea", width: int = 96, height: int = 64) -> bytes:
    """EXIF orientation 6 (rotate 90 degrees to display): stored width x height."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    return _pil(Image.fromarray(photo(name, width, height)), "JPEG", exif=exif.tobytes())


def png(name: str = "chelsea", width: int = 96, height: int = 64) -> bytes:
    bgr = cv2.cvtColor(photo(name, width, height), cv2.COLOR_RGB2BGR)
    return cv2.imencode(".png", bgr)[1].tobytes()


def grey_png(name: str = "chelsea", width: int = 96, height: int = 64) -> bytes:
    return _pil(Image.fromarray(photo(name, width, height)).convert("L"), "PNG")


def png_16bit(name: str = "chelsea", width: int = 96, height: int = 64) -> bytes:
    bgr = cv2.cvtColor(photo(name, width, height), cv2.COLOR_RGB2BGR).astype(np.uint16) * 257
    return cv2.imencode(".png", bgr)[1].tobytes()


def alpha_png(name: str = "chelsea", width: int = 96, height: int = 64) -> bytes:
    rgba = Image.fromarray(photo(name, width, height)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((width, height)))
    return _pil(rgba, "PNG")


def palette_png(name: str = "chelsea", width: int = 96, height: int = 64) -> bytes:
    return _pil(Image.fromarray(photo(name, width, height)).quantize(16), "PNG")


def bilevel_png(name: str = "chelsea", width: int = 96, height: int = 64) -> bytes:
    return _pil(Image.fromarray(photo(name, width, height)).convert("1"), "PNG")


def other_format(fmt: str, name: str = "chelsea", width: int = 96, height: int = 64) -> bytes:
    """GIF, BMP, TIFF, WebP: formats ingest does not take (JPEG and PNG only)."""
    return _pil(Image.fromarray(photo(name, width, height)), fmt)


def noise_image(ext: str, width: int, height: int, seed: int = 0) -> bytes:
    """Random pixels in any shape cv2 encodes (extreme aspect ratios, 1 x 1)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(ext, pixels)[1].tobytes()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def flat_png(width: int, height: int) -> bytes:
    """A black RGB PNG of any size libpng's format allows, written by hand (cv2 refuses rows
    wider than libpng's default limit): a few kilobytes for millions of pixels."""
    compress = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)
    body = b"".join(compress.compress(row) for _ in range(height)) + compress.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")
    )


def claiming(data: bytes, width: int, height: int) -> bytes:
    """A real JPEG or PNG whose header is rewritten to claim width x height (a decompression
    bomb when large: a few kilobytes that would decode to gigabytes). PNG's CRC is fixed."""
    out = bytearray(data)
    if data.startswith(b"\x89PNG"):
        out[16:24] = struct.pack(">II", width, height)
        out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])))
        return bytes(out)
    sof = next(i for i in range(2, len(out) - 1) if out[i] == 0xFF and out[i + 1] in SOF)
    out[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(out)


SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def scan_bomb(scans: int, width: int = 96, height: int = 64) -> bytes:
    """A progressive JPEG followed by ``scans`` empty scans before its end: each costs libjpeg
    a pass over every block, so a few megabytes of them took a decoder minutes."""
    data = progressive_jpeg("chelsea", width, height)
    sos = data.index(b"\xff\xda")
    (length,) = struct.unpack_from(">H", data, sos + 2)
    header = data[sos : sos + 2 + length]
    return data[:-2] + header * scans + b"\xff\xd9"


SEEDS: dict[str, Callable[[], bytes]] = {
    **{f"jpeg-{n}": (lambda n=n: jpeg(n)) for n in PHOTOS},
    "jpeg-progressive": progressive_jpeg,
    "jpeg-grey": grey_jpeg,
    "jpeg-cmyk": cmyk_jpeg,
    "jpeg-444": jpeg_444,
    "jpeg-restart": restart_jpeg,
    "jpeg-exif-rotated": exif_rotated_jpeg,
    **{f"png-{n}": (lambda n=n: png(n)) for n in PHOTOS},
    "png-grey": grey_png,
    "png-16bit": png_16bit,
    "png-alpha": alpha_png,
    "png-palette": palette_png,
    "png-bilevel": bilevel_png,
}


@cache
def seed_bytes() -> tuple[bytes, ...]:
    return tuple(make() for make in SEEDS.values())
