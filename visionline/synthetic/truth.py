"""Ground truth: JSON-serialisable pydantic models, and masks as run-length encodings.

A mask is stored over its own box ``[x0, y0, x1, y1)`` (frame pixels, end exclusive), read
row by row; ``counts`` alternate runs of 0 and 1 and always start with a (maybe empty) 0 run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels, end exclusive
DefectClass = Literal["scratch", "crack", "stain", "missing_hole", "deformation"]


class RleMask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    box: Box
    counts: list[int]

    def decode(self) -> np.ndarray:
        """The mask as a bool array of the box's shape."""
        x0, y0, x1, y1 = self.box
        values = np.arange(len(self.counts)) % 2 == 1
        return np.repeat(values, self.counts).reshape(y1 - y0, x1 - x0)

    def paste(self, size: tuple[int, int]) -> np.ndarray:
        """The mask in a full ``(width, height)`` frame."""
        full = np.zeros((size[1], size[0]), bool)
        x0, y0, x1, y1 = self.box
        full[y0:y1, x0:x1] = self.decode()
        return full


class DefectTruth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    defect_class: DefectClass
    box: Box
    mask: RleMask
    occluded_fraction: float  # of the defect's pixels in the frame, hidden by a foreign object


class PartTruth(BaseModel):
    """One part as seen in one frame; box and mask cover its pixels inside the frame."""

    model_config = ConfigDict(extra="forbid")
    part_id: int
    kind: str
    box: Box
    mask: RleMask
    visible_fraction: float  # of the part's area that lies inside the frame
    occluded_fraction: float  # of its in-frame area hidden by a foreign object
    defective: bool
    defects: list[DefectTruth]  # only those with pixels in the frame


class FrameTruth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    frame_index: int
    t_s: float
    seed: int
    camera: str
    resolution: tuple[int, int]
    strengths: dict[str, float]  # the nuisance strengths applied to this frame
    jpeg_quality: int  # what ``encode`` uses for this frame
    parts: list[PartTruth]


class PartLabel(BaseModel):
    """The decision per physical part, for per-part recall and precision."""

    model_config = ConfigDict(extra="forbid")
    part_id: int
    kind: str
    defective: bool
    classes: list[DefectClass]
    first_frame: int  # first and last frame in which some of it is inside the frame
    last_frame: int


@dataclass(frozen=True)
class RoiMask:
    """A bool mask placed at ``(x0, y0)`` in a frame; may stick out of it."""

    x0: int
    y0: int
    array: np.ndarray

    def clip(self, size: tuple[int, int]) -> RoiMask | None:
        """The part inside a ``(width, height)`` frame, cropped to its pixels; None if empty."""
        h, w = self.array.shape
        cx0, cy0 = max(self.x0, 0), max(self.y0, 0)
        cx1, cy1 = min(self.x0 + w, size[0]), min(self.y0 + h, size[1])
        if cx0 >= cx1 or cy0 >= cy1:
            return None
        crop = self.array[cy0 - self.y0 : cy1 - self.y0, cx0 - self.x0 : cx1 - self.x0]
        return tight(crop, cx0, cy0)

    def full(self, size: tuple[int, int]) -> np.ndarray:
        """Pasted into a full frame (clipped)."""
        clipped = self.clip(size)
        full = np.zeros((size[1], size[0]), bool)
        if clipped is not None:
            h, w = clipped.array.shape
            full[clipped.y0 : clipped.y0 + h, clipped.x0 : clipped.x0 + w] = clipped.array
        return full

    @property
    def box(self) -> Box:
        h, w = self.array.shape
        return self.x0, self.y0, self.x0 + w, self.y0 + h

    def rle(self) -> RleMask:
        flat = self.array.ravel()
        edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        bounds = np.concatenate([[0], edges, [flat.size]])
        counts = np.diff(bounds).tolist()
        if flat.size and flat[0]:
            counts.insert(0, 0)
        return RleMask(box=self.box, counts=counts)


def tight(array: np.ndarray, x0: int = 0, y0: int = 0) -> RoiMask | None:
    """``array`` cropped to its true pixels, offset kept; None when it has none."""
    rows, cols = np.flatnonzero(array.any(1)), np.flatnonzero(array.any(0))
    if rows.size == 0:
        return None
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return RoiMask(x0 + int(c0), y0 + int(r0), array[r0:r1, c0:c1].copy())
