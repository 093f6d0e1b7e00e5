"""Nuisance factors, each a function of the image and a ``strength`` in [0, 1] (0 = identity).

Lighting factors are gains (``lighting`` applies them all at once); camera factors work on
float32 BGR images (0..255). Per-camera parameters that
give a factor its direction (warm or cool, where the shadow falls) come from ``CameraProfile``,
seeded per camera, so a strength alone says how strong and the camera says which way.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CameraProfile:
    warm: bool  # colour temperature drifts warm (else cool)
    gradient_angle: float  # radians; direction in which a lighting gradient darkens
    shadow_centre: tuple[float, float]  # fractions of width and height
    shadow_axes: tuple[float, float]
    shadow_angle: float  # degrees
    flicker_hz: float
    flicker_phase: float
    wb_gains: tuple[float, float, float]  # BGR deviation direction, each in [-1, 1]
    corner_shift: tuple[tuple[float, float], ...]  # perspective: 4 corners, in [-1, 1]

    @classmethod
    def seeded(cls, rng: np.random.Generator) -> CameraProfile:
        return cls(
            warm=bool(rng.random() < 0.5),
            gradient_angle=float(rng.uniform(0, 2 * np.pi)),
            shadow_centre=(float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.2, 0.8))),
            shadow_axes=(float(rng.uniform(0.15, 0.4)), float(rng.uniform(0.1, 0.3))),
            shadow_angle=float(rng.uniform(0, 180)),
            flicker_hz=float(rng.uniform(0.7, 3.0)),
            flicker_phase=float(rng.uniform(0, 2 * np.pi)),
            wb_gains=tuple(float(v) for v in rng.uniform(-1, 1, 3)),  # type: ignore[arg-type]
            corner_shift=tuple((float(x), float(y)) for x, y in rng.uniform(-1, 1, (4, 2))),
        )


# Lighting: each factor is a gain, so that all of them cost one multiplication per pixel ------


def brightness_gain(strength: float) -> float:
    """Dimmer light (ageing lamps, a dirty cover): gain 1 down to 0.3."""
    return 1 - 0.7 * max(0.0, strength)


def colour_gain(strength: float, warm: bool) -> np.ndarray:
    """Warmer (more red, less blue) or cooler light; BGR gains."""
    shift = 0.35 * max(0.0, strength) * (1 if warm else -1)
    return np.array([1 - shift, 1.0, 1 + shift], np.float32)


def flicker_gain(strength: float, t: float, hz: float, phase: float) -> float:
    """Mains lamps beating with the exposure: brightness swings by up to 40 % over time."""
    wave = 0.5 + 0.5 * float(np.sin(2 * np.pi * hz * t + phase))  # a float keeps float32
    return 1 - 0.4 * max(0.0, strength) * wave


def white_balance_gain(strength: float, gains: tuple[float, ...]) -> np.ndarray:
    """A camera's white balance off by up to 30 % per channel, in its own direction."""
    return 1 + 0.3 * max(0.0, strength) * np.array(gains, np.float32)


@functools.lru_cache(maxsize=8)
def _unit_ramp(width: int, height: int, angle: float) -> np.ndarray:
    xs = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    ys = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    return np.clip(xs * float(np.cos(angle)) + ys * float(np.sin(angle)) + 0.5, 0, 1)


def gradient_gain(size: tuple[int, int], strength: float, angle: float) -> np.ndarray:
    """Light falling off linearly across the frame, by up to 70 % at the far side."""
    return 1 - 0.7 * strength * _unit_ramp(size[0], size[1], angle)


