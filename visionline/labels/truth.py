"""The line generator's ground truth of a frame as a ``LabelFeedback`` message."""

from __future__ import annotations

import cv2
import numpy as np

from visionline.messages import LabelFeedback, LabelledDefect, LabelledPart
from visionline.synthetic.truth import DefectTruth, FrameTruth, PartTruth, RleMask


def label_id_of(frame_id: str, source: str = "generator") -> str:
    """Stable for one labelling of one frame: a redelivered label is stored once."""
    return f"{source}:{frame_id}"


def mask_polygon(mask: RleMask) -> list[tuple[float, float]] | None:
    """Outline of the mask's largest blob in frame pixels (the centres of its edge pixels, as
    ``cv2.findContours`` gives them); None when the mask is empty.

    A blob one pixel wide (a thin scratch) has no area between pixel centres: its outline is
    then the rectangle around its pixels' outer edges."""
    array = np.ascontiguousarray(mask.decode(), dtype=np.uint8)
    contours, _ = cv2.findContours(array, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    largest = max(contours, key=lambda c: (cv2.contourArea(c), len(c)))
    x0, y0 = mask.box[:2]
    if cv2.contourArea(largest) > 0:
        points = largest.reshape(-1, 2).tolist()
    else:
        x, y, w, h = cv2.boundingRect(largest)
        points = [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]
    return [(float(x + x0), float(y + y0)) for x, y in points]


def _defect(d: DefectTruth) -> LabelledDefect:
    return LabelledDefect(
        defect_class=d.defect_class, box=tuple(map(float, d.box)), polygon=mask_polygon(d.mask)
    )


def _part(p: PartTruth) -> LabelledPart:
    # Labels describe the frame: defective when a defect of the part shows in it (one outside
    # the frame, or hidden entirely by a foreign object, cannot be seen in this frame).
    visible = [d for d in p.defects if d.occluded_fraction < 1.0]
    return LabelledPart(
        part_id=str(p.part_id),
        box=tuple(map(float, p.box)),
        defective=bool(visible),
        defects=[_defect(d) for d in visible],
        visible_fraction=p.visible_fraction,
    )


def feedback_from_truth(
    camera_id: str, frame_id: str, captured_at: float, truth: FrameTruth
) -> LabelFeedback:
    """The labels of frame ``frame_id`` as the generator drew it (source ``generator``)."""
    return LabelFeedback(
        label_id=label_id_of(frame_id),
        camera_id=camera_id,
        frame_id=frame_id,
        captured_at=captured_at,
        source="generator",
        parts=[_part(p) for p in truth.parts],
    )
