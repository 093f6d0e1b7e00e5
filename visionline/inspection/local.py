"""The pipeline's inspection in one process: the inspect worker's ``Inspector`` on local ONNX
models, and the parts worker's tracker and rules over a sequence of frames (the offline replay
and the retraining shadow run both use them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from visionline.inspection.config import InspectionConfig
from visionline.inspection.inspector import Inspector
from visionline.inspection.tracking import PartDecision, PartDetection, PartDetections, PartTracker
from visionline.inspection.vision import PART_CROPS, CropDecoding

if TYPE_CHECKING:
    from visionline.training.serving import OnnxModel


def local_inspector(
    models: dict[str, OnnxModel],
    versions: dict[str, int],
    decoding: CropDecoding | None = None,
    min_part_score: float = 0.3,
):
    """The inspect worker's own ``Inspector`` on in-process ONNX models instead of Triton."""

    async def infer(model: str, input_name: str, batch: np.ndarray, outputs: Sequence[str]):
        found = models[model].run(batch)
        return {name: found[name] for name in outputs}, str(versions.get(model, 0))

    async def served_version(model: str) -> str:
        return str(versions[model])

    return Inspector(
        infer,
        served_version,
        min_part_score=min_part_score,
        decoding=decoding or CropDecoding(),
        crop_model=PART_CROPS if PART_CROPS in models else None,
    )


def inspect_frame(inspector, rgb: np.ndarray) -> list[PartDetection]:
    parts, _ = asyncio.run(inspector.inspect(rgb))
    return parts


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
