"""The neutral label set every format converts to and from, and its source: a generated dataset.

Boxes are ``[x0, y0, x1, y1]`` in pixels with the end as an edge (a box over pixel columns 3..5
is ``x0=3, x1=6``), floats because tools let annotators place edges between pixels. A mask, when
there is one, is an ``RleMask`` over its own box, as in the generator's ground truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from visionline.synthetic.defects import DEFECT_CLASSES
from visionline.synthetic.truth import FrameTruth, RleMask, tight

PART_CLASS = "part"

FloatBox = tuple[float, float, float, float]


class LabelObject(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str
    box: FloatBox
    mask: RleMask | None = None

    def full_mask(self, size: tuple[int, int]) -> np.ndarray | None:
        """The mask in a full ``(width, height)`` frame, or None."""
        return None if self.mask is None else self.mask.paste(size)


class ImageLabels(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file_name: str
    width: int
    height: int
    objects: list[LabelObject]


class LabelSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    classes: list[str]
    images: list[ImageLabels]

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=1))

    @classmethod
    def read(cls, path: Path) -> LabelSet:
        return cls.model_validate_json(path.read_text())


def mask_to_rle(mask: np.ndarray) -> RleMask | None:
    """A full-frame bool mask as an RLE over its tight box; None when empty."""
    roi = tight(np.asarray(mask, bool))
    return None if roi is None else roi.rle()


def from_generated(dataset: Path, include_parts: bool = False) -> LabelSet:
    """Labels of a ``write_dataset`` folder: its defects, and with ``include_parts`` its parts.

    Parts are left out by default: the classes an annotator corrects are the defect classes, and
    a part box around every defect would double the work for little gain.
    """
    classes = list(DEFECT_CLASSES) + ([PART_CLASS] if include_parts else [])
    images = [
        _image_labels(
            f"{path.stem}.jpg", FrameTruth.model_validate_json(path.read_text()), include_parts
        )
        for path in sorted((dataset / "truth").glob("*.json"))
    ]
    return LabelSet(classes=classes, images=images)


def _image_labels(file_name: str, truth: FrameTruth, include_parts: bool) -> ImageLabels:
    objects: list[LabelObject] = []
    for part in truth.parts:
        if include_parts:
            objects.append(LabelObject(label=PART_CLASS, box=part.box, mask=part.mask))
        for defect in part.defects:
            objects.append(LabelObject(label=defect.defect_class, box=defect.box, mask=defect.mask))
    width, height = truth.resolution
    return ImageLabels(file_name=file_name, width=width, height=height, objects=objects)
