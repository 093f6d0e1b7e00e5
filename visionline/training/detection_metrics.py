"""A detector's figures from predicted and true boxes: COCO's mean average precision.

Plain numpy, no model. Per class and IoU threshold the detections of all images are ranked by
score; each one, best first, matches the unmatched true box of its image and class with the
highest IoU at or above the threshold (COCO's greedy matching); a detection that matches none
(a duplicate, a wrong place, a wrong class) is a false positive. AP is COCO's 101-point
interpolation: the precision envelope read at recall 0, 0.01, ..., 1 (0 past the last recall
reached). ``map50`` is the mean AP at IoU 0.5 over the classes with a true box; ``map50_95``
the mean over IoU 0.5, 0.55, ..., 0.95 too. A class with no true box has no AP (None), as in
COCO, rather than counting as a zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IOU_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass
class Boxes:
    """One image's boxes: [K, 4] x0 y0 x1 y1, class indices [K], scores [K] (1 for truth)."""

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray

    @classmethod
    def of(cls, boxes, classes, scores=None) -> Boxes:
        array = np.asarray(boxes, np.float64).reshape(-1, 4)
        labels = np.asarray(classes, np.int64).reshape(-1)
        values = np.ones(len(labels)) if scores is None else np.asarray(scores, np.float64)
        return cls(array, labels, values.reshape(-1))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] intersection over union of x0 y0 x1 y1 boxes."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = (x1 - x0).clip(0) * (y1 - y0).clip(0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_image(pred: Boxes, truth: Boxes, cls: int, threshold: float) -> tuple[np.ndarray, ...]:
    """(scores, matched) of one image's detections of class ``cls``, best first."""
    mine = np.flatnonzero(pred.classes == cls)
    mine = mine[np.argsort(-pred.scores[mine], kind="stable")]
    true_boxes = truth.boxes[truth.classes == cls]
    matched = np.zeros(len(mine), bool)
    if len(mine) and len(true_boxes):
        ious = iou_matrix(pred.boxes[mine], true_boxes)
        taken = np.zeros(len(true_boxes), bool)
        for k in range(len(mine)):
            candidates = np.where(taken, -1.0, ious[k])
            best = int(candidates.argmax())
            if candidates[best] >= threshold:
                taken[best], matched[k] = True, True
    return pred.scores[mine], matched


def average_precision(scores: np.ndarray, matched: np.ndarray, positives: int) -> float:
    """COCO's 101-point interpolated AP of ranked detections against ``positives`` true boxes."""
    if positives == 0:
        return float("nan")
    if not len(scores):
        return 0.0
    order = np.argsort(-scores, kind="stable")
    hits = matched[order].astype(float)
    recall = np.cumsum(hits) / positives
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    at = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(at < len(envelope), envelope[np.minimum(at, len(envelope) - 1)], 0.0)
    return float(sampled.mean())


def class_ranking(
    preds: Sequence[Boxes], truths: Sequence[Boxes], cls: int, threshold: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """All images' detections of ``cls``: (scores, matched, number of true boxes)."""
    scores, matched = [], []
    for pred, truth in zip(preds, truths, strict=True):
        s, m = match_image(pred, truth, cls, threshold)
        scores.append(s)
        matched.append(m)
    positives = int(sum((truth.classes == cls).sum() for truth in truths))
    return np.concatenate(scores), np.concatenate(matched), positives


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else 0.0


def precision_recall_at(
    scores: np.ndarray, matched: np.ndarray, positives: int, score_threshold: float
) -> dict:
    kept = scores >= score_threshold
    hits = int(matched[kept].sum())
    return {
        "precision": hits / int(kept.sum()) if kept.any() else 0.0,
        "recall": hits / positives if positives else 0.0,
        "detections": int(kept.sum()),
        "true_positives": hits,
    }


def mean_average_precision(
    preds: Sequence[Boxes],
    truths: Sequence[Boxes],
    classes: Sequence[str],
    score_threshold: float = 0.3,
) -> dict:
    """``map50``, ``map50_95``, ``per_class`` (ap50, ap50_95, support, precision and recall at
    ``score_threshold`` and IoU 0.5) and the overall precision/recall at that threshold."""
    per_class: dict[str, dict] = {}
    all_scores, all_matched, all_positives = [], [], 0
    for k, name in enumerate(classes):
        aps = []
        for threshold in IOU_THRESHOLDS:
            scores, matched, positives = class_ranking(preds, truths, k, float(threshold))
            aps.append(average_precision(scores, matched, positives))
            if threshold == 0.5:
                at50 = (scores, matched, positives)
        all_scores.append(at50[0])
        all_matched.append(at50[1])
        all_positives += at50[2]
        per_class[name] = {
            "ap50": None if np.isnan(aps[0]) else aps[0],
            "ap50_95": None if np.isnan(aps[0]) else float(np.mean(aps)),
            "support": at50[2],
            **precision_recall_at(*at50, score_threshold),
        }
    ap50 = [v["ap50"] for v in per_class.values() if v["ap50"] is not None]
    ap = [v["ap50_95"] for v in per_class.values() if v["ap50_95"] is not None]
    overall = precision_recall_at(
        np.concatenate(all_scores), np.concatenate(all_matched), all_positives, score_threshold
    )
    return {
        "images": len(truths),
        "boxes": all_positives,
        "map50": _nanmean(ap50),
        "map50_95": _nanmean(ap),
        "per_class": per_class,
        "score_threshold": score_threshold,
        **overall,
    }


def ranked_at50(
    preds: Sequence[Boxes], truths: Sequence[Boxes], classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every detection's score and whether it is right (its class, IoU >= 0.5)."""
    rankings = [class_ranking(preds, truths, k, 0.5) for k in range(classes)]
    return np.concatenate([r[0] for r in rankings]), np.concatenate([r[1] for r in rankings])
