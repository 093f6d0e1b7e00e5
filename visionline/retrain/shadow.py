"""The shadow run: a camera's recent labelled frames through the models and the line's tracker,
decided the way the stack decides them, and scored per part against the labels.

Crops cut around labelled boxes flatter a detector: the stack cuts around the part detector's
boxes, averages evidence over every frame a part is tracked in (entering and leaving the view
too) and rejects on the line's rules. Here the frames go through the inspect worker's own
``Inspector`` (in-process ONNX) and the parts worker's ``PartTracker`` with the camera's
inspection rules, so a version's shadow F1 is the F1 its alerts would have had on those frames.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from visionline.inspection.config import InspectionConfig
from visionline.inspection.local import decide_frames, inspect_frame, local_inspector
from visionline.inspection.metrics import MIN_IOU, binary_counts, iou
from visionline.inspection.tracking import PartDecision, PartDetection
from visionline.messages import LabelFeedback
from visionline.training.serving import OnnxModel

COUNTS = ("tp", "fp", "fn", "tn")
LabelledFrame = tuple[np.ndarray, LabelFeedback]  # RGB frame and its labels


def load_versions(repository: Path, versions: dict[str, int], threads: int) -> dict[str, OnnxModel]:
    return {
        m: OnnxModel(repository / m / str(v) / "model.onnx", threads) for m, v in versions.items()
    }


def observe_frames(
    frames: Sequence[LabelledFrame], models: dict[str, OnnxModel], versions: dict[str, int]
) -> list[list[PartDetection]]:
    inspector = local_inspector(models, versions)
    return [inspect_frame(inspector, rgb) for rgb, _ in frames]


def part_truth(labels: Sequence[LabelFeedback]) -> dict[str, bool]:
    """Parts seen whole in the window (not in its first or last frame: those may be cut off
    by it), and whether each is defective (a defect shows in any of its frames)."""
    frames_of: dict[str, list[int]] = defaultdict(list)
    defective: dict[str, bool] = defaultdict(bool)
    for index, label in enumerate(labels):
        for part in label.parts:
            frames_of[part.part_id].append(index)
            defective[part.part_id] |= part.defective
    last = len(labels) - 1
    return {p: defective[p] for p, seen in frames_of.items() if min(seen) > 0 and max(seen) < last}


def part_of(label: LabelFeedback, box: Sequence[float]) -> str | None:
    scored = [(iou(tuple(box), p.box), p.part_id) for p in label.parts]
    best = max(scored, default=(0.0, None))
    return best[1] if best[0] >= MIN_IOU else None


def score_decisions(labels: Sequence[LabelFeedback], decisions: Sequence[PartDecision]) -> dict:
    """Per-part recall, precision and F1 of the rejections against the labels; a rejection
    that matches no labelled part is a false alert."""
    truth = part_truth(labels)
    rejected, false_alerts = set(), 0
    for d in decisions:
        if not d.defective or d.best_part is None:
            continue
        part = part_of(labels[d.best_frame], d.best_part.box)
        if part is None:
            false_alerts += 1
        elif part in truth:
            rejected.add(part)
    predicted = [p in rejected for p in truth] + [True] * false_alerts
    actual = list(truth.values()) + [False] * false_alerts
    return {
        "parts": len(truth),
        "defective_parts": sum(truth.values()),
        "false_alerts": false_alerts,
        **_rates(binary_counts(predicted, actual)),
    }


def _rates(counts: dict) -> dict:
    return {
        **{k: int(counts[k]) for k in COUNTS},
        **{k: round(float(counts[k]), 4) for k in ("recall", "precision", "f1")},
    }


def pooled(scores: Sequence[dict]) -> dict:
    """Several cameras' shadow scores as one: counts summed, rates from the sums."""
    total = {
        k: sum(s[k] for s in scores)
        for k in (*COUNTS, "parts", "defective_parts", "false_alerts", "frames")
    }
    predicted = [True] * (total["tp"] + total["fp"]) + [False] * (total["fn"] + total["tn"])
    actual = [True] * total["tp"] + [False] * total["fp"] + [True] * total["fn"]
    actual += [False] * total["tn"]
    return {**total, **_rates(binary_counts(predicted, actual)), "cameras": len(scores)}


def shadow_run(
    frames: Sequence[LabelledFrame],
    models: dict[str, OnnxModel],
    versions: dict[str, int],
    config: InspectionConfig,
) -> dict:
    """``frames`` (one camera's, in capture order) inspected by ``versions`` and decided by
    ``config``: per-part scores, with the frames and versions they came from."""
    if not frames:
        raise ValueError("a shadow run needs frames")
    camera = frames[0][1].camera_id
    height, width = frames[0][0].shape[:2]
    observed = observe_frames(frames, models, versions)
    labels = [label for _, label in frames]
    decisions = decide_frames(
        camera, (width, height), observed, config, [label.captured_at for label in labels]
    )
    return {"frames": len(frames), "versions": dict(versions), **score_decisions(labels, decisions)}
