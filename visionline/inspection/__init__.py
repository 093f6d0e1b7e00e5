"""Synthetic production-line inspection data: conveyor frames with per-pixel ground truth.

``LineGenerator(seed).frame(i)`` gives a BGR frame and its ``FrameTruth``; every frame is a pure
function of (seed, camera, frame index, schedule), so any frame can be rendered on its own.
"""

from visionline.inspection.defects import DEFECT_CLASSES
from visionline.inspection.generator import LineGenerator
from visionline.inspection.parts import PART_KINDS
from visionline.inspection.schedule import Constant, Ramp, Schedule, Step
from visionline.inspection.source import ConveyorSource
from visionline.inspection.truth import DefectTruth, FrameTruth, PartLabel, PartTruth, RleMask

__all__ = [
    "DEFECT_CLASSES",
    "PART_KINDS",
    "Constant",
    "ConveyorSource",
    "DefectTruth",
    "FrameTruth",
    "LineGenerator",
    "PartLabel",
    "PartTruth",
    "Ramp",
    "RleMask",
    "Schedule",
    "Step",
]
