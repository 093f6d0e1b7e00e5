"""``part_crops``: the anomaly model and the defect detector on one backbone pass per crop.

Both models run the same frozen ImageNet backbone on the same crop; served apart, each crop
pays for it twice. ``part_crops`` is one ONNX graph with the backbone once and both heads
(PatchCore's nearest-neighbour search, the defect head), built from the learned weights of a
version of each (their ``learned.npz``), so its outputs are theirs to the last bit.

It is derived, not trained: the registry still versions, evaluates and promotes
``part_anomaly`` and ``defect_detector``. Each version of ``part_crops`` records the pair it
was built from in ``metadata.json`` and answers it with every crop (``source_versions``), so
the inspect worker reports the versions that really ran, and uses ``part_crops`` only while
that pair is the one Triton serves (else it asks the two models, as before).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from visionline.inspection.crop_pair import built_from, served_pair, source_digests
from visionline.inspection.vision import (
    CROP,
    DEFECT_DETECTOR,
    PART_ANOMALY,
    PART_CROPS,
    SOURCE_VERSIONS,
)
from visionline.model_registry.versions import next_version
from visionline.training.backbone import Backbone, stride8
from visionline.training.patchcore import PatchCore
from visionline.training.serving import (
    LEARNED,
    TensorSpec,
    config_pbtxt,
    export_version,
)

CROP_MODELS_DOC = f"""
part_crops: part_anomaly and defect_detector on one backbone pass per {CROP}x{CROP} part crop
(visionline/training/crop_models.py): their outputs, and source_versions, the versions of the two
it was built from. Derived from them by `make models` and by promotion; not trained.
"""


class CropModels(nn.Module):
    """uint8 NHWC crops -> the anomaly model's and the defect detector's outputs, and the pair
    of versions they came from."""

    sources: torch.Tensor

    def __init__(self, anomaly: PatchCore, defect_head: nn.Module, sources: tuple[int, int]):
        super().__init__()
        self.backbone, self.anomaly, self.head = anomaly.backbone, anomaly, defect_head
        self.register_buffer("sources", torch.tensor(sources, dtype=torch.int64))

    def forward(self, crop: torch.Tensor) -> list[torch.Tensor]:
        f4, f8, f16 = self.backbone(crop)
        anomaly_map, anomaly_score = self.anomaly.from_features(f8, f16)
        heads = self.head(stride8(f4, f8, f16))
        # Broadcast on a tensor of the batch: len(crop) would be traced as a constant.
        sources = torch.zeros_like(anomaly_score, dtype=torch.int64)[:, None] + self.sources
        return [anomaly_map, anomaly_score, *heads, sources]


def serving_specs() -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    from visionline.training.fit import SERVING

    anomaly, defect = SERVING[PART_ANOMALY], SERVING[DEFECT_DETECTOR]
    outputs = (*anomaly.outputs, *defect.outputs, TensorSpec(SOURCE_VERSIONS, "TYPE_INT64", (2,)))
    return anomaly.inputs, outputs


def _learned(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / LEARNED) as npz:
        return {key: npz[key] for key in npz.files}


def build_part_crops(
    repository: Path, anomaly_version: int, defect_version: int, backbone: Backbone | None = None
) -> Path:
    """A new version of ``part_crops`` from these versions of the two models; its folder."""
    from visionline.training.fit import PartDetectorNet, build_model

    backbone = backbone or Backbone()
    anomaly_dir = repository / PART_ANOMALY / str(anomaly_version)
    defect_dir = repository / DEFECT_DETECTOR / str(defect_version)
    anomaly = build_model(PART_ANOMALY, backbone, _learned(anomaly_dir))
    defect = build_model(DEFECT_DETECTOR, backbone, _learned(defect_dir))
    assert isinstance(anomaly, PatchCore) and isinstance(defect, PartDetectorNet)
    module = CropModels(anomaly, defect.head, (anomaly_version, defect_version)).eval()
    inputs, outputs = serving_specs()
    meta = {
        "model": PART_CROPS,
        "sources": {PART_ANOMALY: anomaly_version, DEFECT_DETECTOR: defect_version},
        "source_digests": source_digests(repository, (anomaly_version, defect_version)),
    }
    config = config_pbtxt(PART_CROPS, inputs, outputs, 16, (8, 16), CROP_MODELS_DOC)
    example = np.zeros((2, CROP, CROP, 3), np.uint8)
    version = next_version(repository / PART_CROPS)
    return export_version(
        module, example, repository / PART_CROPS, version, inputs, outputs, meta, config
    )


def ensure_part_crops(repository: Path, backbone: Backbone | None = None) -> tuple[int, bool]:
    """``part_crops`` for the pair served now, with the weights it holds now: (its version,
    whether it was built now). Raises FileNotFoundError when either model has no version."""
    pair = served_pair(repository)
    if pair is None:
        raise FileNotFoundError(f"{repository}: part_anomaly or defect_detector has no version")
    version = built_from(repository, pair)
    if version is not None:
        return version, False
    folder = build_part_crops(repository, *pair, backbone=backbone)
    return int(folder.name), True


def refresh_part_crops(control, repository: Path) -> int | None:
    """After a promotion of either crop model: ``part_crops`` for the pair served now, loaded
    by Triton (``control``: the model-control client). Its new version, None if none was needed."""
    version, built = ensure_part_crops(repository)
    if not built:
        return None
    control.load_model(PART_CROPS)
    return version
