"""Train a classifier with the user's classes on a dataset version: transfer learning on the
ImageNet EfficientNet-Lite0 the project ships (``visionline.models.export.load_pretrained``).

The backbone stays frozen: its pooled 1280-d features of each training image are computed
once, with those of ``augment_copies`` copies of it under the project's nuisance factors
(``nuisance_images.augment``), so robustness is trained on the user's real images; a linear
head (or a small MLP) learns on them in seconds. The result is one ONNX graph, backbone and
head, with the classify contract of ``efficientnet_lite0`` (``image``: RGB uint8 NHWC
224x224, ``logits``), installed as a new numbered version folder: a candidate, served only
once ``visionline models promote`` serves it.

Seeded throughout: the split, the augmentation and the head's initialisation and batches come
from ``seed``, and torch runs deterministic CPU kernels, so the same seed gives the same model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from visionline.training import nuisance_images

FEATURES = 1280  # EfficientNet-Lite0's pooled features
Advance = Callable[[int], None]  # a progress display's "this many more done"
CACHE_FORMAT = "1"  # bump when the features or the augmentation change


@dataclass(frozen=True)
class ClassifierSettings:
    epochs: int = 60
    seed: int = 7
    augment_copies: int = 4  # nuisance copies of each training image (features pre-computed)
    augment_rate: float = 0.35  # chance of each nuisance factor in a copy
    heldout_fraction: float = 0.2  # when the dataset has no val/test split
    hidden: int = 0  # 0: a linear head; else the width of an MLP's hidden layer
    learning_rate: float = 3e-3
    weight_decay: float = 1e-3
    batch: int = 64  # the head's mini-batch
    backbone_batch: int = 16


class Features(nn.Module):
    """uint8 RGB NHWC -> EfficientNet-Lite0's pooled features [N, 1280], frozen."""

    def __init__(self) -> None:
        super().__init__()
        from visionline.models.export import load_pretrained

        self.net: Any = load_pretrained().net  # efficientnet_lite_pytorch's, untyped
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        self.eval()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # The normalisation the TF-Lite weights were trained with (as the classify model).
        x = (image.permute(0, 3, 1, 2).to(torch.float32) - 127.0) / 128.0
        return self.net.extract_features(x).mean(dim=(2, 3))


def make_head(classes: int, hidden: int) -> nn.Module:
    if hidden <= 0:
        return nn.Linear(FEATURES, classes)
    return nn.Sequential(nn.Linear(FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, classes))


class Classifier(nn.Module):
    """One graph for Triton: the frozen backbone (``backbone.``, left out of learned.npz) and
    the trained head."""

    def __init__(self, backbone: Features, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(image))


def extract(
    backbone: Features, images: np.ndarray, batch: int, advance: Advance | None = None
) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + batch]))
            out.append(backbone(chunk).numpy())
            if advance is not None:
                advance(len(chunk))
    return np.concatenate(out) if out else np.zeros((0, FEATURES), np.float32)


def augmented_copies(
    images: np.ndarray, keys: list[str], copy: int, settings, factors: tuple[str, ...] | None = None
) -> np.ndarray:
    """Copy number ``copy`` of every image under random nuisances (of ``factors``, default all),
    seeded per image and copy (by the image's sha256: the same image gets the same copy
    whatever else is in the set)."""
    out = []
    for image, key in zip(images, keys, strict=True):
        rng = np.random.default_rng([settings.seed, copy, int(key[:12], 16)])
        out.append(nuisance_images.augment(image, rng, settings.augment_rate, factors))
    return np.stack(out)


def training_features(
    backbone: Features,
    images: np.ndarray,
    keys: list[str],
    settings: ClassifierSettings,
    advance: Advance | None = None,
) -> np.ndarray:
    """[copies + 1, N, 1280]: the clean images' features, then each augmented copy's."""
    batch = settings.backbone_batch
    layers = [extract(backbone, images, batch, advance)]
    for copy in range(settings.augment_copies):
        layers.append(
            extract(backbone, augmented_copies(images, keys, copy, settings), batch, advance)
        )
    return np.stack(layers)


def cache_key(keys: list[str], settings: ClassifierSettings) -> str:
    """What the features depend on: the images, the augmentation and the backbone's weights."""
    from visionline.models.export import weights_path

    text = "|".join(
        [
            CACHE_FORMAT,
            *keys,
            str(settings.seed),
            str(settings.augment_copies),
            str(settings.augment_rate),
            weights_path().name,
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cached_features(
    cache_dir: Path | None,
    backbone: Features,
    images: np.ndarray,
    keys: list[str],
    settings: ClassifierSettings,
    advance: Advance | None = None,
) -> tuple[np.ndarray, bool]:
    """``training_features``, from ``cache_dir`` when computed before; (features, was cached)."""
    path = cache_dir / f"{cache_key(keys, settings)}.npy" if cache_dir else None
    if path is not None and path.is_file():
        return np.load(path), True
    features = training_features(backbone, images, keys, settings, advance)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial.npy")
        np.save(partial, features)
        partial.replace(path)
    return features, False


def class_weights(labels: np.ndarray, classes: int) -> torch.Tensor:
    """Inverse class frequency (mean 1): a rare class counts as much as a common one."""
    counts = np.bincount(labels, minlength=classes).astype(np.float32)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / classes, 0.0)
    return torch.from_numpy(weights.astype(np.float32))


def fit_head(
    features: np.ndarray,
    labels: np.ndarray,
    classes: int,
    settings: ClassifierSettings,
    advance: Advance | None = None,
) -> tuple[nn.Module, float]:
    """Train the head on [copies + 1, N, 1280] features; returns it and its final loss."""
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    x = torch.from_numpy(features.reshape(-1, FEATURES).astype(np.float32))
    y = torch.from_numpy(np.tile(labels, features.shape[0]))
    head = make_head(classes, settings.hidden)
    optimiser = torch.optim.AdamW(
        head.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(labels, classes))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(1, settings.epochs))
    loss_value = float("nan")
    for _ in range(settings.epochs):
        total, seen = 0.0, 0
        for index in torch.randperm(len(x), generator=generator).split(settings.batch):
            optimiser.zero_grad()
            loss = loss_fn(head(x[index]), y[index])
            loss.backward()
            optimiser.step()
            total, seen = total + float(loss.detach()) * len(index), seen + len(index)
        schedule.step()
        loss_value = total / max(1, seen)
        if advance is not None:
            advance(1)
    return head.eval(), loss_value


def train_accuracy(head: nn.Module, features: np.ndarray, labels: np.ndarray) -> float:
    """On the clean training images (the first layer of the features)."""
    with torch.inference_mode():
        predicted = head(torch.from_numpy(features[0].astype(np.float32))).argmax(1).numpy()
    return float((predicted == labels).mean()) if len(labels) else 0.0


def settings_dict(settings: ClassifierSettings) -> dict:
    return asdict(settings)
