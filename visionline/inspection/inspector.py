"""The inspection of one frame: the part detector on the frame, then the anomaly model and the
defect detector on each part's crop, through a model server (``Infer``: Triton in the inspect
worker, ONNX Runtime in the offline replay).

The two crop models share their backbone: ``part_crops`` (visionline/training/crop_models.py)
runs both on one backbone pass. It is asked first, and its answer is used while the pair of
versions it was built from is the pair served; otherwise (not built, not loaded, or built from
other versions than a promotion made serve) the two models are asked, and ``part_crops`` is
tried again ``recheck_s`` later."""

from __future__ import annotations

import asyncio
import functools
import time
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
    PART_CROPS,
    PART_DETECTOR,
    PART_OUTPUTS,
    SOURCE_VERSIONS,
    CropDecoding,
    crop_tensors,
    decode_parts,
    frame_tensor,
    part_detections,
)
from visionline.messages import ModelRef
from visionline.resilience import BackendUnavailable, RetryPolicy, retrying

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
    crop_model: str | None = PART_CROPS  # None: always the two crop models apart
    recheck_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    crops_off_until: float = 0.0  # part_crops not asked before (clock)
    served_pair: tuple[tuple[str, str], float] | None = None  # (pair, when it was asked)

    async def inspect(
        self, rgb: np.ndarray, scaled: np.ndarray | None = None
    ) -> tuple[list[PartDetection], list[ModelRef]]:
        """The frame's parts; ``scaled``: its ``vision.scaled_frame`` (RGB), if at hand."""
        tensor, letterbox = frame_tensor(rgb, scaled)
        found = await self._run(PART_DETECTOR, FRAME_INPUT, tensor[None], PART_OUTPUTS)
        outputs = {name: value[0] for name, value in found.items()}
        parts = decode_parts(outputs, letterbox, self.min_part_score, self.max_parts)
        if parts:
            crops, windows = crop_tensors(rgb, [box for box, _ in parts])
            anomaly, defects = await self._crop_models(crops)
            # One score per crop, whether the model says [N] or [N, 1] (Triton needs dims).
            anomaly["anomaly_score"] = anomaly["anomaly_score"].reshape(len(windows))
            detections = part_detections(parts, windows, anomaly, defects, self.decoding)
        else:
            detections = []
            await asyncio.gather(*(self._know_version(m) for m in (PART_ANOMALY, DEFECT_DETECTOR)))
        return detections, self.model_refs()

    async def _crop_models(self, crops: np.ndarray) -> tuple[dict, dict]:
        """(anomaly outputs, defect outputs) of the crops: ``part_crops`` when it may answer."""
        if self.crop_model and self.clock() >= self.crops_off_until:
            both = await self._shared_backbone(crops)
            if both is not None:
                return both
            self.crops_off_until = self.clock() + self.recheck_s
        return await asyncio.gather(
            self._run(PART_ANOMALY, CROP_INPUT, crops, ANOMALY_OUTPUTS),
            self._run(DEFECT_DETECTOR, CROP_INPUT, crops, DEFECT_OUTPUTS),
        )

    async def _shared_backbone(self, crops: np.ndarray) -> tuple[dict, dict] | None:
        """``part_crops``'s answer, None when it has none or was built from other versions
        than those served. One try: on failure the two models are asked (and retried)."""
        assert self.crop_model is not None
        names = (*ANOMALY_OUTPUTS, *DEFECT_OUTPUTS, SOURCE_VERSIONS)
        found: dict[str, list[np.ndarray]] = {name: [] for name in names}
        try:
            for start in range(0, len(crops), self.max_crop_batch):
                part = np.ascontiguousarray(crops[start : start + self.max_crop_batch])
                outputs, _ = await self.infer(self.crop_model, CROP_INPUT, part, names)
                for name in names:
                    found[name].append(outputs[name])
            served = await self._served_pair()
        except BackendUnavailable:
            return None
        sources = tuple(str(v) for v in found[SOURCE_VERSIONS][0][0])
        if sources != served:
            return None
        self.versions[PART_ANOMALY], self.versions[DEFECT_DETECTOR] = sources
        joined = {name: np.concatenate(found[name]) for name in names}
        return (
            {name: joined[name] for name in ANOMALY_OUTPUTS},
            {name: joined[name] for name in DEFECT_OUTPUTS},
        )

    async def _served_pair(self) -> tuple[str, str]:
        """The versions of the two crop models served now, asked every ``recheck_s``."""
        now = self.clock()
        if self.served_pair is None or now - self.served_pair[1] >= self.recheck_s:
            anomaly = await self.served_version(PART_ANOMALY)
            defect = await self.served_version(DEFECT_DETECTOR)
            self.served_pair = ((str(anomaly), str(defect)), now)
        return self.served_pair[0]

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
