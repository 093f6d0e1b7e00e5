"""The inspection models' contract: how frames and crops are prepared, and how outputs decode.

Three models, each served by Triton (``triton_models/<name>/<version>/``) and run in-process by
``visionline eval``, all on ImageNet-pretrained EfficientNet-Lite0 features:

- ``part_detector``: a letterboxed frame -> a CenterNet heatmap of parts, their size and offset.
- ``part_anomaly``: a square part crop -> a PatchCore anomaly map and image score, both
  calibrated so that 0.5 is the decision threshold found on held-out good and bad parts.
- ``defect_detector``: a part crop -> CenterNet heatmaps of the five defect classes, their
  size, and a defect mask.

Everything here is numpy and pure, shared by the inspect worker, training and evaluation, so
the three can never disagree on a pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from visionline.inspection.tracking import DefectDetection, FloatBox, PartDetection
from visionline.synthetic.defects import DEFECT_CLASSES

PART_DETECTOR, PART_ANOMALY, DEFECT_DETECTOR = "part_detector", "part_anomaly", "defect_detector"
INSPECTION_MODELS = (PART_DETECTOR, PART_ANOMALY, DEFECT_DETECTOR)
# Both crop models on one backbone pass, derived from a version of each
# (visionline/training/crop_models.py); SOURCE_VERSIONS: that pair, per crop.
PART_CROPS, SOURCE_VERSIONS = "part_crops", "source_versions"
ANOMALY_CLASS = "anomaly"  # a region the anomaly map found that no defect box explains

FRAME_W, FRAME_H = 320, 192  # part_detector input: the frame letterboxed into this
CROP = 160  # part crops are square, CROP x CROP
# 448x256 and 224 until 2026-12-06: half the model time per frame; per part through the stack
# as good, the anomaly model weaker alone (docs/inspection.md#real-time-on-two-cores).
STRIDE = 8  # both heads read stride-8 features
CROP_MARGIN = 1.15  # crop side = longest box side x this: some belt around every part
# A crop window of more pixels than this many frames (a box across a long thin frame: 75,000
# pixels square, 17 GB, for the whole of a 65535 x 30 frame) is not built; only its part inside
# the frame is resized. Boxes in frames of ordinary shape (up to 2.35 frames for 16:9) are cut
# as before.
MAX_WINDOW_FRAMES = 4
# Output names (the models' ONNX graphs and Triton configs use the same).
FRAME_INPUT, CROP_INPUT = "frame", "crop"
PART_OUTPUTS = ("part_heatmap", "part_size", "part_offset")
ANOMALY_OUTPUTS = ("anomaly_map", "anomaly_score")
DEFECT_OUTPUTS = ("defect_heatmap", "defect_size", "defect_mask")


@dataclass(frozen=True)
class Letterbox:
    """Frame -> model input: uniform scale, then padding right and bottom."""

    scale: float
    width: int  # of the frame
    height: int

    @classmethod
    def of(cls, width: int, height: int) -> Letterbox:
        return cls(min(FRAME_W / width, FRAME_H / height), width, height)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the scaled frame inside the input: at least a pixel each way, so
        a 1 x 4000 frame becomes a thin line to decide on, never an empty resize."""
        width = min(FRAME_W, max(1, round(self.width * self.scale)))
        return width, min(FRAME_H, max(1, round(self.height * self.scale)))

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        out = boxes / self.scale
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.height)
        return out


def scaled_frame(image: np.ndarray) -> np.ndarray:
    """The frame at the part detector's scale, without the padding (any channel order: each
    channel is resized alone, so resizing BGR then swapping gives the RGB resize exactly)."""
    height, width = image.shape[:2]
    return cv2.resize(image, Letterbox.of(width, height).size, interpolation=cv2.INTER_AREA)


def frame_tensor(rgb: np.ndarray, scaled: np.ndarray | None = None) -> tuple[np.ndarray, Letterbox]:
    """An RGB frame as the part detector's uint8 [FRAME_H, FRAME_W, 3] input; ``scaled``:
    ``scaled_frame(rgb)`` when the caller has it already (the inspect worker measures the
    frame's quality on it: one resize of the full frame, not two)."""
    height, width = rgb.shape[:2]
    box = Letterbox.of(width, height)
    w, h = box.size
    if scaled is None:
        scaled = scaled_frame(rgb)
    if scaled.shape[:2] != (h, w):
        raise ValueError(f"scaled frame {scaled.shape[:2]}, the letterbox needs {(h, w)}")
    out = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
    out[:h, :w] = scaled
    return out, box


