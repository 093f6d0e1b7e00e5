"""``visionline train``: render data, fit the three inspection models, install them for Triton."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from visionline.inspection.vision import (
    ANOMALY_OUTPUTS,
    CROP,
    CROP_INPUT,
    DEFECT_CLASSES,
    DEFECT_DETECTOR,
    DEFECT_OUTPUTS,
    FRAME_H,
    FRAME_INPUT,
    FRAME_W,
    PART_ANOMALY,
    PART_DETECTOR,
    PART_OUTPUTS,
    STRIDE,
)
from visionline.training.backbone import Backbone, extract, stride8
from visionline.training.data import CropSample, Samples, conditions, render
from visionline.training.heads import Head, build_targets, train_head
from visionline.training.patchcore import PatchCore, fit_bank, raw_scores
from visionline.training.serving import (
    FROZEN_PREFIX,
    TensorSpec,
    config_pbtxt,
    export_version,
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 7
    max_strength: float = 0.6  # nuisance strengths seen in training: up to medium-high
    conditions: int = 60  # clean, each factor alone, then random mixes of three
    # Defect detector crops come from these frames (about 15400). The detector is short of data,
    # not of epochs: 1900 -> 3800 crops took replay recall from 0.78 to 0.91; 3800 -> 7700 (and
    # 16 -> 10 epochs) took held-out crop AUROC for missing_hole from 0.933 to 0.960, 7700 ->
    # 15400 (10 -> 8 epochs) from 0.960 to 0.975, while 24 epochs on 3800 crops overfit (any
    # defect 0.989 -> 0.982).
    frames_per_condition: int = 96
    part_frames: int = 600  # the part detector needs fewer: every k-th of those frames
    good_frames_per_condition: int = 8  # defect-free renders for the anomaly memory bank
    defect_rate: float = 0.7  # positives are what the defect detector lacks
    jitter: float = 0.08  # crop boxes moved/scaled like a detector's boxes are
    part_epochs: int = 12
    defect_epochs: int = 8
    bank_size: int = 2000  # 4000 until 2026-12-05: half the search, evaluation within 1.5 points
    bank_patches: int = 150_000  # patches the coreset is chosen from
    threads: int = 2


class PartDetectorNet(nn.Module):
    def __init__(self, backbone: Backbone, head: Head) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, frame: torch.Tensor) -> list[torch.Tensor]:
        return self.head(stride8(*self.backbone(frame)))


DefectDetectorNet = PartDetectorNet  # same wiring: backbone, stride-8 features, head


FRAME_GRID = (FRAME_H // STRIDE, FRAME_W // STRIDE)
CROP_GRID = (CROP // STRIDE, CROP // STRIDE)


@dataclass(frozen=True)
class Serving:
    """How Triton serves a model: its tensors, its batching and the note atop config.pbtxt."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch: int
    preferred: tuple[int, ...]
    doc: str

    def config(self, name: str) -> str:
        specs = (self.inputs, self.outputs, self.max_batch, self.preferred, self.doc)
        return config_pbtxt(name, *specs)


def install(
    module: nn.Module, name: str, example: np.ndarray, repository: Path, version: int, meta: dict
) -> Path:
    """Export ``module`` as version ``version`` of model ``name``, with its serving config."""
    s = SERVING[name]
    specs = (s.inputs, s.outputs, meta, s.config(name))
    return export_version(module, example, repository / name, version, *specs)


def part_head(seed: int | None = None) -> Head:
    """A new part detector head; with ``seed``, its initial weights come from it."""
    return _seeded(seed, lambda: Head(classes=1, offset=True, mask=False))


def _seeded(seed: int | None, make: Callable[[], Head]) -> Head:
    # torch's global generator is not seeded per process here: an unseeded head started from
    # other weights on every run, so the same command trained another part detector.
    if seed is not None:
        torch.manual_seed(seed)
    return make()


def build_model(name: str, backbone: Backbone, learned: Mapping[str, np.ndarray]) -> nn.Module:
    """Model ``name`` on ``backbone`` with the weights training learned (``learned_state`` of a
    trained one): the same module training exported, so the same ONNX graph."""
    if name == PART_ANOMALY:
        module: nn.Module = PatchCore(backbone, torch.from_numpy(np.asarray(learned["bank"])))
    else:
        module = PartDetectorNet(backbone, part_head() if name == PART_DETECTOR else defect_head())
    state = {key: torch.from_numpy(np.asarray(value)) for key, value in learned.items()}
    missing, unexpected = module.load_state_dict(state, strict=False)
    wrong = [k for k in missing if not k.startswith(FROZEN_PREFIX)] + list(unexpected)
    if wrong:
        raise ValueError(f"{name}: the learned weights do not fit the model: {wrong[:5]}")
    return module.eval()


def train_all(
    repository: Path,
    version: int,
    config: TrainConfig = TrainConfig(),
    log: Log = print,
    only: set[str] | None = None,
) -> dict:
    """Fit and install the models named in ``only`` (all three when None); a summary."""
    torch.set_num_threads(config.threads)
    only = only or {PART_DETECTOR, PART_ANOMALY, DEFECT_DETECTOR}
    backbone, summary = Backbone(), {"config": asdict(config), "version": version}
    started = time.perf_counter()
    if only & {PART_DETECTOR, DEFECT_DETECTOR}:
        t = time.perf_counter()
        train = render(
            config.seed,
            list(conditions(config.max_strength, config.conditions, config.seed)),
            config.frames_per_condition,
            config.defect_rate,
            config.jitter,
        )
        log(
            f"rendered {len(train.frames)} frames, {len(train.crops)} crops "
            f"({time.perf_counter() - t:.0f} s)"
        )
        if PART_DETECTOR in only:
            summary[PART_DETECTOR] = fit_part_detector(
                backbone, train, repository, version, config, log
            )
        if DEFECT_DETECTOR in only:
            summary[DEFECT_DETECTOR] = fit_defect_detector(
                backbone, train, repository, version, config, log
            )
    if PART_ANOMALY in only:
        summary[PART_ANOMALY] = fit_anomaly(backbone, repository, version, config, log)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    return summary


