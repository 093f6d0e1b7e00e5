"""Train a detector with the user's classes on a dataset version: the inspection detectors'
recipe (``backbone``, ``heads``) on the user's photographs.

Images of any size are letterboxed into INPUT x INPUT (uniform scale, padding right and
bottom); the frozen ImageNet EfficientNet-Lite0 gives stride-8 features; an anchor-free
CenterNet head (a heatmap per user class, log box size, sub-cell offset; focal loss) learns on
them. Augmented copies move the boxes with the pixels: a horizontal flip, a scale jitter
(zoom about a random point) and the project's nuisance factors (``nuisance_images``), the
perspective tilt with its boxes warped too. The ONNX graph answers the raw maps; ``decode``
turns them into boxes in the image's pixels (peaks, ``vision.box_at``, per-class NMS).

Seeded throughout: the split, each image's copies (by its sha256) and the head's weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from torch import nn

from visionline.datasets.model import Dataset, DatasetImage
from visionline.datasets.store import DatasetStore

# The serving half (letterbox, decoding, NMS) is torch-free, for the detect worker; training
# and evaluation use it as det.decode, det.INPUT, ...
from visionline.models.detectors import (  # noqa: F401
    INPUT,
    INPUT_NAME,
    OUTPUTS,
    decode,
    letterbox,
    nms,
    per_class_nms,
)
from visionline.synthetic import nuisance as nz
from visionline.training import nuisance_images
from visionline.training.backbone import Backbone, stride8
from visionline.training.classifier_data import Split, stratified_split
from visionline.training.heads import Head

GRID = (INPUT // 8, INPUT // 8)  # stride 8
MIN_BOX = 2.0  # pixels of the input: a box cut smaller by a jitter is dropped
Advance = Callable[[int], None]


@dataclass(frozen=True)
class DetectorSettings:
    epochs: int = 40
    seed: int = 7
    augment_copies: int = 4  # augmented copies of each training image
    augment_rate: float = 0.25  # chance of each nuisance factor in a copy
    flip: float = 0.5  # chance of a horizontal flip in a copy
    scale_jitter: float = 0.3  # zoom in [1 - j, 1 + j] about a random point
    heldout_fraction: float = 0.2
    width: int = 64
    dilations: tuple[int, ...] = (1, 2, 4)
    learning_rate: float = 2e-3
    batch: int = 16
    score_threshold: float = 0.3  # the operating point evaluation reports


def settings_dict(settings: DetectorSettings) -> dict:
    return asdict(settings)


@dataclass
class Scenes:
    """Letterboxed images [N, INPUT, INPUT, 3] uint8 with their boxes in input pixels."""

    images: np.ndarray
    boxes: list[np.ndarray]
    classes: list[np.ndarray]
    scales: np.ndarray  # input pixels per image pixel
    keys: list[str]


def detection_split(dataset: Dataset, seed: int, fraction: float) -> Split:
    """The dataset's own test (else val) split, else a seeded share of the images."""
    if dataset.task != "detection":
        raise ValueError(f"a detector trains on a detection dataset, not {dataset.task}")
    images = list(dataset.images)
    for split in ("test", "val"):
        heldout = [image for image in images if image.split == split]
        if heldout:
            return Split([i for i in images if i.split != split], heldout, f"dataset:{split}")
    return stratified_split(images, seed, fraction)  # no labels: one group, seeded


