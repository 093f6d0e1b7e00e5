"""Seeded training and evaluation samples rendered by the line generator.

A *condition* is a set of constant nuisance strengths. Training mixes every factor at
random strengths up to ``max_strength`` (a line sees all of them over time); evaluation holds
out other seeds and scores each factor alone at a fixed strength.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from visionline.inspection.vision import CROP, DEFECT_CLASSES, Crop, frame_tensor
from visionline.synthetic.generator import LineGenerator
from visionline.synthetic.schedule import NUISANCES
from visionline.synthetic.truth import FrameTruth, PartTruth

MIN_VISIBLE = 0.35  # parts mostly outside the frame are not crop samples


@dataclass
class FrameSample:
    image: np.ndarray  # letterboxed uint8 RGB [FRAME_H, FRAME_W, 3]
    boxes: np.ndarray  # part boxes in letterbox pixels, [K, 4]
    condition: str


@dataclass
class CropSample:
    image: np.ndarray  # uint8 RGB [CROP, CROP, 3]
    classes: list[int]  # per defect visible in the crop
    boxes: np.ndarray  # [K, 4] in crop pixels
    mask: np.ndarray  # bool [CROP, CROP]: any defect pixel
    condition: str
    part_id: int | str

    @property
    def defective(self) -> bool:
        return bool(self.classes)


@dataclass
class Samples:
    frames: list[FrameSample] = field(default_factory=list)
    crops: list[CropSample] = field(default_factory=list)


def conditions(max_strength: float, count: int, seed: int) -> Iterator[tuple[str, dict]]:
    """``count`` training conditions: clean, each factor alone, and random mixes."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        if k == 0:
            yield "clean", {}
        elif k <= len(NUISANCES):
            name = NUISANCES[k - 1]
            yield name, {name: float(rng.uniform(0.1, max_strength))}
        else:
            chosen = rng.choice(NUISANCES, size=3, replace=False)
            yield "mixed", {str(n): float(rng.uniform(0.1, max_strength)) for n in chosen}


def eval_conditions(strength: float) -> list[tuple[str, dict]]:
    return [("clean", {})] + [(name, {name: strength}) for name in NUISANCES]


def render(
    seed: int,
    condition_list: list[tuple[str, dict]],
    frames_per_condition: int,
    defect_rate: float,
    jitter: float = 0.0,
    clean_parts: bool = False,
    every: int = 9,
) -> Samples:
    """Frames (every ``every``-th, so most parts appear once) and part crops."""
    out = Samples()
    rng = np.random.default_rng(seed)
    for k, (name, nuisances) in enumerate(condition_list):
        generator = LineGenerator(
            seed=seed * 1000 + k, defect_rate=defect_rate, nuisances=nuisances, camera=f"cam-{k}"
        )
        for n in range(frames_per_condition):
            bgr, truth = generator.frame(20 + n * every, clean=clean_parts)
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            out.frames.append(frame_sample(rgb, truth, name))
            for part in truth.parts:
                if part.visible_fraction >= MIN_VISIBLE:
                    out.crops.append(crop_sample(rgb, truth, part, name, rng, jitter))
    return out


def frame_sample(rgb: np.ndarray, truth: FrameTruth, condition: str) -> FrameSample:
    tensor, box = frame_tensor(rgb)
    boxes = np.array([p.box for p in truth.parts], np.float64).reshape(-1, 4) * box.scale
    return FrameSample(tensor, boxes, condition)


def crop_sample(
    rgb: np.ndarray,
    truth: FrameTruth,
    part: PartTruth,
    condition: str,
    rng: np.random.Generator,
    jitter: float,
) -> CropSample:
    """The part's crop, its defect boxes (tight around each mask in the crop) and mask."""
    defects = [(d.defect_class, d.mask.paste(truth.resolution)) for d in part.defects]
    return crop_around(rgb, part.box, defects, condition, part.part_id, rng, jitter)


def crop_around(
    rgb: np.ndarray,
    box: tuple[float, float, float, float],
    defects: Sequence[tuple[str, np.ndarray]],
    condition: str,
    part_id: int | str,
    rng: np.random.Generator,
    jitter: float,
) -> CropSample:
    """A part's crop from its frame box and its defects' frame-sized masks (generator truth,
    or labels of real frames: ``visionline.retrain.traffic``)."""
    x0, y0, x1, y1 = box
    if jitter:  # detector boxes are not exact: train on boxes moved and scaled a little
        w, h = x1 - x0, y1 - y0
        dx, dy = rng.uniform(-jitter, jitter, 2) * (w, h)
        grow = rng.uniform(1 - jitter, 1 + jitter, 2) * (w, h) / 2
        cx, cy = (x0 + x1) / 2 + dx, (y0 + y1) / 2 + dy
        x0, y0, x1, y1 = cx - grow[0], cy - grow[1], cx + grow[0], cy + grow[1]
    crop = Crop.around((x0, y0, x1, y1))
    classes, boxes = [], []
    mask = np.zeros((CROP, CROP), bool)
    for defect_class, frame_mask in defects:
        cut = crop.cut(frame_mask.astype(np.uint8) * 255) >= 64
        if cut.sum() < 2:
            continue
        ys, xs = np.nonzero(cut)
        classes.append(DEFECT_CLASSES.index(defect_class))
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        mask |= cut
    return CropSample(
        crop.cut(rgb), classes, np.array(boxes, np.float64).reshape(-1, 4), mask, condition, part_id
    )
