"""A retraining job's data from real traffic: the drifting camera's recent frames, replayed from
Kafka, with the labels that arrived for them later (``services/labels``).

- ``labelled_crops``: part crops of labelled frames, defect boxes and masks from the labels.
- ``split_by_part``: training and held-out crops by physical part, so the shadow evaluation
  scores parts the candidate never saw, not other views of parts it trained on.
- ``shadow_scores``: a detector version scored on held-out crops the way the line decides a
  part: each class's score averaged over the part's crops, the strongest class against the
  line's threshold (``min_mean_score`` in ``infra/rules.yaml``); per-part AUROC and F1.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from visionline.inspection.metrics import binary_counts, roc_auc
from visionline.inspection.train.data import MIN_VISIBLE, CropSample, crop_around
from visionline.inspection.vision import DEFECT_CLASSES, DEFECT_OUTPUTS, class_scores
from visionline.messages import LabelFeedback, LabelledPart


def defect_masks(part: LabelledPart, size: tuple[int, int]) -> list[tuple[str, np.ndarray]]:
    """Each labelled defect as a frame-sized mask (``size`` = width, height): its polygon
    filled, or its box where the label has no outline (a box-only annotation tool)."""
    width, height = size
    out = []
    for defect in part.defects:
        mask = np.zeros((height, width), np.uint8)
        if defect.polygon and len(defect.polygon) >= 3:
            cv2.fillPoly(mask, [np.round(np.array(defect.polygon)).astype(np.int32)], 1)
        else:
            x0, y0, x1, y1 = (int(round(v)) for v in defect.box)
            mask[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = 1
        out.append((defect.defect_class, mask.astype(bool)))
    return out


def labelled_crops(
    frames: Iterable[tuple[np.ndarray, LabelFeedback]],
    rng: np.random.Generator,
    jitter: float = 0.08,
) -> list[CropSample]:
    """Crops of every labelled part mostly inside its frame (RGB frames with their labels).
    Part ids become ``<camera>:<part>``: unique across cameras."""
    crops = []
    for rgb, label in frames:
        size = (rgb.shape[1], rgb.shape[0])
        for part in label.parts:
            if part.visible_fraction < MIN_VISIBLE:
                continue
            known = [d for d in part.defects if d.defect_class in DEFECT_CLASSES]
            part = part.model_copy(update={"defects": known})
            crops.append(crop_around(rgb, part.box, defect_masks(part, size),
                                     f"traffic:{label.camera_id}",
                                     f"{label.camera_id}:{part.part_id}", rng, jitter))  # fmt: skip
    return crops


def held_out(part_id: int | str, fraction: float) -> bool:
    """Stable across runs and processes (unlike ``hash``)."""
    return zlib.crc32(str(part_id).encode()) % 1000 < fraction * 1000


def split_by_part(
    crops: Sequence[CropSample], fraction: float = 0.3
) -> tuple[list[CropSample], list[CropSample]]:
    """(training, held-out) crops; every crop of one part falls on the same side."""
    train = [c for c in crops if not held_out(c.part_id, fraction)]
    test = [c for c in crops if held_out(c.part_id, fraction)]
    return train, test


def part_scores(heatmaps: np.ndarray, crops: Sequence[CropSample]) -> dict[str, tuple[float, bool]]:
    """Per part: the strongest class's score averaged over the part's crops, and whether the
    part is defective (any crop shows a defect)."""
    per_part: dict[str, list[dict[str, float]]] = defaultdict(list)
    defective: dict[str, bool] = defaultdict(bool)
    for heatmap, crop in zip(heatmaps, crops, strict=True):
        per_part[str(crop.part_id)].append(class_scores(heatmap, DEFECT_CLASSES))
        defective[str(crop.part_id)] |= crop.defective
    out = {}
    for part, scores in per_part.items():
        means = [float(np.mean([s[c] for s in scores])) for c in DEFECT_CLASSES]
        out[part] = (max(means), defective[part])
    return out


def shadow_scores(model, crops: Sequence[CropSample], threshold: float) -> dict[str, float | int]:
    """A detector version (``OnnxModel``) on held-out crops: per-part AUROC, and recall,
    precision and F1 of "reject when the strongest class's mean score reaches ``threshold``"."""
    images = np.stack([c.image for c in crops])
    heatmaps = model.run(images)[DEFECT_OUTPUTS[0]]
    scored = part_scores(heatmaps, crops)
    scores = np.array([s for s, _ in scored.values()])
    truth = np.array([d for _, d in scored.values()])
    counts = binary_counts(list(scores >= threshold), list(truth))
    both = truth.any() and not truth.all()
    return {
        "parts": len(scored),
        "defective_parts": int(truth.sum()),
        "crops": len(crops),
        "part_auroc": round(roc_auc(scores, truth), 4) if both else None,
        **{k: round(float(counts[k]), 4) for k in ("recall", "precision", "f1")},
        "threshold": threshold,
    }
