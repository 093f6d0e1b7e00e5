"""The synthetic world: production-line frames with per-pixel ground truth, for training,
evaluation, tests and demos (no worker loads it; ``camera/conveyor.py`` sends it as a camera).

``LineGenerator(seed).frame(i)`` gives a BGR frame and its ``FrameTruth``; every frame is a pure
function of (seed, camera, frame index, schedule), so any frame can be rendered on its own.
"""

from visionline.synthetic.defects import DEFECT_CLASSES
from visionline.synthetic.generator import LineGenerator
from visionline.synthetic.parts import PART_KINDS
from visionline.synthetic.schedule import Constant, Ramp, Schedule, Step
from visionline.synthetic.truth import DefectTruth, FrameTruth, PartLabel, PartTruth, RleMask

__all__ = [
    "DEFECT_CLASSES",
    "PART_KINDS",
    "Constant",
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
