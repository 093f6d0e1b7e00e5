"""The five defect classes, drawn on a part's canonical canvas with their exact pixel mask.

Each function changes ``canvas`` in place and returns the defect's bool mask, always inside the
part as it is after the defect (a filled hole becomes part). A mask may come out empty on a tiny
part; the caller drops those.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from visionline.synthetic.parts import Canvas

DEFECT_CLASSES = ("scratch", "crack", "stain", "missing_hole", "deformation")


def _inside(canvas: Canvas) -> np.ndarray:
    return canvas.silhouette >= 128


def _point_inside(canvas: Canvas, rng: np.random.Generator, margin: float = 0.15) -> np.ndarray:
    """A random point well inside the part (falls back to any part pixel)."""
    inside = cv2.erode(
        _inside(canvas).astype(np.uint8),
        np.ones((3, 3), np.uint8),
        iterations=max(1, int(canvas.radius * margin)),
    )
    ys, xs = np.nonzero(inside) if inside.any() else np.nonzero(_inside(canvas))
    k = rng.integers(len(xs))
    return np.array([xs[k], ys[k]], np.float64)


def _line_mask(canvas: Canvas, points: np.ndarray, thickness: int) -> np.ndarray:
    mask = np.zeros(canvas.silhouette.shape, np.uint8)
    cv2.polylines(mask, [np.round(points).astype(np.int32)], False, 1, thickness)
    return mask.astype(bool) & _inside(canvas)


def scratch(canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
    """A thin, slightly curved line of exposed bright metal (or a dark gouge)."""
    start = _point_inside(canvas, rng)
    angle, length = rng.uniform(0, np.pi), canvas.radius * rng.uniform(0.5, 1.0)
    bend = rng.uniform(-0.25, 0.25)
    s = np.linspace(0, 1, 12)[:, None]
    direction = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    points = start + s * length * direction + (s * (1 - s)) * bend * length * normal
    mask = _line_mask(canvas, points, max(1, round(canvas.radius / 45)))
    delta = 70 if rng.random() < 0.7 else -60
    canvas.image[mask] = np.clip(canvas.image[mask].astype(np.int16) + delta, 0, 255)
    return mask


def crack(canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
    """A dark, jagged random walk with an occasional branch."""
    start = _point_inside(canvas, rng, margin=0.1)
    heading = rng.uniform(0, 2 * np.pi)
    step = canvas.radius * 0.12
    points = [start]
    for _ in range(int(rng.integers(6, 11))):
        heading += rng.uniform(-0.7, 0.7)
        points.append(points[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
    thickness = max(1, round(canvas.radius / 50))
    mask = _line_mask(canvas, np.array(points), thickness)
    branch_from = points[len(points) // 2]
    branch = [
        branch_from,
        branch_from + 2.5 * step * np.array([np.cos(heading + 1.2), np.sin(heading + 1.2)]),
    ]
    mask |= _line_mask(canvas, np.array(branch), thickness)
    canvas.image[mask] = (canvas.image[mask] * 0.25).astype(np.uint8)
    return mask


def stain(canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
    """Contamination: a soft, irregular blob of oil or rust colour."""
    blob: np.ndarray = np.zeros(canvas.silhouette.shape, np.float32)
    centre = _point_inside(canvas, rng)
    for _ in range(int(rng.integers(2, 5))):
        offset = rng.normal(0, canvas.radius * 0.12, 2)
        axes = canvas.radius * rng.uniform(0.08, 0.22, 2)
        at = tuple(int(v) for v in centre + offset)
        size = tuple(max(1, int(a)) for a in axes)
        cv2.ellipse(blob, at, size, rng.uniform(0, 180), 0, 360, 1.0, -1)
    blob = cv2.GaussianBlur(blob, (0, 0), max(0.8, canvas.radius / 40))
    mask = (blob > 0.3) & _inside(canvas)
    colour = np.array([(25, 45, 60), (20, 60, 120), (40, 40, 40)][rng.integers(3)], np.float32)
    alpha = (np.clip(blob, 0, 1) * 0.75 * mask)[..., None]
    canvas.image[:] = (canvas.image * (1 - alpha) + colour * alpha).astype(np.uint8)
    return mask


def missing_hole(canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
    """A hole that was never drilled: its disk becomes solid part."""
    hole = canvas.holes[rng.integers(len(canvas.holes))]
    disk = np.zeros(canvas.silhouette.shape, np.uint8)
    centre, r = (round(hole.x * 16), round(hole.y * 16)), round((hole.r + 1.5) * 16)
    cv2.circle(disk, centre, r, 255, -1, cv2.LINE_AA, shift=4)
    canvas.silhouette[:] = np.maximum(canvas.silhouette, disk)
    return (disk >= 128) & _inside(canvas)


def deformation(canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
    """A dent at the outline: the edge pushed inwards, with the crease in shadow."""
    ys, xs = np.nonzero(_inside(canvas))
    centre = np.array([xs.mean(), ys.mean()])
    far = (
        np.hypot(xs - centre[0], ys - centre[1])
        > 0.8 * np.hypot(xs - centre[0], ys - centre[1]).max()
    )
    k = rng.choice(np.flatnonzero(far))
    edge = np.array([xs[k], ys[k]], np.float64)
    outward = (edge - centre) / max(1e-6, np.linalg.norm(edge - centre))
    radius = canvas.radius * rng.uniform(0.25, 0.4)
    gy, gx = np.mgrid[0 : canvas.silhouette.shape[0], 0 : canvas.silhouette.shape[1]]
    dist = np.hypot(gx - edge[0], gy - edge[1]) / radius
    weight = (np.clip(1 - dist**2, 0, 1) ** 2).astype(np.float32)
    shift = weight * radius * 0.45  # sample from further out: the edge moves in
    map_x = (gx + shift * outward[0]).astype(np.float32)
    map_y = (gy + shift * outward[1]).astype(np.float32)
    canvas.silhouette[:] = cv2.remap(canvas.silhouette, map_x, map_y, cv2.INTER_LINEAR)
    image = cv2.remap(canvas.image, map_x, map_y, cv2.INTER_LINEAR)
    canvas.image[:] = (image * (1 - 0.45 * weight[..., None])).astype(np.uint8)
    return (weight > 0.15) & _inside(canvas)


APPLY: dict[str, Callable[[Canvas, np.random.Generator], np.ndarray]] = {
    "scratch": scratch,
    "crack": crack,
    "stain": stain,
    "missing_hole": missing_hole,
    "deformation": deformation,
}


def choose_defects(
    rng: np.random.Generator, rate: float, classes: tuple[str, ...] = DEFECT_CLASSES
) -> list[str]:
    """Which defects a part gets: none with probability ``1 - rate``, else one (20 %: two)."""
    if not classes or rng.random() >= rate:
        return []
    first = str(rng.choice(classes))
    # A dent moves pixels, which would shift an earlier defect's mask: it never pairs.
    others = [c for c in classes if c not in (first, "deformation")]
    if first == "deformation" or not others or rng.random() >= 0.2:
        return [first]
    return [first, str(rng.choice(others))]


def apply_defects(
    canvas: Canvas, classes: list[str], rng: np.random.Generator
) -> list[tuple[str, np.ndarray]]:
    return [(cls, APPLY[cls](canvas, rng)) for cls in classes]