@dataclass(frozen=True)
class Crop:
    """A square window of the frame, maybe partly outside it, resized to CROP x CROP."""

    x0: float
    y0: float
    side: float

    @classmethod
    def around(cls, box: Sequence[float], margin: float = CROP_MARGIN) -> Crop:
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0, 8.0) * margin
        return cls((x0 + x1 - side) / 2, (y0 + y1 - side) / 2, side)

    @property
    def scale(self) -> float:  # crop pixels per frame pixel
        return CROP / self.side

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """Crop-pixel coordinates (x, y pairs along the last axis) to frame pixels."""
        flat = points.reshape(-1, 2) / self.scale + (self.x0, self.y0)
        return flat.reshape(points.shape)

    def cut(self, rgb: np.ndarray) -> np.ndarray:
        """The crop as uint8 [CROP, CROP, (3)]; outside the frame is black, like the letterbox."""
        if self.scale < 1:  # shrinking: average, so thin scratches are not aliased away
            return _cut_by_resize(rgb, self)
        matrix = np.array(
            [[self.scale, 0, -self.x0 * self.scale], [0, self.scale, -self.y0 * self.scale]]
        )
        return cv2.warpAffine(
            rgb, matrix, (CROP, CROP), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0)
        )


def _cut_by_resize(rgb: np.ndarray, crop: Crop) -> np.ndarray:
    height, width = rgb.shape[:2]
    x0, y0 = round(crop.x0), round(crop.y0)
    side = max(1, round(crop.side))
    if side * side > MAX_WINDOW_FRAMES * width * height:
        return _cut_inside(rgb, x0, y0, side)
    window = np.zeros((side, side, *rgb.shape[2:]), rgb.dtype)
    fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(width, x0 + side), min(height, y0 + side)
    if fx1 > fx0 and fy1 > fy0:
        window[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0] = rgb[fy0:fy1, fx0:fx1]
    return cv2.resize(window, (CROP, CROP), interpolation=cv2.INTER_AREA)