def load_scenes(images: list[DatasetImage], store: DatasetStore, classes: list[str]) -> Scenes:
    index = {name: k for k, name in enumerate(classes)}
    arrays, boxes, labels, scales = [], [], [], []
    for image in images:
        bgr = cv2.imdecode(np.frombuffer(store.get_blob(image.sha256), np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{image.file_name} does not decode")
        array, scale = letterbox(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        known = [b for b in image.boxes if b.label in index]
        arrays.append(array)
        boxes.append(np.array([b.box for b in known], np.float64).reshape(-1, 4) * scale)
        labels.append(np.array([index[b.label] for b in known], np.int64))
        scales.append(scale)
    empty = np.zeros((0, INPUT, INPUT, 3), np.uint8)
    stacked = np.stack(arrays) if arrays else empty
    return Scenes(stacked, boxes, labels, np.array(scales), [i.sha256 for i in images])


def _keep(boxes: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boxes = boxes.clip(0, INPUT)
    ok = ((boxes[:, 2] - boxes[:, 0]) >= MIN_BOX) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_BOX)
    return boxes[ok], classes[ok]


def flip_and_zoom(image, boxes, rng, settings: DetectorSettings):
    """A horizontal flip (by chance) and a zoom about a random point, boxes moved alike."""
    boxes = boxes.copy()
    if rng.random() < settings.flip:
        image = np.ascontiguousarray(image[:, ::-1])
        boxes[:, [0, 2]] = INPUT - boxes[:, [2, 0]]
    zoom = float(rng.uniform(1 - settings.scale_jitter, 1 + settings.scale_jitter))
    cx, cy = rng.uniform(0, INPUT, size=2)
    matrix = np.array([[zoom, 0, cx * (1 - zoom)], [0, zoom, cy * (1 - zoom)]], np.float64)
    image = cv2.warpAffine(image, matrix, (INPUT, INPUT), flags=cv2.INTER_LINEAR)
    boxes = boxes * zoom + np.array([cx, cy, cx, cy]) * (1 - zoom)
    return image, boxes


def warp_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Boxes through a perspective matrix: the bounds of their warped corners."""
    if not len(boxes):
        return boxes
    corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 1, 2).astype(np.float32)
    moved = cv2.perspectiveTransform(corners, matrix.astype(np.float64)).reshape(-1, 4, 2)
    return np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1).astype(np.float64)


def nuisances(image, boxes, rng, rate: float):
    """``nuisance_images.augment`` with the boxes following the perspective tilt."""
    profile = nz.CameraProfile.seeded(rng)
    names = [name for name in nuisance_images.FACTORS if rng.random() < rate]
    for name in names:
        strength = float(rng.uniform(0.1, 1.0))
        if name == "perspective":
            matrix = nz.perspective((INPUT, INPUT), strength, profile)
            image, boxes = nz.warp(image, matrix), warp_boxes(boxes, matrix)
        else:
            image = nuisance_images.FACTORS[name](image, strength, rng, profile)
    return image, boxes


def augmented(scenes: Scenes, copy: int, settings: DetectorSettings) -> Scenes:
    """Copy ``copy`` of every scene, seeded per image (its sha256) and copy."""
    images, boxes, classes = [], [], []
    for image, box, cls, key in zip(
        scenes.images, scenes.boxes, scenes.classes, scenes.keys, strict=True
    ):
        rng = np.random.default_rng([settings.seed, copy, int(key[:12], 16), 0xDE7])
        moved_image, moved = flip_and_zoom(image, box, rng, settings)
        moved_image, moved = nuisances(moved_image, moved, rng, settings.augment_rate)
        kept, kept_classes = _keep(moved, cls)
        images.append(moved_image)
        boxes.append(kept)
        classes.append(kept_classes)
    return Scenes(np.stack(images), boxes, classes, scenes.scales, scenes.keys)


class DetectorNet(nn.Module):
    """One graph for Triton: the frozen backbone (``backbone.``) and the trained head."""

    def __init__(self, backbone: Backbone, head: Head) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self.head(stride8(*self.backbone(image)))


def make_head(classes: int, settings: DetectorSettings) -> Head:
    torch.manual_seed(settings.seed)
    dilations = settings.dilations
    return Head(classes, offset=True, mask=False, width=settings.width, dilations=dilations)


def features_of(backbone: Backbone, images: np.ndarray, advance: Advance | None) -> torch.Tensor:
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), 8):
            chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + 8]))
            out.append(stride8(*backbone(chunk)).to(torch.float16))
            if advance is not None:
                advance(len(chunk))
    return torch.cat(out)
