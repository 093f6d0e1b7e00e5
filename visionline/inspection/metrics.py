"""Evaluation metrics for inspection models, in plain numpy (no sklearn dependency).

Scores and labels: ``roc_auc`` and ``pixel_auroc`` (anomaly maps against truth masks),
``mask_iou`` and ``binary_counts`` (per-part decisions). Detections: ``iou``/``iou_matrix``,
``average_precision``/``mean_average_precision`` (VOC all-point interpolation) and
``class_confusion``.

Boxes are ``(x0, y0, x1, y1)`` in frame pixels with an exclusive end, as in
``visionline.synthetic.truth``: a box's area is ``(x1 - x0) * (y1 - y0)``, and integer truth
boxes and float detection boxes mix freely.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# The figures of an inspection models' evaluation, per condition (training and retraining).
EVALUATION_KEYS = (
    "part_ap50",
    "image_auroc",
    "pixel_auroc",
    "part_score_auroc",
    "detector_auroc",
    "defect_map50",
    "mask_iou",
)

BoxLike = Sequence[float]  # x0, y0, x1, y1, end exclusive
Detection = tuple[str, BoxLike, float]  # class, box, score
Truth = tuple[str, BoxLike]  # class, box
BACKGROUND = "background"

MIN_IOU = 0.3  # a verdict's box must overlap its true part at least this much


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], ordered.size]  # exclusive
    mean_rank = (starts + 1 + ends) / 2.0  # mean of starts+1 .. ends
    ranks = np.empty(values.size, np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray) -> float:
    """Area under the ROC curve: the chance that a positive outscores a negative (ties count
    one half), computed from ranks (Mann-Whitney U) in O(n log n).

    Raises ValueError when only one class is present, since the area is then undefined.
    """
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels, bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.size} != {y.size}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc needs both positive and negative labels")
    rank_sum = _average_ranks(s)[y].sum()
    u = rank_sum - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def pixel_auroc(
    maps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    max_pixels: int = 2_000_000,
    seed: int = 0,
) -> float:
    """ROC AUC over every pixel of every (anomaly map, truth mask) pair.

    Above ``max_pixels`` pixels in all, a uniform sample without replacement of that many is
    used, drawn from ``seed`` so that the result is reproducible.
    """
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} maps but {len(masks)} masks")
    if not maps:
        raise ValueError("pixel_auroc needs at least one map")
    for i, (m, t) in enumerate(zip(maps, masks, strict=True)):
        if np.shape(m) != np.shape(t):
            raise ValueError(f"map {i} has shape {np.shape(m)}, its mask {np.shape(t)}")
    scores = np.concatenate([np.asarray(m, np.float64).ravel() for m in maps])
    labels = np.concatenate([np.asarray(t, bool).ravel() for t in masks])
    if max_pixels < 1:
        raise ValueError("max_pixels must be at least 1")
    if scores.size > max_pixels:
        pick = np.random.default_rng(seed).choice(scores.size, max_pixels, replace=False)
        scores, labels = scores[pick], labels[pick]
    return roc_auc(scores, labels)


def mask_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two bool masks; 1.0 when both are empty (nothing to find,
    nothing claimed)."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    if p.shape != t.shape:
        raise ValueError(f"mask shapes differ: {p.shape} != {t.shape}")
    union = np.count_nonzero(p | t)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(p & t) / union)


def iou_matrix(
    boxes_a: Sequence[BoxLike] | np.ndarray, boxes_b: Sequence[BoxLike] | np.ndarray
) -> np.ndarray:
    """Pairwise IoU, shape ``(len(boxes_a), len(boxes_b))``; a pair with no area in its union
    (degenerate boxes) has IoU 0. Inverted boxes count as empty."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return out


def iou(box_a: BoxLike, box_b: BoxLike) -> float:
    """IoU of two boxes (see ``iou_matrix``)."""
    return float(iou_matrix([box_a], [box_b])[0, 0])


def _check_images(detections: Sequence[Any], truths: Sequence[Any]) -> None:
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} images of detections but {len(truths)} of truth")


def _match_image(
    dets: Sequence[Detection], gts: Sequence[Truth], iou_threshold: float, same_class: bool
) -> list[int | None]:
    """Greedy matching in one image: detections by descending score (ties keep input order)
    each take the unmatched truth they overlap most, if at IoU >= ``iou_threshold`` (and of
    the same class when ``same_class``). Returns the truth index per detection, or None."""
    matched: list[int | None] = [None] * len(dets)
    if not dets or not gts:
        return matched
    ious = iou_matrix([d[1] for d in dets], [g[1] for g in gts])
    taken = np.zeros(len(gts), bool)
    gt_classes = np.array([g[0] for g in gts], dtype=object)
    for i in sorted(range(len(dets)), key=lambda k: -dets[k][2]):
        candidates = ious[i].copy()
        candidates[taken] = -1.0
        if same_class:
            candidates[gt_classes != dets[i][0]] = -1.0
        j = int(np.argmax(candidates))
        if candidates[j] >= iou_threshold:
            taken[j] = True
            matched[i] = j
    return matched