def _cut_inside(rgb: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """The crop of the ``side`` x ``side`` window at (x0, y0) without building the window: its
    part inside the frame, resized on its own and placed on black."""
    height, width = rgb.shape[:2]
    out = np.zeros((CROP, CROP, *rgb.shape[2:]), rgb.dtype)
    fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(width, x0 + side), min(height, y0 + side)
    if fx1 <= fx0 or fy1 <= fy0:
        return out
    scale = CROP / side
    cx0, cy0 = min(CROP - 1, round((fx0 - x0) * scale)), min(CROP - 1, round((fy0 - y0) * scale))
    cx1 = min(CROP, max(cx0 + 1, round((fx1 - x0) * scale)))
    cy1 = min(CROP, max(cy0 + 1, round((fy1 - y0) * scale)))
    region = rgb[fy0:fy1, fx0:fx1]
    out[cy0:cy1, cx0:cx1] = cv2.resize(region, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_AREA)
    return out


def crop_tensors(
    rgb: np.ndarray, boxes: Sequence[Sequence[float]]
) -> tuple[np.ndarray, list[Crop]]:
    """Part crops as uint8 [N, CROP, CROP, 3] and where each came from."""
    crops = [Crop.around(b) for b in boxes]
    if not crops:
        return np.zeros((0, CROP, CROP, 3), np.uint8), []
    return np.stack([c.cut(rgb) for c in crops]), crops


# Decoding -------------------------------------------------------------------------------------


def peaks(heatmap: np.ndarray, min_score: float, top_k: int) -> list[tuple[int, int, int, float]]:
    """CenterNet peaks of [C, H, W] scores: (class, y, x, score), best first (3x3 local max)."""
    pooled = np.stack([cv2.dilate(h, np.ones((3, 3), np.uint8)) for h in heatmap])
    keep = (heatmap >= pooled) & (heatmap >= min_score)
    cls, ys, xs = np.nonzero(keep)
    scores = heatmap[cls, ys, xs]
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [(int(cls[i]), int(ys[i]), int(xs[i]), float(scores[i])) for i in order]


def class_scores(heatmap: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Each class's peak on a crop's [C, H, W] heatmap, thresholds aside: how sure the
    detector is that the part has that defect. Averaged over frames, it decides the part."""
    peak = heatmap.reshape(len(heatmap), -1).max(axis=1)
    return {name: round(float(np.clip(v, 0, 1)), 4) for name, v in zip(classes, peak, strict=True)}


def box_at(y: int, x: int, size: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
    """A box from a peak cell: size holds log(width / STRIDE), log(height / STRIDE)."""
    dx, dy = (0.5, 0.5) if offset is None else (offset[0, y, x], offset[1, y, x])
    cx, cy = (x + dx) * STRIDE, (y + dy) * STRIDE
    w, h = np.exp(size[0, y, x]) * STRIDE, np.exp(size[1, y, x]) * STRIDE
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float64)


def decode_parts(
    outputs: dict[str, np.ndarray], letterbox: Letterbox, min_score: float = 0.3, top_k: int = 20
) -> list[tuple[FloatBox, float]]:
    """One frame's part boxes in frame pixels, with their confidence."""
    heatmap, size, offset = (outputs[name] for name in PART_OUTPUTS)
    found = peaks(heatmap, min_score, top_k)
    if not found:
        return []
    boxes = np.stack([box_at(y, x, size, offset) for _, y, x, _ in found])
    boxes = letterbox.to_frame(boxes)
    return [(tuple(float(v) for v in b), s) for b, (*_, s) in zip(boxes, found, strict=True)]  # type: ignore[misc]


def polygon_of(mask: np.ndarray) -> np.ndarray | None:
    """The largest outer contour of a bool mask, simplified, as [K, 2] points."""
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    if not contours:
        return None
    biggest = max(contours, key=cv2.contourArea)
    simple = cv2.approxPolyDP(biggest, 1.0, True)
    return simple.reshape(-1, 2).astype(np.float64) if len(simple) >= 3 else None


def upsample(map_: np.ndarray) -> np.ndarray:
    """A stride-8 map of a crop to the crop's CROP x CROP pixels."""
    return cv2.resize(map_.astype(np.float32), (CROP, CROP), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class CropDecoding:
    min_defect_score: float = 0.3
    min_anomaly: float = 0.5  # calibrated: 0.5 is the trained threshold
    top_k: int = 10
    classes: tuple[str, ...] = DEFECT_CLASSES


def decode_crop(
    crop: Crop,
    anomaly_map: np.ndarray,
    anomaly_score: float,
    defect_heatmap: np.ndarray,
    defect_size: np.ndarray,
    defect_mask: np.ndarray,
    config: CropDecoding = CropDecoding(),
) -> tuple[list[DefectDetection], float]:
    """A crop's defects in frame pixels, and the part's defect score.

    Classed boxes come from the detector; their pixels and polygon from the mask head inside
    the box. Anomalous regions no classed box covers become ``anomaly`` defects, so a defect
    of a kind never seen in training is still reported, just without a class.
    """
    mask = upsample(defect_mask) >= 0.5
    heat = upsample(anomaly_map) >= config.min_anomaly
    covered = np.zeros_like(mask)
    defects = []
    for cls, y, x, score in peaks(defect_heatmap, config.min_defect_score, config.top_k):
        box = np.clip(box_at(y, x, defect_size), 0, CROP)
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        inside = np.zeros_like(mask)
        inside[y0:y1, x0:x1] = mask[y0:y1, x0:x1] | heat[y0:y1, x0:x1]
        covered[y0:y1, x0:x1] = True
        defects.append(_detection(crop, config.classes[cls], box, score, inside))
    for region in _regions(heat & ~covered):
        ys, xs = np.nonzero(region)
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
        score = float(upsample(anomaly_map)[region].max())
        defects.append(_detection(crop, ANOMALY_CLASS, box, score, region))
    part_score = max(
        [anomaly_score, *(d.score for d in defects if d.defect_class != ANOMALY_CLASS)]
    )
    return defects, float(part_score)


def _regions(mask: np.ndarray, min_pixels: int = 16) -> list[np.ndarray]:
    count, labels = cv2.connectedComponents(mask.astype(np.uint8))
    regions = [labels == k for k in range(1, count)]
    return [r for r in regions if r.sum() >= min_pixels]


def _detection(
    crop: Crop, cls: str, box: np.ndarray, score: float, pixels: np.ndarray
) -> DefectDetection:
    frame_box = crop.to_frame(box.reshape(2, 2)).reshape(4)
    polygon = polygon_of(pixels)
    area = float(pixels.sum()) / crop.scale**2 if pixels.any() else _area(frame_box)
    return DefectDetection(
        defect_class=cls,
        box=tuple(float(v) for v in frame_box),  # type: ignore[arg-type]
        score=float(np.clip(score, 0, 1)),
        area=area,
        polygon=None if polygon is None else [tuple(p) for p in crop.to_frame(polygon).round(1)],
    )


def _area(box: np.ndarray) -> float:
    return float(max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1]))


def part_detections(
    parts: Sequence[tuple[FloatBox, float]],
    crops: Sequence[Crop],
    anomaly: dict[str, np.ndarray],
    defects: dict[str, np.ndarray],
    config: CropDecoding = CropDecoding(),
) -> list[PartDetection]:
    """One frame's parts with their defects, from the three models' batched outputs."""
    out = []
    for i, ((box, confidence), crop) in enumerate(zip(parts, crops, strict=True)):
        found, score = decode_crop(
            crop,
            anomaly["anomaly_map"][i],
            float(anomaly["anomaly_score"][i]),
            defects["defect_heatmap"][i],
            defects["defect_size"][i],
            defects["defect_mask"][i],
            config,
        )
        anomaly_score = float(np.clip(anomaly["anomaly_score"][i], 0, 1))
        out.append(
            PartDetection(
                box=box,
                confidence=min(1.0, confidence),
                defect_score=min(1.0, score),
                anomaly_score=anomaly_score,
                defects=found,
                class_scores=class_scores(defects["defect_heatmap"][i], config.classes),
            )
        )
    return out
