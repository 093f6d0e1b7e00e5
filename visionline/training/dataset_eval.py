"""Evaluate a trained classifier version on a dataset version's held-out images, as Triton
serves it: model.onnx run with ONNX Runtime on the prepared images.

The figures: accuracy, macro F1, per-class precision/recall/F1, the confusion matrix, a score
threshold per class and overall that meets a chosen precision, and the robustness card: the
same figures on the same images under each nuisance factor at three strengths
(``nuisance_images.STRENGTHS``), the drop against clean, and the worst factor: the lowest
macro F1 at the strongest strength, then the lowest accuracy, then the lowest mean
probability of the true class (which still ranks factors when every prediction is right).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visionline.datasets.model import Dataset
from visionline.datasets.store import DatasetStore
from visionline.models.scores import softmax
from visionline.training import classifier_metrics as cm
from visionline.training import nuisance_images
from visionline.training.classifier_data import heldout_of, label_indices, load_images
from visionline.training.classifier_serving import read_metadata, read_split

Advance = Callable[[int], None]


@dataclass
class HeldOut:
    images: np.ndarray  # prepared, [N, 224, 224, 3] uint8
    truth: np.ndarray  # class indices in the model's order
    keys: list[str]  # sha256 of each image
    skipped: int  # held-out images of a class the model does not know


def image_seed(key: str, factor: str) -> int:
    """One perturbation per image and factor, whatever else is evaluated with it."""
    return int(hashlib.sha256(f"{key}:{factor}".encode()).hexdigest()[:12], 16)


def perturb(images: np.ndarray, keys: list[str], factor: str, strength: float) -> np.ndarray:
    """The images under ``factor`` at ``strength``, each seeded by its key (``image_seed``)."""
    return np.stack(
        [
            nuisance_images.apply(factor, image, strength, image_seed(key, factor))
            for image, key in zip(images, keys, strict=True)
        ]
    )


def run_onnx(model, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """Logits of an ``OnnxModel`` (``visionline.training.serving``) for the images."""
    return model.run(images, batch)["logits"]


def load_heldout(folder: Path, dataset: Dataset, store: DatasetStore) -> HeldOut:
    """The recorded held-out images of the version trained on (or, for another version, the
    images not trained on), with the classes the model knows."""
    classes = read_metadata(folder)["classes"]
    split = read_split(folder)
    chosen = heldout_of(dataset, split["heldout"], set(split["train"]))
    known = [image for image in chosen if image.label in classes]
    return HeldOut(
        images=load_images(known, store),
        truth=label_indices(known, classes),
        keys=[image.sha256 for image in known],
        skipped=len(chosen) - len(known),
    )


def figures(logits: np.ndarray, truth: np.ndarray, classes: list[str]) -> dict:
    """The summary, and the mean probability of the true class: it tells apart factors that
    leave every prediction right but shake the model's confidence."""
    result = cm.summary(truth, logits.argmax(axis=1), classes)
    true_scores = softmax(logits)[np.arange(len(truth)), truth]
    result["true_class_score"] = float(true_scores.mean()) if len(truth) else 0.0
    return result


def robustness_card(
    model,
    held: HeldOut,
    classes: list[str],
    clean: dict,
    advance: Advance | None = None,
) -> dict:
    """``robustness``: factor -> strength -> {accuracy, macro_f1, their drops against clean};
    ``worst_factor`` and its figures at the strongest strength (``worst``); ``clean``."""

    def cell(factor: str, strength: float) -> dict:
        images = perturb(held.images, held.keys, factor, strength)
        return _brief(figures(run_onnx(model, images), held.truth, classes), clean)

    card = nuisance_images.factor_card(cell, _rank, advance)
    card["clean"] = {k: clean[k] for k in ("accuracy", "macro_f1", "true_class_score")}
    return card


def _rank(cell: dict, factor: str) -> tuple:
    return (cell["macro_f1"], cell["accuracy"], cell["true_class_score"], factor)


def _brief(result: dict, clean: dict) -> dict:
    return {
        "accuracy": result["accuracy"],
        "macro_f1": result["macro_f1"],
        "true_class_score": result["true_class_score"],
        "accuracy_drop": clean["accuracy"] - result["accuracy"],
        "macro_f1_drop": clean["macro_f1"] - result["macro_f1"],
        "true_class_score_drop": clean["true_class_score"] - result["true_class_score"],
    }


def evaluate(
    folder: Path,
    dataset: Dataset,
    store: DatasetStore,
    *,
    target_precision: float = 0.95,
    robustness: bool = True,
    threads: int = 1,
    advance: Advance | None = None,
) -> dict:
    """The eval JSON of version ``folder`` on ``dataset``'s held-out images."""
    started = time.perf_counter()
    metadata = read_metadata(folder)
    classes = metadata["classes"]
    held = load_heldout(folder, dataset, store)
    if not len(held.truth):
        raise ValueError("no held-out image of a class this model knows: nothing to evaluate")
    from visionline.training.serving import OnnxModel

    model = OnnxModel(folder / "model.onnx", threads)
    logits = run_onnx(model, held.images)
    result = figures(logits, held.truth, classes)
    result.update(classes=classes, skipped_unknown_class=held.skipped)
    result["thresholds"] = cm.suggest_thresholds(
        softmax(logits), held.truth, classes, target_precision
    )
    if robustness:
        result.update(robustness_card(model, held, classes, result, advance))
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result