def _voc_ap(tp: np.ndarray, n_truth: int) -> float:
    """All-point interpolated AP: area under the monotone envelope of precision over recall."""
    if tp.size == 0:
        return 0.0
    cum_tp = np.cumsum(tp)
    recall = cum_tp / n_truth
    precision = cum_tp / np.arange(1, tp.size + 1)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def average_precision(
    detections: Sequence[Sequence[Detection]],
    truths: Sequence[Sequence[Truth]],
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """Per-class detection AP over a set of images (VOC all-point interpolation).

    ``detections[i]`` and ``truths[i]`` belong to image ``i``. Within an image and class,
    detections are matched greedily by descending score to the unmatched truth of the same
    class they overlap most (IoU >= ``iou_threshold``); each truth is matched at most once, so
    a duplicate detection of an already-found object is a false positive. The result has one
    entry per class that has at least one truth (AP is undefined without any); a class with
    truth but no detections has AP 0.
    """
    _check_images(detections, truths)
    hits: dict[str, list[tuple[float, bool]]] = {}
    n_truth: dict[str, int] = {}
    for dets, gts in zip(detections, truths, strict=True):
        for cls, _ in gts:
            n_truth[cls] = n_truth.get(cls, 0) + 1
        matched = _match_image(dets, gts, iou_threshold, same_class=True)
        for (cls, _, score), m in zip(dets, matched, strict=True):
            hits.setdefault(cls, []).append((float(score), m is not None))
    result: dict[str, float] = {}
    for cls in sorted(n_truth):
        ranked = sorted(hits.get(cls, []), key=lambda h: -h[0])  # stable: ties keep order
        tp = np.array([h[1] for h in ranked], np.float64)
        result[cls] = _voc_ap(tp, n_truth[cls])
    return result


def mean_average_precision(
    detections: Sequence[Sequence[Detection]],
    truths: Sequence[Sequence[Truth]],
    iou_threshold: float = 0.5,
) -> float:
    """Mean of ``average_precision`` over the classes that have truth; NaN when none has."""
    per_class = average_precision(detections, truths, iou_threshold)
    if not per_class:
        return float("nan")
    return float(np.mean(list(per_class.values())))


def class_confusion(
    detections: Sequence[Sequence[Detection]],
    truths: Sequence[Sequence[Truth]],
    classes: Sequence[str],
    iou_threshold: float = 0.5,
    min_score: float = 0.0,
) -> dict[str, Any]:
    """Which class the detector gave each object, and what it missed or invented.

    Detections with score >= ``min_score`` are matched to truths class-agnostically (greedy by
    score, best unmatched truth at IoU >= ``iou_threshold``). Returns ``{"labels": [*classes,
    "background"], "matrix": int array (n+1, n+1)}`` where ``matrix[t, p]`` counts objects of
    truth label ``t`` predicted as label ``p``: the last column counts missed truths, the last
    row false positives (detections matching no truth); the corner is always 0.
    """
    _check_images(detections, truths)
    labels = [*classes, BACKGROUND]
    if len(set(labels)) != len(labels):
        raise ValueError(f"classes must be distinct and not {BACKGROUND!r}: {list(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    bg = len(classes)
    matrix = np.zeros((bg + 1, bg + 1), np.int64)

    def at(cls: str) -> int:
        if cls not in index:
            raise ValueError(f"unknown class {cls!r}; expected one of {list(classes)}")
        return index[cls]

    for dets, gts in zip(detections, truths, strict=True):
        kept = [d for d in dets if d[2] >= min_score]
        matched = _match_image(kept, gts, iou_threshold, same_class=False)
        for (cls, _, _), m in zip(kept, matched, strict=True):
            row = bg if m is None else at(gts[m][0])
            matrix[row, at(cls)] += 1
        found = {m for m in matched if m is not None}
        for j, (cls, _) in enumerate(gts):
            if j not in found:
                matrix[at(cls), bg] += 1
    return {"labels": labels, "matrix": matrix}


def binary_counts(predicted: Sequence[bool], actual: Sequence[bool]) -> dict[str, float]:
    """Confusion counts and precision, recall, F1 for yes/no decisions (e.g. part rejected).

    Conventions for empty denominators: precision is 1.0 when nothing was predicted positive
    (no false alarm was raised) and recall is 1.0 when nothing was actually positive (nothing
    was missed). F1 is 0.0 when precision and recall are both 0.
    """
    p = np.asarray(predicted, bool).ravel()
    a = np.asarray(actual, bool).ravel()
    if p.shape != a.shape:
        raise ValueError(f"predicted and actual differ in length: {p.size} != {a.size}")
    tp = int(np.count_nonzero(p & a))
    fp = int(np.count_nonzero(p & ~a))
    fn = int(np.count_nonzero(~p & a))
    tn = int(np.count_nonzero(~p & ~a))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }
