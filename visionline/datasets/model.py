"""The neutral dataset every format reads into and writes from, and its content address.

A dataset is a task (classification: one label per image; detection: boxes), its classes
(sorted, so that the order a format happens to list them in does not change the version), and
its images, each with the sha256 of its bytes, its size, its split and its labels. Boxes are
``[x0, y0, x1, y1]`` in pixels with the end as an edge, rounded to a tenth of a pixel: YOLO keeps
five decimals of the image's width, so a box read back from YOLO lands on the same tenth.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict

Task = Literal["classification", "detection"]
TASKS: tuple[str, ...] = ("classification", "detection")
SPLITS: tuple[str, ...] = ("train", "val", "test")
# The names tools give a split folder (Roboflow writes "valid") and the split each one means.
SPLIT_FOLDERS = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
BOX_DECIMALS = 1

FloatBox = tuple[float, float, float, float]


def round_box(box: FloatBox | list[float]) -> FloatBox:
    x0, y0, x1, y1 = (round(float(v), BOX_DECIMALS) + 0.0 for v in box)
    return (x0, y0, x1, y1)


class Box(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    label: str
    box: FloatBox


class DatasetImage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Where the image lies in the dataset folder it came from (kept for export, not addressed).
    file_name: str
    sha256: str
    width: int
    height: int
    split: str = ""  # "" when the dataset has no split folders
    label: str | None = None  # classification
    boxes: list[Box] = []  # detection

    def canonical(self) -> list:
        boxes = sorted([b.label, *round_box(b.box)] for b in self.boxes)
        return [self.sha256, self.split, self.label, boxes]


class Dataset(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: Task
    classes: list[str]
    images: list[DatasetImage]

    def version_id(self) -> str:
        """sha256 over the images' sha256 and the canonical labels: same content, same id,
        whatever the file names, the format or the order the images were listed in."""
        content = {
            "task": self.task,
            "classes": sorted(self.classes),
            "images": sorted(image.canonical() for image in self.images),
        }
        text = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def has_splits(self) -> bool:
        return any(image.split for image in self.images)

    def summary(self) -> dict:
        """Counts per class and per split, and image sizes, as the registry records them."""
        per_class: Counter[str] = Counter()
        for image in self.images:
            per_class.update([image.label] if image.label else [b.label for b in image.boxes])
        per_split = Counter(image.split or "none" for image in self.images)
        return {
            "images": len(self.images),
            "per_class": {name: per_class.get(name, 0) for name in sorted(self.classes)},
            "per_split": dict(sorted(per_split.items())),
            "sizes": image_sizes(self.images),
        }


def image_sizes(images: list[DatasetImage]) -> dict:
    """Smallest, median and largest width and height (each on its own)."""
    if not images:
        return {}
    widths = [image.width for image in images]
    heights = [image.height for image in images]
    return {
        "min": [min(widths), min(heights)],
        "median": [int(statistics.median(widths)), int(statistics.median(heights))],
        "max": [max(widths), max(heights)],
    }