@functools.lru_cache(maxsize=8)
def _unit_shadow(width: int, height: int, profile: CameraProfile) -> np.ndarray:
    small_w, small_h = max(8, width // 8), max(8, height // 8)  # soft: draw and blur small
    shape: np.ndarray = np.zeros((small_h, small_w), np.float32)
    cx, cy = profile.shadow_centre
    ax, ay = profile.shadow_axes
    cv2.ellipse(
        shape,
        (int(cx * small_w), int(cy * small_h)),
        (max(1, int(ax * small_w)), max(1, int(ay * small_h))),
        profile.shadow_angle,
        0,
        360,
        1.0,
        -1,
    )
    shape = cv2.GaussianBlur(shape, (0, 0), max(1.0, 0.03 * small_w))
    return cv2.resize(shape, (width, height), interpolation=cv2.INTER_LINEAR)


def shadow_gain(size: tuple[int, int], strength: float, profile: CameraProfile) -> np.ndarray:
    """A soft-edged shadow of something between the lamp and the belt, up to 65 % darker."""
    return 1 - 0.65 * strength * _unit_shadow(size[0], size[1], profile)


def lighting(
    image: np.ndarray, s: Mapping[str, float], profile: CameraProfile, t: float
) -> np.ndarray:
    """All lighting factors and the white balance at strengths ``s``, as one gain."""
    scalar = brightness_gain(s["brightness"])
    scalar *= flicker_gain(s["flicker"], t, profile.flicker_hz, profile.flicker_phase)
    channels = colour_gain(s["colour_temperature"], profile.warm)
    channels = channels * white_balance_gain(s["white_balance"], profile.wb_gains) * scalar
    size = (image.shape[1], image.shape[0])
    spatial = None
    if s["gradient"] > 0:
        spatial = gradient_gain(size, s["gradient"], profile.gradient_angle)
    if s["shadow"] > 0:
        shade = shadow_gain(size, s["shadow"], profile)
        spatial = shade if spatial is None else spatial * shade
    if spatial is not None:
        out = image * channels
        out *= spatial[..., None]
        return out
    return image if np.all(channels == 1) else image * channels


def veiling_glare(image: np.ndarray, strength: float) -> np.ndarray:
    """Stray light from a new lamp or a skylight: a haze that lifts the blacks and washes out
    contrast (to 40 % at full strength). Nothing clips: the defects are still there, fainter
    and on a brighter ground than the models were trained on."""
    if strength <= 0:
        return image
    k = 0.6 * min(1.0, strength)
    return image * (1 - k) + k * 235.0


# Camera ----------------------------------------------------------------------------------------


def resolution(image: np.ndarray, strength: float) -> np.ndarray:
    """A lower-resolution sensor: down to a quarter of the size and back up."""
    if strength <= 0:
        return image
    height, width = image.shape[:2]
    scale = 1 - 0.75 * strength
    small = cv2.resize(
        image,
        (max(1, round(width * scale)), max(1, round(height * scale))),
        interpolation=cv2.INTER_AREA,
    )
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def lens_blur(image: np.ndarray, strength: float) -> np.ndarray:
    """Defocus: Gaussian sigma up to 4 px at 1280 wide, scaled with the width."""
    if strength <= 0:
        return image
    sigma = 4 * strength * image.shape[1] / 1280
    return cv2.GaussianBlur(image, (0, 0), max(0.3, sigma))


NOISE_MARGIN = 64


def noise_field(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Unit Gaussian noise a little larger than a frame; frames take shifted windows of it."""
    height, width, channels = shape
    rng = np.random.default_rng([seed, 0x5E4])
    size = (height + NOISE_MARGIN, width + NOISE_MARGIN, channels)
    return rng.standard_normal(size, np.float32)


def sensor_noise(
    image: np.ndarray, strength: float, field: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Read noise plus shot noise (grows with the signal); up to sigma 18 at mid grey.

    A random window of a precomputed ``field`` (from ``noise_field``), with a random sign,
    costs a tenth of drawing fresh normals for every pixel of every frame.
    """
    if strength <= 0:
        return image
    height, width = image.shape[:2]
    dy, dx = rng.integers(0, NOISE_MARGIN, 2)
    noise = field[dy : dy + height, dx : dx + width] * (1 if rng.random() < 0.5 else -1)
    sigma = strength * (6 + 12 * np.sqrt(np.clip(image, 0, 255) * (1 / 128)))
    return image + noise * sigma


def jpeg_quality(strength: float, base: int = 90) -> int:
    """The encoder quality: ``base`` at strength 0, 8 at strength 1."""
    return max(1, round(base - (base - 8) * strength))


# Scene (uint8, before lighting) ------------------------------------------------------------


def motion_blur(image: np.ndarray, strength: float, travel_px: float) -> np.ndarray:
    """Belt motion during exposure: a box blur along x over up to a quarter of a frame's travel."""
    length = round(strength * 0.25 * travel_px)
    if strength <= 0 or length < 2:
        return image
    return cv2.blur(image, (length, 1))


def perspective(size: tuple[int, int], strength: float, profile: CameraProfile) -> np.ndarray:
    """A small camera tilt: the frame corners moved by up to 6 % of the size."""
    width, height = size
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    frame = np.array([width, height], np.float32)
    shift = np.array(profile.corner_shift, np.float32) * frame * 0.06 * strength
    return cv2.getPerspectiveTransform(corners, corners + shift)


def warp(image: np.ndarray, matrix: np.ndarray, nearest: bool = False) -> np.ndarray:
    height, width = image.shape[:2]
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpPerspective(
        image, matrix, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE
    )


def foreign_object(rng: np.random.Generator, size: float) -> tuple[np.ndarray, tuple[int, ...]]:
    """A glove, rag or cable offcut: an irregular polygon around (0, 0) and its BGR colour."""
    count = int(rng.integers(5, 9))
    angles = np.sort(rng.uniform(0, 2 * np.pi, count))
    radii = size * rng.uniform(0.15, 0.35, count)
    points = np.stack([np.cos(angles) * radii * 1.6, np.sin(angles) * radii], axis=1)
    colours = [(160, 90, 30), (40, 160, 220), (30, 30, 200), (200, 200, 200), (20, 20, 20)]
    return points, colours[rng.integers(len(colours))]
