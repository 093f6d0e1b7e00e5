"""A retraining job's data from real traffic: the drifting camera's recent frames, replayed from
Kafka, with the labels that arrived for them later (``services/labels``).

- ``labelled_crops``: part crops of labelled frames, defect boxes and masks from the labels,
  cut around the serving part detector's boxes (``part_detector``) as the stack cuts them.
- ``relighting``/``relight``: the camera's frames from before a lighting drift, mapped to the
  drift's light, as more training frames of the new condition.
- ``split_by_time``: training frames, and the last frames held out for the shadow run
  (``visionline.retrain.shadow``), without the parts seen in those.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import cv2
import numpy as np

from visionline.inspection.metrics import iou
from visionline.inspection.tracking import FloatBox
from visionline.inspection.vision import DEFECT_CLASSES, decode_parts, frame_tensor
from visionline.messages import LabelFeedback, LabelledPart
from visionline.training.data import MIN_VISIBLE, CropSample, crop_around

LABEL_JITTER, DETECTED_JITTER = 0.08, 0.03
MATCH_IOU = 0.3  # a detected box is a labelled part's (as verdicts are joined to parts: acceptance)


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
    jitter: float | None = None,
    detect: Callable[[np.ndarray], list[FloatBox]] | None = None,
) -> list[CropSample]:
    """Crops of every labelled part mostly inside its frame (RGB frames with their labels).
    Part ids become ``<camera>:<part>``: unique across cameras.

    With ``detect`` (a frame's part boxes: the serving part detector), a part is cut around the
    box found on it, as the inspect worker cuts it, however little of it shows; a part the
    detector misses is left out: the stack never inspects it. Boxes move by up to ``jitter``
    of their size: by default 0.03 around detected boxes, 0.08 around labelled ones (which
    detected boxes never match exactly)."""
    if jitter is None:
        jitter = LABEL_JITTER if detect is None else DETECTED_JITTER
    crops = []
    for rgb, label in frames:
        size = (rgb.shape[1], rgb.shape[0])
        boxes = _matched_boxes(label, detect(rgb)) if detect is not None else None
        for part in label.parts:
            box = part.box if boxes is None else boxes.get(part.part_id)
            if box is None or (boxes is None and part.visible_fraction < MIN_VISIBLE):
                continue
            known = [d for d in part.defects if d.defect_class in DEFECT_CLASSES]
            part = part.model_copy(update={"defects": known})
            crops.append(
                crop_around(
                    rgb,
                    box,
                    defect_masks(part, size),
                    f"traffic:{label.camera_id}",
                    f"{label.camera_id}:{part.part_id}",
                    rng,
                    jitter,
                )
            )
    return crops


def _matched_boxes(label: LabelFeedback, boxes: list[FloatBox]) -> dict[str, FloatBox]:
    """Each labelled part's best-overlapping detected box, if it overlaps by ``MATCH_IOU``."""
    out: dict[str, FloatBox] = {}
    for part in label.parts:
        scored = [(iou(part.box, box), box) for box in boxes]
        best = max(scored, default=(0.0, None), key=lambda s: s[0])
        if best[1] is not None and best[0] >= MATCH_IOU:
            out[part.part_id] = best[1]
    return out


def part_detector(model, min_score: float = 0.3) -> Callable[[np.ndarray], list[FloatBox]]:
    """A frame's part boxes from a part detector version (``OnnxModel``), decoded as the inspect
    worker decodes them."""

    def detect(rgb: np.ndarray) -> list[FloatBox]:
        tensor, letterbox = frame_tensor(rgb)
        outputs = {name: value[0] for name, value in model.run(tensor[None]).items()}
        return [box for box, _ in decode_parts(outputs, letterbox, min_score)]

    return detect


def relighting(source: Sequence[np.ndarray], target: Sequence[np.ndarray]) -> np.ndarray:
    """Per channel, the map of pixel values (a [256, 3] lookup table) that gives the
    ``source`` frames the ``target`` frames' histogram: quantile to quantile. A lighting change
    (a new lamp, stray light, gain) moves values mostly the same way across the frame, so the
    camera's labelled frames from before a drift, relit, show the parts as the drift does."""
    quantiles = np.linspace(0, 1, 257)
    table = np.zeros((256, 3), np.uint8)
    for c in range(3):
        a = np.quantile(np.stack([f[..., c] for f in source]), quantiles)
        b = np.quantile(np.stack([f[..., c] for f in target]), quantiles)
        mapped = np.interp(np.arange(256), a + np.arange(257) * 1e-6, b)  # ties: still rising
        table[:, c] = np.clip(mapped, 0, 255).round().astype(np.uint8)
    return table


def relight(rgb: np.ndarray, table: np.ndarray) -> np.ndarray:
    return np.stack([cv2.LUT(rgb[..., c], table[:, c]) for c in range(3)], axis=-1)


def split_by_time(
    frames: Sequence[tuple[np.ndarray, LabelFeedback]], fraction: float
) -> tuple[list[tuple[np.ndarray, LabelFeedback]], list[tuple[np.ndarray, LabelFeedback]]]:
    """(training, shadow) frames: the last ``fraction`` of the frames, in capture order, are
    the shadow run's (consecutive, as the line's tracker needs them); a part seen in any of
    them is dropped from the training frames, so the shadow run scores parts never trained on."""
    ordered = sorted(frames, key=lambda f: f[1].captured_at)
    cut = len(ordered) - max(1, round(len(ordered) * fraction)) if ordered else 0
    train, shadow = ordered[:cut], ordered[cut:]
    seen = {p.part_id for _, label in shadow for p in label.parts}
    kept = []
    for rgb, label in train:
        parts = [p for p in label.parts if p.part_id not in seen]
        kept.append((rgb, label.model_copy(update={"parts": parts})))
    return kept, shadow
