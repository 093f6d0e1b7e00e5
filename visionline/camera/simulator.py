"""Simulated cameras: real photos with jitter (``sim:photos``) and a moving scene (``sim:scene``).

Every frame is a pure function of (seed, frame index), so tests and demos are reproducible.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import skimage.data

from visionline.camera.frames import EncodedFrame, encode_jpeg, tag_jpeg

log = logging.getLogger(__name__)

Resolution = tuple[int, int]  # (width, height)
DEFAULT_RESOLUTION: Resolution = (1280, 720)
# Bundled with scikit-image (no download); "camera" is grey and gets converted.
PHOTO_NAMES = ("chelsea", "coffee", "astronaut", "rocket", "camera", "hubble_deep_field", "retina")


def parse_resolution(text: str) -> Resolution:
    """``"1280x720"`` -> ``(1280, 720)``."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"resolution must look like 1280x720, got {text!r}") from None
    if not (16 <= width <= 7680 and 16 <= height <= 4320):
        raise ValueError(f"resolution {text!r} out of range 16x16..7680x4320")
    return width, height


def letterbox(image: np.ndarray, resolution: Resolution) -> np.ndarray:
    """Fit ``image`` inside ``resolution`` keeping its aspect ratio, black bars around it."""
    width, height = resolution
    scale = min(width / image.shape[1], height / image.shape[0])
    new_w, new_h = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interp)
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas


def _load_photo(name: str) -> np.ndarray | None:
    try:
        image = getattr(skimage.data, name)()
    except Exception as exc:  # noqa: BLE001 - a missing sample only shrinks the set
        log.debug("skipping skimage photo %s: %s", name, exc)
        return None
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2BGR)


@functools.lru_cache(maxsize=4)
def photos(resolution: Resolution = DEFAULT_RESOLUTION) -> tuple[np.ndarray, ...]:
    """The bundled photos as BGR frames at ``resolution``, shared by every simulated camera."""
    loaded = [p for p in map(_load_photo, PHOTO_NAMES) if p is not None]
    if not loaded:
        raise RuntimeError("no scikit-image sample photo could be loaded")
    frames = tuple(letterbox(p, resolution) for p in loaded)
    for frame in frames:
        frame.flags.writeable = False  # shared between threads: nobody may draw on them
    return frames


class PhotoSimulator:
    """Cycles the bundled photos with a small seeded shift and brightness change per frame."""

    def __init__(
        self, resolution: Resolution = DEFAULT_RESOLUTION, seed: int = 0, max_shift: int = 8
    ) -> None:
        self.resolution = resolution
        self.seed = seed
        self.max_shift = max_shift

    def frame(self, index: int) -> np.ndarray:
        base = photos(self.resolution)
        image = base[(self.seed + index) % len(base)]
        rng = np.random.default_rng([self.seed, index])
        dx, dy = rng.integers(-self.max_shift, self.max_shift + 1, size=2)
        gain, offset = rng.uniform(0.9, 1.1), rng.uniform(-12, 12)
        shift = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
        moved = cv2.warpAffine(image, shift, self.resolution, borderMode=cv2.BORDER_REFLECT)
        return cv2.convertScaleAbs(moved, alpha=gain, beta=offset)

    def __iter__(self) -> Iterator[np.ndarray]:
        index = 0
        while True:
            yield self.frame(index)
            index += 1

    def encoded(self, quality: int = 80, pool_size: int | None = None) -> PooledSource:
        """The cheap way to stream it: a pre-encoded pool of varied frames, cycled."""
        size = pool_size or 2 * len(photos(self.resolution))
        return PooledSource([encode_jpeg(self.frame(i), quality) for i in range(size)], self.seed)

    def close(self) -> None:
        pass


class PooledSource:
    """Cycles pre-encoded JPEGs, tagging each with a comment so every payload is unique.

    Encoding once up front makes a simulated photo camera cost a memory copy per frame
    instead of a warp plus a JPEG encode; the comment segment keeps content-hash dedup
    downstream from seeing repeats while the pixels cycle.
    """

    def __init__(self, pool: list[bytes], seed: int = 0) -> None:
        if not pool:
            raise ValueError("empty frame pool")
        self.pool = pool
        self.seed = seed

    def __iter__(self) -> Iterator[EncodedFrame]:
        index = 0
        while True:
            data = self.pool[index % len(self.pool)]
            yield EncodedFrame(tag_jpeg(data, f"visionline-sim {self.seed} {index}"))
            index += 1

    def close(self) -> None:
        pass


def _rgb(values: np.ndarray) -> tuple[int, int, int]:
    red, green, blue = (int(v) for v in values)
    return red, green, blue


@dataclass(frozen=True)
class _Shape:
    kind: str  # "circle" or "rect"
    size: int
    color: tuple[int, int, int]
    start: tuple[float, float]
    velocity: tuple[float, float]  # pixels per frame


def _bounce(position: float, limit: float) -> float:
    """Position after bouncing between 0 and ``limit``: a triangle wave, no state needed."""
    if limit <= 0:
        return 0.0
    phase = position % (2 * limit)
    return phase if phase <= limit else 2 * limit - phase


class SceneSimulator:
    """Shapes bouncing over a textured background, with a frame counter drawn in the corner."""

    def __init__(
        self, resolution: Resolution = DEFAULT_RESOLUTION, seed: int = 0, shapes: int = 6
    ) -> None:
        self.resolution = resolution
        self.seed = seed
        rng = np.random.default_rng(seed)
        self._background = self._make_background(rng)
        self._shapes = [self._make_shape(rng) for _ in range(shapes)]

    def _make_background(self, rng: np.random.Generator) -> np.ndarray:
        width, height = self.resolution
        top, bottom = rng.integers(40, 200, size=(2, 3))
        ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
        column = (top + (bottom - top) * ramp).astype(np.uint8)
        background = np.ascontiguousarray(np.broadcast_to(column, (height, width, 3)))
        step = max(8, height // 12)
        background[::step, :] //= 2  # a grid, so motion and blur are visible
        background[:, ::step] //= 2
        return background

    def _make_shape(self, rng: np.random.Generator) -> _Shape:
        width, height = self.resolution
        size = int(rng.integers(height // 16, height // 5 + 1))
        speed = height / 60
        return _Shape(
            kind=str(rng.choice(["circle", "rect"])),
            size=size,
            color=_rgb(rng.integers(0, 256, size=3)),
            start=(float(rng.uniform(0, width)), float(rng.uniform(0, height))),
            velocity=(float(rng.uniform(-speed, speed)), float(rng.uniform(-speed, speed))),
        )

    def frame(self, index: int) -> np.ndarray:
        width, height = self.resolution
        image = self._background.copy()
        for shape in self._shapes:
            x = int(_bounce(shape.start[0] + shape.velocity[0] * index, width - shape.size))
            y = int(_bounce(shape.start[1] + shape.velocity[1] * index, height - shape.size))
            if shape.kind == "circle":
                half = shape.size // 2
                cv2.circle(image, (x + half, y + half), half, shape.color, -1, cv2.LINE_AA)
            else:
                corner = (x + shape.size, y + shape.size)
                cv2.rectangle(image, (x, y), corner, shape.color, -1)
        label = f"sim:scene seed={self.seed} frame={index}"
        scale = height / 720
        origin = (int(10 * scale), int(30 * scale))
        cv2.putText(image, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 2)
        return image

    def __iter__(self) -> Iterator[np.ndarray]:
        index = 0
        while True:
            yield self.frame(index)
            index += 1

    def close(self) -> None:
        pass
