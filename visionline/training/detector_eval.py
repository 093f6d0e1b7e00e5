"""Evaluate a trained detector version on a dataset version's held-out images, as Triton
serves it: model.onnx run with ONNX Runtime on the letterboxed images, decoded by
``detector.decode``. Figures (``detection_metrics``) are in the letterboxed input's pixels:
IoU does not change under the uniform scale back to the image's.

The robustness card: mAP on the same images under each nuisance factor at three strengths
(``nuisance_images.STRENGTHS``; the perspective tilt warps the true boxes too), the drop
against clean, and the worst factor: the lowest mAP@0.5 at the strongest strength.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from visionline.datasets.model import Dataset
from visionline.datasets.store import DatasetStore
from visionline.synthetic import nuisance as nz
from visionline.training import classifier_metrics as cm
from visionline.training import detection_metrics as dm
from visionline.training import detector as det
from visionline.training import nuisance_images
from visionline.training.classifier_serving import read_metadata, read_split
from visionline.training.dataset_eval import image_seed

Advance = Callable[[int], None]


def heldout_scenes(folder: Path, dataset: Dataset, store: DatasetStore) -> det.Scenes:
    """The recorded held-out images (or, on another version, those not trained on)."""
    classes = read_metadata(folder)["classes"]
    split = read_split(folder)
    wanted, trained = set(split["heldout"]), set(split["train"])
    chosen = [image for image in dataset.images if image.sha256 in wanted]
    if not chosen:
        chosen = [image for image in dataset.images if image.sha256 not in trained]
    return det.load_scenes(chosen, store, classes)


def predict(model, images: np.ndarray) -> list[dm.Boxes]:
    """Boxes in input pixels of each image, from the ONNX outputs."""
    out = model.run(images, 8)
    return [
        det.decode(out["heatmap"][i], out["size"][i], out["offset"][i]) for i in range(len(images))
    ]


def truths_of(scenes: det.Scenes) -> list[dm.Boxes]:
    return [dm.Boxes.of(b, c) for b, c in zip(scenes.boxes, scenes.classes, strict=True)]


def perturbed(scenes: det.Scenes, factor: str, strength: float) -> tuple[np.ndarray, list]:
    """The images under ``factor`` (seeded per image) and their true boxes, moved by a tilt."""
    images, truths = [], []
    for image, boxes, classes, key in zip(
        scenes.images, scenes.boxes, scenes.classes, scenes.keys, strict=True
    ):
        seed = image_seed(key, factor)
        images.append(nuisance_images.apply(factor, image, strength, seed))
        if factor == "perspective":
            profile = nuisance_images.profile_for(seed)
            boxes = det.warp_boxes(boxes, nz.perspective((det.INPUT, det.INPUT), strength, profile))
        truths.append(dm.Boxes.of(boxes, classes))
    return np.stack(images), truths


def _brief(result: dict, clean: dict) -> dict:
    keys = ("map50", "map50_95", "precision", "recall")
    return {k: result[k] for k in keys} | {f"{k}_drop": clean[k] - result[k] for k in keys[:2]}


def robustness_card(model, scenes, classes, clean, threshold, advance=None) -> dict:
    def cell(factor: str, strength: float) -> dict:
        images, truths = perturbed(scenes, factor, strength)
        result = dm.mean_average_precision(predict(model, images), truths, classes, threshold)
        return _brief(result, clean)

    card = nuisance_images.factor_card(
        cell, lambda c, factor: (c["map50"], c["map50_95"], factor), advance
    )
    card["clean"] = {k: clean[k] for k in ("map50", "map50_95", "precision", "recall")}
    return card


def evaluate(
    folder: Path,
    dataset: Dataset,
    store: DatasetStore,
    *,
    target_precision: float = 0.95,
    score_threshold: float | None = None,
    robustness: bool = True,
    threads: int = 1,
    advance: Advance | None = None,
) -> dict:
    """The eval JSON of detector version ``folder`` on ``dataset``'s held-out images."""
    from visionline.training.serving import OnnxModel

    started = time.perf_counter()
    metadata = read_metadata(folder)
    classes = metadata["classes"]
    threshold = (
        metadata["settings"]["score_threshold"] if score_threshold is None else score_threshold
    )
    scenes = heldout_scenes(folder, dataset, store)
    if not len(scenes.images):
        raise ValueError("no held-out image: nothing to evaluate")
    model = OnnxModel(folder / "model.onnx", threads)
    preds, truths = predict(model, scenes.images), truths_of(scenes)
    result = dm.mean_average_precision(preds, truths, classes, threshold)
    scores, matched = dm.ranked_at50(preds, truths, len(classes))
    result["task"], result["classes"] = "detection", classes
    result["thresholds"] = {
        "target_precision": target_precision,
        "score": "heatmap peak; right = its class at IoU >= 0.5",
        "overall": cm.threshold_for_precision(scores, matched, target_precision),
    }
    if robustness:
        result.update(robustness_card(model, scenes, classes, result, threshold, advance))
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result
