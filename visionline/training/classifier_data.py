"""A classification dataset version as the classifier sees it: images prepared to the model's
input contract, and the held-out split training leaves alone and evaluation scores.

Images are decoded from the dataset store and prepared as the classify pipeline prepares
frames (RGB uint8, short side to 224, centre crop: ``visionline.models.preprocessing``).

The held-out split is the dataset's own when it has one (``test`` when it has test images,
else ``val``), else a stratified, seeded share of each class; it is recorded by the images'
sha256, so the evaluation scores the very images the training did not see.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import cv2
import numpy as np

from visionline.datasets.model import Dataset, DatasetImage
from visionline.datasets.store import DatasetStore
from visionline.models.preprocessing import resize_center_crop
from visionline.models.spec import IMAGE_SIZE


@dataclass
class Split:
    train: list[DatasetImage]
    heldout: list[DatasetImage]
    source: str  # "dataset:test", "dataset:val" or "seeded"

    def describe(self, seed: int, fraction: float) -> dict:
        info: dict = {"source": self.source, "train": len(self.train)}
        if self.source == "seeded":
            info.update(seed=seed, fraction=fraction, stratified=True)
        info["heldout"] = sorted(image.sha256 for image in self.heldout)
        return info


def labelled(dataset: Dataset) -> list[DatasetImage]:
    if dataset.task != "classification":
        raise ValueError(f"a classifier trains on a classification dataset, not {dataset.task}")
    return [image for image in dataset.images if image.label is not None]


def split_dataset(dataset: Dataset, seed: int, fraction: float) -> Split:
    """The dataset's own held-out split when it has one, else a stratified seeded one."""
    return split_images(labelled(dataset), seed, fraction)


def split_images(images: list[DatasetImage], seed: int, fraction: float) -> Split:
    """``split_dataset`` of some of a dataset's images (an anomaly model's good ones)."""
    for split in ("test", "val"):
        heldout = [image for image in images if image.split == split]
        if heldout:
            train = [image for image in images if image.split != split]
            return Split(train, heldout, f"dataset:{split}")
    return stratified_split(images, seed, fraction)


def stratified_split(images: list[DatasetImage], seed: int, fraction: float) -> Split:
    """``fraction`` of each class held out (at least one image of a class with two or more),
    chosen by ``seed`` from the images sorted by sha256: the listing order does not matter."""
    by_class: dict[str, list[DatasetImage]] = defaultdict(list)
    for image in sorted(images, key=lambda i: i.sha256):
        by_class[str(image.label)].append(image)
    rng = np.random.default_rng([seed, 0x5B1])
    train, heldout = [], []
    for label in sorted(by_class):
        members = by_class[label]
        order = rng.permutation(len(members))
        count = min(len(members) - 1, max(1, round(fraction * len(members))))
        count = count if len(members) > 1 else 0
        heldout += [members[i] for i in order[:count]]
        train += [members[i] for i in order[count:]]
    return Split(train, heldout, "seeded")


def heldout_of(dataset: Dataset, recorded: list[str], trained: set[str]) -> list[DatasetImage]:
    """The images to score: the recorded held-out images when the dataset holds them (the
    version trained on), else every image the training did not see (another version)."""
    images = labelled(dataset)
    wanted = set(recorded)
    chosen = [image for image in images if image.sha256 in wanted]
    if chosen:
        return chosen
    return [image for image in images if image.sha256 not in trained]


def prepare(data: bytes, size: int = IMAGE_SIZE) -> np.ndarray:
    """Encoded image bytes -> RGB uint8 [size, size, 3], as the pipeline prepares frames."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("an image in the store does not decode")
    return resize_center_crop(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)


def load_images(images: list[DatasetImage], store: DatasetStore) -> np.ndarray:
    """The prepared images, stacked [N, 224, 224, 3] uint8."""
    if not images:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    return np.stack([prepare(store.get_blob(image.sha256)) for image in images])


def label_indices(images: list[DatasetImage], classes: list[str]) -> np.ndarray:
    index = {name: k for k, name in enumerate(classes)}
    return np.array([index[str(image.label)] for image in images], np.int64)
