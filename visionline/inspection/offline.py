"""Replay a simulated line through the inspection models and the tracker, without the stack.

The same code as the pipeline (``vision`` pre/post-processing, ``PartTracker`` configured from
``infra/rules.yaml``), in one process with ONNX Runtime: a quality engineer tunes decision
thresholds here in a minute, then confirms them through the real stack with ``inspection run``.
Observations are computed once; deciding again with other rules only re-runs the tracker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from visionline.inspection.acceptance import CameraRun, score
from visionline.inspection.config import InspectionConfig
from visionline.inspection.tracking import PartDecision, PartDetection, PartDetections, PartTracker
from visionline.inspection.train.evaluate import load_models
from visionline.inspection.vision import (
    DEFECT_DETECTOR,
    PART_ANOMALY,
    PART_DETECTOR,
    CropDecoding,
    crop_tensors,
    decode_parts,
    frame_tensor,
    part_detections,
)


@dataclass
class Observed:
    run: CameraRun
    frames: list[list[PartDetection]]  # per frame index


def observe(
    run: CameraRun,
    frames: int,
    repository: Path,
    decoding: CropDecoding | None = None,
    min_part_score: float = 0.3,
    log: Callable[[str], None] = print,
) -> Observed:
    decoding = decoding or CropDecoding()
    models, _ = load_models(repository, threads=2)
    out = []
    for index in range(frames):
        jpeg = np.frombuffer(run.render(index), np.uint8)  # the bytes a camera would send
        rgb = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        tensor, letterbox = frame_tensor(rgb)
        parts = decode_parts(
            {k: v[0] for k, v in models[PART_DETECTOR].run(tensor[None]).items()},
            letterbox, min_part_score,
        )  # fmt: skip
        crops, windows = crop_tensors(rgb, [box for box, _ in parts])
        if parts:
            anomaly, defects = models[PART_ANOMALY].run(crops), models[DEFECT_DETECTOR].run(crops)
            out.append(part_detections(parts, windows, anomaly, defects, decoding))
        else:
            out.append([])
        if index % 50 == 49:
            log(f"{run.camera}: {index + 1}/{frames} frames")
    return Observed(run, out)


def decide(observed: Observed, config: InspectionConfig) -> list[PartDecision]:
    run = observed.run
    tracker = PartTracker(run.camera, run.generator.resolution, config.tracker_config(),
                          config.decision_rules())  # fmt: skip
    decisions = []
    for index, parts in enumerate(observed.frames):
        frame = PartDetections(camera=run.camera, frame_index=index, parts=parts)
        decisions += tracker.update(frame)
    return decisions + tracker.flush()


def as_alerts(run: CameraRun, decisions: list[PartDecision]) -> list[dict]:
    """Rejected decisions in the shape of alerts, for ``acceptance.score``."""
    alerts = []
    for k, d in enumerate(decisions):
        if d.defective and d.best_part is not None:
            alerts.append({"alert_id": f"{run.camera}:{k}", "camera_id": run.camera,
                           "frame_id": run.frame_id(d.best_frame),
                           "part": {"box": list(d.best_part.box)}})  # fmt: skip
    return alerts


def replay_score(observed: list[Observed], config: InspectionConfig) -> dict:
    alerts = [a for o in observed for a in as_alerts(o.run, decide(o, config))]
    return score([o.run for o in observed], [], alerts)
