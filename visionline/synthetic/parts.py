"""Part kinds drawn with OpenCV, each physical part's seeded variation, and the belt.

A part is drawn once in a square canonical canvas (texture over the whole canvas, a silhouette
with holes as alpha), defects are applied there, then it is rotated into its pose. Nothing
depends on earlier frames: a part's look is a function of (seed, part id) only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PART_KINDS = ("flange", "plate", "bracket")
RAIL = 0.1  # fraction of the frame height taken by each rail above and below the belt


@dataclass(frozen=True)
class Hole:
    x: float
    y: float
    r: float


@dataclass(frozen=True)
class PartSpec:
    """Everything that varies between physical parts."""

    part_id: int
    kind: str
    size: float  # outer diameter / length in pixels
    angle: float  # degrees
    lane: float  # 0..1 across the usable belt width
    tint: tuple[float, float, float]  # BGR multipliers of the metal grey
    shade: float  # base grey level
    enter_frame: float  # frame index at which its right edge reaches the frame's left edge


@dataclass
class Canvas:
    """A part in a canonical, unrotated square canvas, before and after defects."""

    image: np.ndarray  # BGR uint8, texture everywhere
    silhouette: np.ndarray  # uint8 0..255 alpha: the part minus its holes
    holes: list[Hole]  # bolt holes that a "missing_hole" defect may fill
    radius: float


def canvas_side(size: float) -> int:
    return int(size * 1.08) + 6


def draw_part(spec: PartSpec, rng: np.random.Generator) -> Canvas:
    side = canvas_side(spec.size)
    silhouette = np.zeros((side, side), np.uint8)
    holes = SHAPES[spec.kind](silhouette, spec.size / 2, rng)
    image = metal_texture(side, spec, rng)
    return Canvas(image, silhouette, holes, spec.size / 2)


def _hole(silhouette: np.ndarray, hole: Hole) -> None:
    centre = (round(hole.x * 16), round(hole.y * 16))
    cv2.circle(silhouette, centre, round(hole.r * 16), 0, -1, cv2.LINE_AA, shift=4)


def _flange(silhouette: np.ndarray, radius: float, rng: np.random.Generator) -> list[Hole]:
    c = silhouette.shape[0] / 2
    cv2.circle(
        silhouette,
        (round(c * 16), round(c * 16)),
        round(radius * 16),
        255,
        -1,
        cv2.LINE_AA,
        shift=4,
    )
    _hole(silhouette, Hole(c, c, radius * rng.uniform(0.28, 0.4)))
    count, phase = int(rng.integers(4, 9)), rng.uniform(0, 2 * np.pi)
    angles = phase + 2 * np.pi * np.arange(count) / count
    r_bolt = radius * rng.uniform(0.07, 0.1)
    bolts = [
        Hole(c + 0.7 * radius * np.cos(a), c + 0.7 * radius * np.sin(a), r_bolt) for a in angles
    ]
    for hole in bolts:
        _hole(silhouette, hole)
    return bolts


def _plate(silhouette: np.ndarray, radius: float, rng: np.random.Generator) -> list[Hole]:
    c = silhouette.shape[0] / 2
    half_w, half_h = radius, radius * rng.uniform(0.5, 0.75)
    corner = radius * 0.12
    x0, y0, x1, y1 = c - half_w, c - half_h, c + half_w, c + half_h
    inner = np.array(
        [
            [x0 + corner, y0],
            [x1 - corner, y0],
            [x1, y0 + corner],
            [x1, y1 - corner],
            [x1 - corner, y1],
            [x0 + corner, y1],
            [x0, y1 - corner],
            [x0, y0 + corner],
        ]
    )
    cv2.fillPoly(silhouette, [np.round(inner * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    inset, r = 0.2 * radius, radius * rng.uniform(0.07, 0.1)
    holes = [Hole(x, y, r) for x in (x0 + inset, x1 - inset) for y in (y0 + inset, y1 - inset)]
    if rng.random() < 0.5:  # some plates have a centre hole too
        holes.append(Hole(c, c, r * 1.6))
    for hole in holes:
        _hole(silhouette, hole)
    return holes


def _bracket(silhouette: np.ndarray, radius: float, rng: np.random.Generator) -> list[Hole]:
    c = silhouette.shape[0] / 2
    arm = radius * rng.uniform(0.45, 0.6)
    x0, y0, x1, y1 = c - radius, c - radius, c + radius, c + radius
    outline = np.array(
        [[x0, y0], [x0 + arm, y0], [x0 + arm, y1 - arm], [x1, y1 - arm], [x1, y1], [x0, y1]]
    )
    cv2.fillPoly(silhouette, [np.round(outline * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    r, mid = radius * rng.uniform(0.08, 0.11), arm / 2
    holes = [
        Hole(x0 + mid, y0 + 0.4 * radius, r),
        Hole(x0 + mid, y0 + 1.0 * radius, r),
        Hole(x1 - 0.4 * radius, y1 - mid, r),
        Hole(x1 - 1.0 * radius, y1 - mid, r),
    ]
    for hole in holes:
        _hole(silhouette, hole)
    return holes


SHAPES = {"flange": _flange, "plate": _plate, "bracket": _bracket}


def metal_texture(side: int, spec: PartSpec, rng: np.random.Generator) -> np.ndarray:
    """Brushed metal: streaks along a random direction plus a soft light falloff."""
    noise = rng.standard_normal((side, side)).astype(np.float32)
    streak = max(3, side // 5)
    brushed = cv2.blur(noise, (streak, 1)) * 14 + cv2.GaussianBlur(noise, (0, 0), 2) * 6
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    light = 1.15 - 0.35 * (xx * 0.6 + yy * 0.4)  # light from the top left
    grey = (spec.shade + brushed) * light
    image = grey[..., None] * np.array(spec.tint, np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def finish_edges(canvas: Canvas) -> None:
    """Darken a thin rim along every edge (outer and holes), after defects changed them."""
    hard = (canvas.silhouette >= 128).astype(np.uint8)
    rim_px = max(1, round(canvas.radius / 40))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rim_px + 1, 2 * rim_px + 1))
    rim = (hard - cv2.erode(hard, kernel)).astype(bool)
    canvas.image[rim] = (canvas.image[rim] * 0.55).astype(np.uint8)


@dataclass
class PosedPart:
    """A finished part rotated into its pose and cropped; masks share its local frame."""

    image: np.ndarray  # BGR uint8
    alpha: np.ndarray  # float32 0..1
    mask: np.ndarray  # bool
    defects: list[tuple[str, np.ndarray]]  # (class, bool mask)


def pose(
    canvas: Canvas, angle: float, defects: list[tuple[str, np.ndarray]], outline: np.ndarray
) -> PosedPart:
    """Rotate the canvas by ``angle`` degrees into a larger canvas and crop to ``outline``.

    ``outline`` is the silhouette before defects, so the part with and without defects gets
    the same crop and lands on the same pixels.
    """
    side = canvas.image.shape[0]
    out = int(np.ceil(side * 1.42))
    matrix = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
    matrix[:, 2] += (out - side) / 2

    def warp(a: np.ndarray, interp: int) -> np.ndarray:
        return cv2.warpAffine(a, matrix, (out, out), flags=interp, borderValue=0)

    alpha = warp(canvas.silhouette, cv2.INTER_LINEAR)
    ys, xs = np.nonzero(warp(outline, cv2.INTER_LINEAR) | alpha)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    mask = alpha[y0:y1, x0:x1] >= 128
    posed = [
        (cls, warp(m.astype(np.uint8), cv2.INTER_NEAREST)[y0:y1, x0:x1].astype(bool) & mask)
        for cls, m in defects
    ]
    image = warp(canvas.image, cv2.INTER_LINEAR)[y0:y1, x0:x1]
    return PosedPart(image, alpha[y0:y1, x0:x1].astype(np.float32) / 255, mask, posed)


def belt_tile(resolution: tuple[int, int], seed: int) -> np.ndarray:
    """A belt texture as wide as the frame; shifted per frame with wrap-around."""
    width, height = resolution
    rng = np.random.default_rng([seed, 0xBE17])
    noise = rng.standard_normal((height, width)).astype(np.float32)
    rubber = 58 + cv2.GaussianBlur(noise, (0, 0), 1.2) * 9 + cv2.blur(noise, (1, 9)) * 6
    step = max(12, width // 16)
    rubber[:, ::step] -= 14  # cross seams, so belt motion is visible
    tile = np.repeat(rubber[..., None], 3, axis=2) * np.array([1.0, 1.02, 1.05], np.float32)
    return np.clip(tile, 0, 255).astype(np.uint8)


def draw_rails(image: np.ndarray) -> None:
    """Static side rails above and below the belt (they do not move with it)."""
    height, width = image.shape[:2]
    rail = max(2, round(height * RAIL))
    ramp = np.linspace(150, 95, rail, dtype=np.float32)[:, None, None]
    rail_img = np.broadcast_to(ramp * np.array([1.0, 1.0, 0.96], np.float32), (rail, width, 3))
    image[:rail] = rail_img.astype(np.uint8)
    image[-rail:] = rail_img[::-1].astype(np.uint8)
    image[rail - 1 : rail + 1] //= 2
    image[-rail - 1 : -rail + 1] //= 2
