"""The inspection of one frame: the part detector on the frame, then the anomaly model and the
defect detector on each part's crop, through a model server (``Infer``: Triton in the inspect
worker, ONNX Runtime in the offline replay)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from visionline.inspection.tracking import PartDetection
from visionline.inspection.vision import (
    ANOMALY_OUTPUTS,
    CROP_INPUT,
    DEFECT_DETECTOR,
    DEFECT_OUTPUTS,
    FRAME_INPUT,
    PART_ANOMALY,
    PART_DETECTOR,
    PART_OUTPUTS,
    CropDecoding,
    crop_tensors,
    decode_parts,
    frame_tensor,
    part_detections,
)
from visionline.messages import ModelRef
from visionline.resilience import RetryPolicy, retrying

# (model, input name, uint8 batch, output names) -> (outputs by name, version that served it)
Infer = Callable[[str, str, np.ndarray, Sequence[str]], Awaitable[tuple[dict, str]]]
# model -> the version the server would serve now (for a model a frame did not need)
ServedVersion = Callable[[str], Awaitable[str]]


@dataclass
class Inspector:
    """Part detector on the frame, then the anomaly and defect models together on the crops."""

    infer: Infer
    served_version: ServedVersion
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    min_part_score: float = 0.3
    max_parts: int = 20
    max_crop_batch: int = 16
    decoding: CropDecoding = field(default_factory=CropDecoding)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    versions: dict[str, str] = field(default_factory=dict)  # last version served, per model

    async def inspect(self, rgb: np.ndarray) -> tuple[list[PartDetection], list[ModelRef]]:
        tensor, letterbox = frame_tensor(rgb)
        found = await self._run(PART_DETECTOR, FRAME_INPUT, tensor[None], PART_OUTPUTS)
        outputs = {name: value[0] for name, value in found.items()}
        parts = decode_parts(outputs, letterbox, self.min_part_score, self.max_parts)
        if parts:
            crops, windows = crop_tensors(rgb, [box for box, _ in parts])
            anomaly, defects = await asyncio.gather(
                self._run(PART_ANOMALY, CROP_INPUT, crops, ANOMALY_OUTPUTS),
                self._run(DEFECT_DETECTOR, CROP_INPUT, crops, DEFECT_OUTPUTS),
            )
            # One score per crop, whether the model says [N] or [N, 1] (Triton needs dims).
            anomaly["anomaly_score"] = anomaly["anomaly_score"].reshape(len(windows))
            detections = part_detections(parts, windows, anomaly, defects, self.decoding)
        else:
            detections = []
            await asyncio.gather(*(self._know_version(m) for m in (PART_ANOMALY, DEFECT_DETECTOR)))
        return detections, self.model_refs()

    def model_refs(self) -> list[ModelRef]:
        return [
            ModelRef(name=name, version=self.versions[name], served_by="triton")
            for name in (PART_DETECTOR, PART_ANOMALY, DEFECT_DETECTOR)
        ]

    async def _run(
        self, model: str, input_name: str, batch: np.ndarray, outputs: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """The model on ``batch``, in requests of at most ``max_crop_batch``, retried."""
        chunks = []
        for start in range(0, len(batch), self.max_crop_batch):
            part = np.ascontiguousarray(batch[start : start + self.max_crop_batch])
            found, version = await retrying(
                functools.partial(self.infer, model, input_name, part, outputs),
                self.policy,
                self.sleep,
            )
            self.versions[model] = str(version)
            chunks.append(found)
        return {name: np.concatenate([c[name] for c in chunks]) for name in outputs}

    async def _know_version(self, model: str) -> None:
        if model not in self.versions:
            version = await retrying(lambda: self.served_version(model), self.policy, self.sleep)
            self.versions[model] = str(version)
