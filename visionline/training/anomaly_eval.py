"""Evaluate a trained anomaly model version on a dataset version's held-out images, as Triton
serves it: model.onnx run with ONNX Runtime on the prepared images.

Scored: the held-out good images and every image of the other classes (the anomalies, never
trained on). Figures: image AUROC (when there are anomalies), the false-positive rate (good
images above the threshold) and recall (anomalies above it) at the version's threshold, and a
threshold suggestion: the one that meets the target false-positive rate on these good images.

The robustness card: the same figures on the same images under each nuisance factor at three
strengths (``nuisance_images.STRENGTHS``), the change against clean, and the worst factor: the
lowest AUROC at the strongest strength (with no anomaly: the highest false-positive rate),
then the highest false-positive rate, then the highest mean good score relative to the
threshold (which still ranks factors that flag no good image).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visionline.datasets.model import Dataset
from visionline.datasets.store import DatasetStore
from visionline.inspection.metrics import roc_auc
from visionline.training import nuisance_images
from visionline.training.anomaly_job import OUTPUTS, threshold_at
from visionline.training.classifier_data import heldout_of, load_images
from visionline.training.classifier_serving import read_metadata, read_split
from visionline.training.dataset_eval import perturb

Advance = Callable[[int], None]


@dataclass
class Scored:
    images: np.ndarray  # prepared, [N, 224, 224, 3] uint8
    anomalous: np.ndarray  # bool: not of the good class
    keys: list[str]  # sha256 of each image


def load_heldout(folder: Path, dataset: Dataset, store: DatasetStore) -> Scored:
    """The recorded held-out good images and anomalies (on another dataset version: every
    image the training did not see)."""
    good = read_metadata(folder)["good_class"]
    split = read_split(folder)
    chosen = heldout_of(dataset, split["heldout"], set(split["train"]))
    return Scored(
        images=load_images(chosen, store),
        anomalous=np.array([image.label != good for image in chosen], bool),
        keys=[image.sha256 for image in chosen],
    )


def scores_of(model, images: np.ndarray) -> np.ndarray:
    return model.run(images, 16)[OUTPUTS[0]].astype(np.float64)


def figures(scores: np.ndarray, anomalous: np.ndarray, threshold: float) -> dict:
    """AUROC (None without anomalies or without good images), false-positive rate and recall
    at ``threshold`` (None without the images they count), mean good score / threshold."""
    good, bad = scores[~anomalous], scores[anomalous]
    both = len(good) > 0 and len(bad) > 0
    return {
        "auroc": roc_auc(scores, anomalous) if both else None,
        "fpr": float((good > threshold).mean()) if len(good) else None,
        "recall": float((bad > threshold).mean()) if len(bad) else None,
        "good_score": float(good.mean() / threshold) if len(good) else None,
    }


def suggest(scores: np.ndarray, anomalous: np.ndarray, target_fpr: float) -> dict:
    """The threshold that meets ``target_fpr`` on these good images, and its recall."""
    good, bad = scores[~anomalous], scores[anomalous]
    if not len(good):
        return {"target_fpr": target_fpr, "threshold": None, "recall": None}
    threshold = threshold_at(good, target_fpr)
    recall = float((bad > threshold).mean()) if len(bad) else None
    return {"target_fpr": target_fpr, "threshold": threshold, "recall": recall}


def _change(cell: dict, clean: dict) -> dict:
    out = dict(cell)
    for key, sign in (("auroc", 1), ("recall", 1), ("fpr", -1)):
        name = f"{key}_drop" if sign > 0 else f"{key}_rise"
        both = cell[key] is not None and clean[key] is not None
        out[name] = sign * (clean[key] - cell[key]) if both else None
    return out


def _rank(cell: dict, factor: str) -> tuple:
    auroc = 1.0 if cell["auroc"] is None else cell["auroc"]
    return (auroc, -(cell["fpr"] or 0.0), -(cell["good_score"] or 0.0), factor)


def robustness_card(model, held: Scored, threshold: float, clean: dict, advance=None) -> dict:
    """``robustness``: factor -> strength -> figures and their change against clean;
    ``worst_factor`` and its figures at the strongest strength (``worst``); ``clean``."""

    def cell(factor: str, strength: float) -> dict:
        images = perturb(held.images, held.keys, factor, strength)
        return _change(figures(scores_of(model, images), held.anomalous, threshold), clean)

    return nuisance_images.factor_card(cell, _rank, advance) | {"clean": clean}


def evaluate(
    folder: Path,
    dataset: Dataset,
    store: DatasetStore,
    *,
    target_fpr: float | None = None,
    robustness: bool = True,
    threads: int = 1,
    advance: Advance | None = None,
) -> dict:
    """The eval JSON of anomaly version ``folder`` on ``dataset``'s held-out images."""
    from visionline.training.serving import OnnxModel

    started = time.perf_counter()
    metadata = read_metadata(folder)
    threshold = float(metadata["threshold"])
    target = metadata["settings"]["target_fpr"] if target_fpr is None else target_fpr
    held = load_heldout(folder, dataset, store)
    if not len(held.keys):
        raise ValueError("no held-out image: nothing to evaluate")
    model = OnnxModel(folder / "model.onnx", threads)
    scores = scores_of(model, held.images)
    clean = figures(scores, held.anomalous, threshold)
    result: dict = {"task": "anomaly", **clean, "threshold": threshold}
    result.update(
        good=int((~held.anomalous).sum()),
        anomalies=int(held.anomalous.sum()),
        good_class=metadata["good_class"],
        suggested=suggest(scores, held.anomalous, target),
        scores={
            "good": _listed(scores[~held.anomalous]),
            "anomaly": _listed(scores[held.anomalous]),
        },
    )
    if robustness:
        result.update(robustness_card(model, held, threshold, clean, advance))
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def _listed(values: np.ndarray) -> list[float]:
    return [round(float(v), 5) for v in values]
