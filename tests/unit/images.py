"""Small real images made in memory for unit tests."""

import cv2
import numpy as np


def photo(width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(image, (5, 5), 0)


def jpeg(width: int = 320, height: int = 240, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", photo(width, height), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


def png(width: int = 64, height: int = 48) -> bytes:
    ok, data = cv2.imencode(".png", photo(width, height))
    assert ok
    return data.tobytes()


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header is rewritten to claim width x height."""
    data = bytearray(jpeg(64, 48))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)
