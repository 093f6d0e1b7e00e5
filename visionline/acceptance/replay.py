"""Replay a simulated line through the inspection models and the tracker, without the stack.

The same code as the pipeline (the inspect worker's ``Inspector``, ``PartTracker`` configured
from ``infra/rules.yaml``), in one process with ONNX Runtime: a quality engineer tunes decision
thresholds here in a minute, then confirms them through the real stack with
``visionline acceptance run``.
Observations are computed once; deciding again with other rules only re-runs the tracker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from visionline.acceptance.run import CameraRun, score
from visionline.inspection.config import InspectionConfig
from visionline.inspection.local import decide_frames, inspect_frame, local_inspector
from visionline.inspection.tracking import PartDecision, PartDetection
from visionline.inspection.vision import CropDecoding
from visionline.training.evaluate import load_models


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
    """The line's frames through the inspect worker's own ``Inspector``, on local models."""
    inspector = local_inspector(*load_models(repository, threads=2), decoding, min_part_score)
    out = []
    for index in range(frames):
        jpeg = np.frombuffer(run.render(index), np.uint8)  # the bytes a camera would send
        bgr = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        assert bgr is not None  # the generator's own JPEG
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        out.append(inspect_frame(inspector, rgb))
        if index % 50 == 49:
            log(f"{run.camera}: {index + 1}/{frames} frames")
    return Observed(run, out)


def decide(observed: Observed, config: InspectionConfig) -> list[PartDecision]:
    run = observed.run
    return decide_frames(run.camera, run.generator.resolution, observed.frames, config)


def as_alerts(run: CameraRun, decisions: list[PartDecision]) -> list[dict]:
    """Rejected decisions in the shape of alerts, for ``acceptance.score``."""
    alerts = []
    for k, d in enumerate(decisions):
        if d.defective and d.best_part is not None:
            alerts.append(
                {
                    "alert_id": f"{run.camera}:{k}",
                    "camera_id": run.camera,
                    "frame_id": run.frame_id(d.best_frame),
                    "part": {"box": list(d.best_part.box)},
                }
            )
    return alerts


def replay_score(observed: list[Observed], config: InspectionConfig) -> dict:
    alerts = [a for o in observed for a in as_alerts(o.run, decide(o, config))]
    return score([o.run for o in observed], [], alerts)


def rule_grid(base: InspectionConfig) -> list[tuple[str, str, InspectionConfig]]:
    """The rules file's entry, then each rejection rule alone at nearby thresholds:
    (rule, threshold, config)."""
    grid = [("rules file", "", base)]
    for min_score in (0.3, 0.4, 0.5, 0.6):
        for frames in (1, 2, 3):
            update = {"min_score": min_score, "min_defect_frames": frames, "min_mean_score": None}
            grid.append(
                ("frames", f"score {min_score} in {frames}", base.model_copy(update=update))
            )
    for mean in (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5):
        update = {"min_defect_frames": None, "min_mean_score": mean}
        grid.append(("mean score", f"{mean}", base.model_copy(update=update)))
    return grid
