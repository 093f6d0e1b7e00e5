"""Replay a simulated line through the inspection models and the tracker, without the stack.

The same code as the pipeline (the inspect worker's ``Inspector``, ``PartTracker`` configured
from ``infra/rules.yaml``), in one process with ONNX Runtime: a quality engineer tunes decision
thresholds here in a minute, then confirms them through the real stack with ``inspection run``.
Observations are computed once; deciding again with other rules only re-runs the tracker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from visionline.inspection.acceptance import CameraRun, score
from visionline.inspection.config import InspectionConfig
from visionline.inspection.tracking import PartDecision, PartDetection, PartDetections, PartTracker
from visionline.inspection.vision import CropDecoding
from visionline.training.evaluate import load_models
from visionline.training.serving import OnnxModel


@dataclass
class Observed:
    run: CameraRun
    frames: list[list[PartDetection]]  # per frame index


def local_inspector(
    models: dict[str, OnnxModel],
    versions: dict[str, int],
    decoding: CropDecoding | None = None,
    min_part_score: float = 0.3,
):
    """The inspect worker's own ``Inspector`` on in-process ONNX models instead of Triton."""
    from visionline.inspection.inspector import Inspector

    async def infer(model: str, input_name: str, batch: np.ndarray, outputs: Sequence[str]):
        found = models[model].run(batch)
        return {name: found[name] for name in outputs}, str(versions[model])

    async def served_version(model: str) -> str:
        return str(versions[model])

    return Inspector(infer, served_version, min_part_score=min_part_score,
                     decoding=decoding or CropDecoding())  # fmt: skip


def inspect_frame(inspector, rgb: np.ndarray) -> list[PartDetection]:
    parts, _ = asyncio.run(inspector.inspect(rgb))
    return parts


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
        rgb = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        out.append(inspect_frame(inspector, rgb))
        if index % 50 == 49:
            log(f"{run.camera}: {index + 1}/{frames} frames")
    return Observed(run, out)


def decide(observed: Observed, config: InspectionConfig) -> list[PartDecision]:
    run = observed.run
    return decide_frames(run.camera, run.generator.resolution, observed.frames, config)


def decide_frames(
    camera: str,
    resolution: tuple[int, int],
    frames: Sequence[list[PartDetection]],
    config: InspectionConfig,
    captured_at: Sequence[float] | None = None,
) -> list[PartDecision]:
    """Frames' detections through the parts worker's tracker and rules; a frame's index in
    ``frames`` is its frame index in the decisions. With capture times, the belt travel
    comes from them (as in the parts worker: a missing frame is no jump), else frames are
    taken as consecutive."""
    tracker = PartTracker(camera, resolution, config.tracker_config(), config.decision_rules())
    decisions = []
    for index, parts in enumerate(frames):
        shift = None
        if captured_at is not None:
            shift = (captured_at[index] - captured_at[0]) * config.speed_px_per_s
        frame = PartDetections(camera=camera, frame_index=index, parts=parts, belt_shift=shift)
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
