"""The tracker's part and defect models to and from the public message schemas.

The inspect worker publishes ``ObservedPart``s; the parts worker turns them back into the
``PartDetection``s its tracker takes, and the defects of its verdicts into ``DefectFinding``s.
"""

from __future__ import annotations

from visionline.inspection.tracking import DefectDetection, PartDetection
from visionline.messages import DefectFinding, ObservedPart


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))


def to_finding(defect: DefectDetection) -> DefectFinding:
    return DefectFinding(
        defect_class=defect.defect_class,
        box=defect.box,
        score=defect.score,
        area=defect.area,
        polygon=defect.polygon,
    )


def observed_part(part: PartDetection) -> ObservedPart:
    return ObservedPart(
        box=part.box,
        confidence=part.confidence,
        defect_score=part.defect_score,
        anomaly_score=part.anomaly_score,
        defects=[to_finding(d) for d in part.defects],
        class_scores=part.class_scores,
    )


def to_detection(part: ObservedPart) -> PartDetection:
    """A published part as the tracker takes it; scores clamped to [0, 1]."""
    defects = [
        DefectDetection(
            defect_class=d.defect_class,
            box=d.box,
            score=_unit(d.score),
            area=max(0.0, d.area),
            polygon=d.polygon,
        )
        for d in part.defects
    ]
    return PartDetection(
        box=part.box,
        confidence=_unit(part.confidence),
        defect_score=_unit(part.defect_score),
        anomaly_score=_unit(part.anomaly_score),
        defects=defects,
        class_scores={name: _unit(v) for name, v in part.class_scores.items()},
    )