def fit_part_detector(
    backbone: Backbone, data: Samples, repository: Path, version: int, config: TrainConfig, log: Log
) -> dict:
    t = time.perf_counter()
    frames = data.frames[:: max(1, len(data.frames) // config.part_frames)]
    images = np.stack([f.image for f in frames])
    features = extract(backbone, images)
    log(f"part detector: features of {len(images)} frames ({time.perf_counter() - t:.0f} s)")
    boxes = [f.boxes for f in frames]
    targets = build_targets(boxes, [[0] * len(b) for b in boxes], 1, FRAME_GRID)
    head = part_head(config.seed)
    history = train_head(head, features, targets, config.part_epochs, config.seed, log=log)
    seconds = round(time.perf_counter() - t, 1)
    meta = {
        "model": PART_DETECTOR,
        "frames": len(images),
        "loss": history,
        "seconds": seconds,
        "config": asdict(config),
    }
    install(PartDetectorNet(backbone, head), PART_DETECTOR, images[:2], repository, version, meta)
    log(f"part detector: version {version} installed ({seconds} s)")
    return {"frames": len(images), "final_loss": history[-1], "seconds": seconds}


# Dilated: context of the whole part (see Head); (1, 2, 4) took mAP@0.5 from 0.49 to 0.56, and
# dilation 8 (a cell sees +-120 px: the next bolt hole) took held-out crop AUROC for
# missing_hole from 0.909 to 0.933, any defect from 0.975 to 0.989, on the same data.
DEFECT_HEAD: dict[str, Any] = {"width": 96, "dilations": (1, 2, 4, 8)}


def defect_head(seed: int | None = None) -> Head:
    """A new defect detector head; with ``seed``, its initial weights come from it."""
    classes = len(DEFECT_CLASSES)
    return _seeded(seed, lambda: Head(classes=classes, offset=False, mask=True, **DEFECT_HEAD))


def head_from_onnx(path: Path, head: Head) -> Head:
    """``head`` with the weights of an exported detector's head (they keep their names in the
    ONNX graph); a detector of another shape fails here rather than training garbage."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    state = {
        i.name.removeprefix("head."): torch.from_numpy(numpy_helper.to_array(i).copy())
        for i in graph.initializer
        if i.name.startswith("head.")
    }
    head.load_state_dict(state)
    return head


def fit_defect_detector(
    backbone: Backbone, data: Samples, repository: Path, version: int, config: TrainConfig, log: Log
) -> dict:
    """A new defect detector on ``data``'s crops."""
    return _fit_defect_head(
        backbone,
        data.crops,
        defect_head(config.seed),
        repository,
        version,
        config.defect_epochs,
        config,
        log,
    )


def fine_tune_defect_detector(
    backbone: Backbone,
    crops: list[CropSample],
    parent: Path,
    repository: Path,
    version: int,
    config: TrainConfig,
    log: Log,
    epochs: int = 4,
    lr: float = 5e-4,
) -> dict:
    """The detector at ``parent`` (a model.onnx), trained further on ``crops``: minutes, not
    the quarter hour of a new one, and it starts from everything the parent knows."""
    head = head_from_onnx(parent, defect_head())
    return _fit_defect_head(
        backbone, crops, head, repository, version, epochs, config, log, lr=lr, parent=str(parent)
    )


def _fit_defect_head(
    backbone: Backbone,
    crop_samples: list[CropSample],
    head: Head,
    repository: Path,
    version: int,
    epochs: int,
    config: TrainConfig,
    log: Log,
    lr: float = 2e-3,
    parent: str | None = None,
) -> dict:
    t = time.perf_counter()
    crops = np.stack([c.image for c in crop_samples])
    features = extract(backbone, crops)
    log(f"defect detector: features of {len(crops)} crops ({time.perf_counter() - t:.0f} s)")
    boxes, classes = [c.boxes for c in crop_samples], [c.classes for c in crop_samples]
    masks = [c.mask for c in crop_samples]
    targets = build_targets(boxes, classes, len(DEFECT_CLASSES), CROP_GRID, masks)
    history = train_head(head, features, targets, epochs, config.seed, lr=lr, log=log)
    seconds = round(time.perf_counter() - t, 1)
    meta = {
        "model": DEFECT_DETECTOR,
        "crops": len(crops),
        "classes": list(DEFECT_CLASSES),
        "defective_crops": sum(c.defective for c in crop_samples),
        "loss": history,
        "seconds": seconds,
        "config": asdict(config),
        "fine_tuned_from": parent,
        "epochs": epochs,
        "lr": lr,
    }
    net = DefectDetectorNet(backbone, head)
    install(net, DEFECT_DETECTOR, crops[:2], repository, version, meta)
    log(f"defect detector: version {version} installed ({seconds} s)")
    return {"crops": len(crops), "final_loss": history[-1], "seconds": seconds}


def fit_anomaly(
    backbone: Backbone, repository: Path, version: int, config: TrainConfig, log: Log
) -> dict:
    t = time.perf_counter()
    conds = list(conditions(config.max_strength, config.conditions, config.seed + 1))
    good = render(
        config.seed + 1,
        conds,
        config.good_frames_per_condition,
        0.0,
        config.jitter,
        clean_parts=True,
    )
    crops = np.stack([c.image for c in good.crops])
    rng = np.random.default_rng(config.seed)
    per_crop = max(1, config.bank_patches // len(crops))
    bank = fit_bank(backbone, crops, config.bank_size, config.seed, sample=per_crop, rng=rng)
    log(
        f"anomaly: bank of {len(bank)} patches from {len(crops)} good crops "
        f"({time.perf_counter() - t:.0f} s)"
    )
    model = PatchCore(backbone, bank)
    held_out = render(config.seed + 2, conds[: config.conditions // 2], 6, 0.5, config.jitter)
    del good
    _, scores = raw_scores(model, np.stack([c.image for c in held_out.crops]))
    bad = np.array([c.defective for c in held_out.crops])
    calibration = model.calibrate(scores[~bad], scores[bad])
    log(f"anomaly: calibrated on {len(bad)} held-out crops: {calibration}")
    seconds = round(time.perf_counter() - t, 1)
    meta = {
        "model": PART_ANOMALY,
        "good_crops": len(crops),
        "bank": len(bank),
        "calibration": calibration,
        "seconds": seconds,
        "config": asdict(config),
    }
    install(model, PART_ANOMALY, crops[:2], repository, version, meta)
    log(f"anomaly: version {version} installed ({seconds} s)")
    return {"good_crops": len(crops), "bank": len(bank), **calibration, "seconds": seconds}


PART_DOC = f"""
part_detector: finds parts on the belt. Input: the frame letterboxed into {FRAME_W}x{FRAME_H},
RGB uint8 (visionline.inspection.vision.frame_tensor). Outputs on the stride-8 grid: a
part-centre heatmap, log(box size / 8) and the centre's offset within its cell
(vision.decode_parts).
"""
ANOMALY_DOC = f"""
part_anomaly: PatchCore on a {CROP}x{CROP} part crop (vision.crop_tensors), trained on good parts
only. Outputs: a patch anomaly map ({CROP // STRIDE}x{CROP // STRIDE}) and an image score, both
calibrated so that 0.5 is the held-out decision threshold.
"""
DEFECT_DOC = f"""
defect_detector: boxes and classes of defects on a {CROP}x{CROP} part crop. Outputs on the stride-8
grid: heatmaps of scratch, crack, stain, missing_hole, deformation; log(box size / 8); and a
defect mask (vision.decode_crop).
"""

_CROP_IN = (TensorSpec(CROP_INPUT, "TYPE_UINT8", (CROP, CROP, 3)),)
SERVING = {
    PART_DETECTOR: Serving(
        (TensorSpec(FRAME_INPUT, "TYPE_UINT8", (FRAME_H, FRAME_W, 3)),),
        (
            TensorSpec(PART_OUTPUTS[0], "TYPE_FP32", (1, *FRAME_GRID)),
            TensorSpec(PART_OUTPUTS[1], "TYPE_FP32", (2, *FRAME_GRID)),
            TensorSpec(PART_OUTPUTS[2], "TYPE_FP32", (2, *FRAME_GRID)),
        ),
        8,
        (4, 8),
        PART_DOC,
    ),
    PART_ANOMALY: Serving(
        _CROP_IN,
        (
            TensorSpec(ANOMALY_OUTPUTS[0], "TYPE_FP32", CROP_GRID),
            TensorSpec(ANOMALY_OUTPUTS[1], "TYPE_FP32", ()),
        ),
        16,
        (8, 16),
        ANOMALY_DOC,
    ),
    DEFECT_DETECTOR: Serving(
        _CROP_IN,
        (
            TensorSpec(DEFECT_OUTPUTS[0], "TYPE_FP32", (len(DEFECT_CLASSES), *CROP_GRID)),
            TensorSpec(DEFECT_OUTPUTS[1], "TYPE_FP32", (2, *CROP_GRID)),
            TensorSpec(DEFECT_OUTPUTS[2], "TYPE_FP32", CROP_GRID),
        ),
        16,
        (8, 16),
        DEFECT_DOC,
    ),
}
