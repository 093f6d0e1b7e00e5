"""Frames worth labelling, kept with the models' predictions for annotators to correct.

The inspect worker keeps a frame when one of its parts is uncertain, when the anomaly model
and the defect detector disagree, or when a part looks defective (``sampling.reasons_to_label``),
within a per-camera budget. Each kept frame is ``frames/<key>.jpg`` (the camera's own bytes)
and ``predictions/<key>.json`` (the observation and the reasons). ``sample_labels`` turns the
predictions into a ``LabelSet`` of pre-annotations, so ``visionline annotations export --samples``
writes them for CVAT, LabelImg, YOLO or COCO tools, and ``annotations import`` reads corrections.
Retention is the snapshot store's (age, then total size); predictions go with their frames.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from visionline.annotations import PART_CLASS, ImageLabels, LabelObject, LabelSet
from visionline.inspection.sampling import LabelSampler, reasons_to_label
from visionline.inspection.snapshots import SnapshotStore
from visionline.inspection.vision import ANOMALY_CLASS
from visionline.messages import PartObservations
from visionline.synthetic.defects import DEFECT_CLASSES

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def sample_key(camera_id: str, frame_id: str) -> str:
    """One flat, file-safe name per frame: annotation tools want a folder of images."""
    return _UNSAFE.sub("_", f"{camera_id}__{frame_id}").replace("..", "__")


def reasons_for(obs: PartObservations, sampler: LabelSampler, rejected_at: float) -> list[str]:
    """Why this frame is worth labelling (any part's reasons), or [] (also when over budget)."""
    reasons: set[str] = set()
    for part in obs.parts:
        classed = max(
            (d.score for d in part.defects if d.defect_class in DEFECT_CLASSES), default=0.0
        )
        found = reasons_to_label(
            min(1.0, part.anomaly_score),
            min(1.0, classed),
            part.defect_score >= rejected_at,
            sampler.config,
        )
        reasons.update(found)
    if reasons and sampler.limiter.allow(obs.frame.camera_id):
        return sorted(reasons)
    return []


class SampleStore:
    def __init__(self, root: Path, max_age_s: float | None, max_bytes: int | None) -> None:
        self.root = Path(root)
        self.frames = SnapshotStore(self.root / "frames", max_age_s, max_bytes)
        self.predictions = self.root / "predictions"

    def keep(self, obs: PartObservations, jpeg: bytes, reasons: Sequence[str]) -> str:
        key = sample_key(obs.frame.camera_id, obs.frame.frame_id)
        self.predictions.mkdir(parents=True, exist_ok=True)
        record = {"reasons": list(reasons), "observation": obs.model_dump(mode="json")}
        with tempfile.NamedTemporaryFile(
            "w", dir=self.predictions, suffix=".tmp", delete=False
        ) as tmp:
            json.dump(record, tmp)
        os.replace(tmp.name, self.predictions / f"{key}.json")
        return self.frames.put(key, jpeg)

    def prune(self, now: float | None = None) -> int:
        """The frames' retention, then predictions whose frame is gone."""
        removed = self.frames.prune(now)
        for path in self.predictions.glob("*.json") if self.predictions.is_dir() else []:
            if not (self.frames.root / f"{path.stem}.jpg").is_file():
                path.unlink(missing_ok=True)
        return removed


def sample_labels(root: Path, include_parts: bool = True) -> LabelSet:
    """Pre-annotations of every kept frame: classed defects, anomalies, and parts."""
    classes = [*DEFECT_CLASSES, ANOMALY_CLASS] + ([PART_CLASS] if include_parts else [])
    images = []
    for path in sorted((Path(root) / "predictions").glob("*.json")):
        obs = PartObservations.model_validate(json.loads(path.read_text())["observation"])
        objects = []
        for part in obs.parts:
            if include_parts:
                objects.append(LabelObject(label=PART_CLASS, box=part.box))
            objects += [LabelObject(label=d.defect_class, box=d.box) for d in part.defects]
        images.append(
            ImageLabels(
                file_name=f"{path.stem}.jpg",
                width=obs.frame.width,
                height=obs.frame.height,
                objects=objects,
            )
        )
    return LabelSet(classes=classes, images=images)
