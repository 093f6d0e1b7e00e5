"""Which models of the Triton repository are detectors a detect camera may use.

A detector takes the contract ``visionline train detector`` writes (input ``image``, uint8
[INPUT, INPUT, 3] letterboxed; outputs ``heatmap`` [classes, H, W], ``size`` and ``offset``
[2, H, W], decoded by ``visionline.training.detector.decode``) and names its classes in
labels.txt, in heatmap channel order (the version folder's own, else the model folder's: see
``classifiers.labels_path``).
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from visionline.inspection.vision import box_at, peaks
from visionline.model_registry.version_policy import CONFIG
from visionline.model_registry.versions import pinned_versions, repository_models
from visionline.models.classifiers import uncommented
from visionline.training.detection_metrics import Boxes, iou_matrix

INPUT = 256  # the model's square input
INPUT_NAME = "image"
OUTPUTS = ("heatmap", "size", "offset")

_INPUT = re.compile(
    rf'name:\s*"{INPUT_NAME}"\s*data_type:\s*TYPE_UINT8\s*'
    rf"dims:\s*\[\s*{INPUT}\s*,\s*{INPUT}\s*,\s*3\s*\]"
)
_OUTPUTS = [re.compile(rf'name:\s*"{name}"\s*data_type:\s*TYPE_FP32') for name in OUTPUTS]


def is_detector(repository: Path, model: str) -> bool:
    """``model`` is a folder of ``repository`` whose config has the detect contract."""
    if model not in repository_models(repository):
        return False
    text = uncommented((repository / model / CONFIG).read_text(encoding="utf-8"))
    return bool(_INPUT.search(text)) and all(o.search(text) for o in _OUTPUTS)


def promoted_detectors(repository: Path) -> list[str]:
    """The detectors with versions pinned as serving (`visionline models promote`)."""
    return [
        m
        for m in repository_models(repository)
        if is_detector(repository, m) and pinned_versions(repository / m)
    ]


# Decoding (the detect worker; training's evaluation runs the same) ----------------------------


def letterbox(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    height, width = rgb.shape[:2]
    scale = min(INPUT / width, INPUT / height)
    w, h = min(INPUT, max(1, round(width * scale))), min(INPUT, max(1, round(height * scale)))
    out = np.zeros((INPUT, INPUT, 3), np.uint8)
    out[:h, :w] = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    return out, scale


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept, best first: a box overlapping a better one by more than ``iou`` goes."""
    order, keep = np.argsort(-scores, kind="stable"), []
    while len(order):
        best, order = order[0], order[1:]
        keep.append(best)
        order = order[iou_matrix(boxes[best : best + 1], boxes[order])[0] <= iou]
    return np.array(keep, np.int64)


def decode(
    heatmap: np.ndarray,
    size: np.ndarray,
    offset: np.ndarray,
    scale: float = 1.0,
    min_score: float = 0.05,
    top_k: int = 100,
    iou: float = 0.6,
) -> Boxes:
    """One image's outputs ([C, H, W], [2, H, W], [2, H, W]) -> boxes in the image's pixels
    (input pixels / ``scale``), class indices and scores, per-class NMS applied."""
    found = peaks(heatmap, min_score, top_k)
    if not found:
        return Boxes.of(np.zeros((0, 4)), [], [])
    boxes = np.stack([box_at(y, x, size, offset) for _, y, x, _ in found]).clip(0, INPUT) / scale
    classes = np.array([c for c, *_ in found])
    scores = np.array([s for *_, s in found])
    keep = np.concatenate(
        [per_class_nms(boxes, scores, classes == c, iou) for c in np.unique(classes)]
    )
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    return Boxes.of(boxes[keep], classes[keep], scores[keep])


def per_class_nms(boxes: np.ndarray, scores: np.ndarray, mine: np.ndarray, iou: float):
    """Indices (into all boxes) of the boxes of one class that NMS keeps."""
    members = np.flatnonzero(mine)
    return members[nms(boxes[members], scores[members], iou)]
