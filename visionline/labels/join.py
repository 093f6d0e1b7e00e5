"""Joining predictions to labels: pure functions, no broker or database.

A frame's observed parts are matched to its labelled parts by IoU, greedily, best pair first
(pairs below ``min_iou`` never match). Each match is one outcome, predicted defective (score at
or above the threshold) against truly defective. An observed part that matches nothing is a
false detection: nothing defective is there, so it is a false positive when predicted defective
and a true negative otherwise. A labelled part that nothing matched, with at least
``min_visible`` of it inside the frame, is a miss: nothing was flagged, so a false negative when
it is defective and a true negative otherwise. ``match`` keeps which of the three it was.

A tracked part's verdict is joined through its best frame: its box against that frame's labels.

A detect camera's frame (``frame_object``): its detections against the frame's labelled objects,
matched greedily by IoU (at least ``OBJECT_IOU``) within each class. A match is a true positive,
a detection that matches nothing (no object there, or another class) a false positive, a
labelled object nothing matched a false negative: the counts of detection precision and recall.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from visionline.inspection.metrics import iou
from visionline.messages import (
    FloatBox,
    FrameDetections,
    LabelFeedback,
    LabelledObject,
    LabelledPart,
    ModelRef,
    ObservedPart,
    PartObservations,
    PartVerdict,
)

Kind = Literal["frame_part", "tracked_part", "frame_object"]
Match = Literal["matched", "false_detection", "miss"]
ScoreSource = Literal["defect_score", "class_scores"]
KINDS: tuple[Kind, ...] = ("frame_part", "tracked_part", "frame_object")
OBJECT_IOU = 0.5  # a detection and a true object of the same class match from this IoU on
OUTCOMES = ("tp", "fp", "fn", "tn")


@dataclass(frozen=True)
class JoinPolicy:
    threshold: float = 0.5  # a frame part is predicted defective at this score or above
    score_source: ScoreSource = "defect_score"
    min_iou: float = 0.3
    min_visible: float = 0.5  # an unmatched labelled part counts as a miss from this much on

    @classmethod
    def of(cls, settings) -> JoinPolicy:
        return cls(
            threshold=settings.defect_threshold,
            score_source=settings.score_source,
            min_iou=settings.min_iou,
            min_visible=settings.min_visible_fraction,
        )


@dataclass(frozen=True)
class PredictedPart:
    """One part a model saw: its box, its defect score, and (verdicts) its decision."""

    box: FloatBox
    score: float
    defective: bool | None = None  # None: decided by the policy's threshold on ``score``
    class_name: str | None = None  # a detect camera's object: its class


@dataclass(frozen=True)
class Prediction:
    """What was predicted for one frame (``frame_part``), or one tracked part decided on its
    best frame (``tracked_part``): the unit stored until its frame's labels arrive."""

    prediction_id: str
    kind: Kind
    camera_id: str
    frame_id: str  # the frame whose labels it is joined to
    captured_at: float
    parts: tuple[PredictedPart, ...]
    models: tuple[tuple[str, str], ...] = field(default=())  # (name, version)


@dataclass(frozen=True)
class PartOutcome:
    slot: str  # stable for the same prediction and label: part of the outcome's key
    match: Match
    predicted_defective: bool
    true_defective: bool
    score: float | None = None
    part_id: str | None = None
    iou: float | None = None

    @property
    def outcome(self) -> str:
        return confusion(self.predicted_defective, self.true_defective)


def confusion(predicted: bool, true: bool) -> str:
    if predicted:
        return "tp" if true else "fp"
    return "fn" if true else "tn"


def greedy_match(
    predicted: Sequence[FloatBox], labelled: Sequence[FloatBox], min_iou: float
) -> list[tuple[int, int, float]]:
    """``(predicted index, labelled index, iou)`` pairs, best IoU first, each box used once."""
    pairs = [
        (overlap, i, j)
        for i, p in enumerate(predicted)
        for j, t in enumerate(labelled)
        if (overlap := iou(p, t)) >= min_iou
    ]
    pairs.sort(key=lambda x: (-x[0], x[1], x[2]))
    used_p: set[int] = set()
    used_t: set[int] = set()
    out = []
    for overlap, i, j in pairs:
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            out.append((i, j, overlap))
    return out


def part_score(part: ObservedPart, source: ScoreSource = "defect_score") -> float:
    """The score compared with the threshold: ``defect_score`` (anomaly and defect models) or
    the defect detector's highest class score."""
    if source == "class_scores":
        return max(part.class_scores.values(), default=0.0)
    return part.defect_score


def _models(refs: Sequence[ModelRef]) -> tuple[tuple[str, str], ...]:
    return tuple((m.name, m.version) for m in refs)


def frame_prediction(obs: PartObservations, source: ScoreSource = "defect_score") -> Prediction:
    f = obs.frame
    parts = tuple(PredictedPart(p.box, part_score(p, source)) for p in obs.parts)
    return Prediction(
        f"frame:{f.camera_id}:{f.frame_id}",
        "frame_part",
        f.camera_id,
        f.frame_id,
        f.captured_at,
        parts,
        _models(obs.models),
    )


def verdict_prediction(v: PartVerdict) -> Prediction:
    part = PredictedPart(v.box, v.score, v.defective)
    return Prediction(
        f"verdict:{v.decision_id}",
        "tracked_part",
        v.camera_id,
        v.best_frame_id,
        v.captured_at,
        (part,),
        _models(v.models),
    )


def detection_prediction(found: FrameDetections) -> Prediction:
    """A detect camera's frame: each object found, with its class and score."""
    f = found.frame
    parts = tuple(PredictedPart(o.box, o.score, True, o.class_name) for o in found.objects)
    return Prediction(
        f"detect:{f.camera_id}:{f.frame_id}",
        "frame_object",
        f.camera_id,
        f.frame_id,
        f.captured_at,
        parts,
        _models([found.model]),
    )


def object_outcomes(
    parts: Sequence[PredictedPart], labelled: Sequence[LabelledObject]
) -> list[PartOutcome]:
    """Per class, greedy IoU matching: true positives, false detections and misses."""
    out: list[PartOutcome] = []
    matched_p: set[int] = set()
    matched_t: set[int] = set()
    for name in sorted({p.class_name or "" for p in parts} | {t.class_name for t in labelled}):
        mine = [i for i, p in enumerate(parts) if (p.class_name or "") == name]
        theirs = [j for j, t in enumerate(labelled) if t.class_name == name]
        boxes = [parts[i].box for i in mine], [labelled[j].box for j in theirs]
        for a, b, overlap in greedy_match(*boxes, OBJECT_IOU):
            i, truth = mine[a], labelled[theirs[b]]
            matched_p.add(i)
            matched_t.add(theirs[b])
            slot = f"p{i}:t{truth.object_id}"
            score = parts[i].score
            out.append(
                PartOutcome(slot, "matched", True, True, score, truth.object_id, round(overlap, 4))
            )
    out += [
        PartOutcome(f"p{i}", "false_detection", True, False, p.score)
        for i, p in enumerate(parts)
        if i not in matched_p
    ]
    out += [
        PartOutcome(f"t{t.object_id}", "miss", False, True, None, t.object_id)
        for j, t in enumerate(labelled)
        if j not in matched_t
    ]
    return out


def frame_outcomes(
    parts: Sequence[PredictedPart], labelled: Sequence[LabelledPart], policy: JoinPolicy
) -> list[PartOutcome]:
    """One outcome per matched pair, per false detection and per miss (see the module doc)."""

    def predicted(p: PredictedPart) -> bool:
        return p.defective if p.defective is not None else p.score >= policy.threshold

    pairs = greedy_match([p.box for p in parts], [t.box for t in labelled], policy.min_iou)
    out = [
        PartOutcome(
            f"p{i}:t{labelled[j].part_id}",
            "matched",
            predicted(parts[i]),
            labelled[j].defective,
            parts[i].score,
            labelled[j].part_id,
            round(ov, 4),
        )
        for i, j, ov in pairs
    ]
    seen_p, seen_t = {i for i, _, _ in pairs}, {j for _, j, _ in pairs}
    out += [
        PartOutcome(f"p{i}", "false_detection", predicted(p), False, p.score)
        for i, p in enumerate(parts)
        if i not in seen_p
    ]
    out += [
        PartOutcome(f"t{t.part_id}", "miss", False, t.defective, None, t.part_id)
        for j, t in enumerate(labelled)
        if j not in seen_t and t.visible_fraction >= policy.min_visible
    ]
    return out


def verdict_outcome(
    part: PredictedPart, labelled: Sequence[LabelledPart], policy: JoinPolicy
) -> PartOutcome:
    """A tracked part's decision against the labels of its best frame: the labelled part its
    box overlaps most (at least ``min_iou``), else a false detection."""
    defective = bool(part.defective)
    pairs = greedy_match([part.box], [t.box for t in labelled], policy.min_iou)
    if not pairs:
        return PartOutcome("verdict", "false_detection", defective, False, part.score)
    _, j, overlap = pairs[0]
    truth = labelled[j]
    return PartOutcome(
        "verdict",
        "matched",
        defective,
        truth.defective,
        part.score,
        truth.part_id,
        round(overlap, 4),
    )


def outcomes(prediction: Prediction, label: LabelFeedback, policy: JoinPolicy) -> list[PartOutcome]:
    """The outcomes of a stored prediction once its frame's labels are known."""
    if prediction.kind == "tracked_part":
        return [verdict_outcome(p, label.parts, policy) for p in prediction.parts]
    if prediction.kind == "frame_object":
        return object_outcomes(prediction.parts, label.objects)
    return frame_outcomes(prediction.parts, label.parts, policy)


def label_problem(label: LabelFeedback) -> str | None:
    """Why a label cannot be used (dead-lettered), or None."""
    for part in label.parts:
        x0, y0, x1, y1 = part.box
        if not (x1 > x0 and y1 > y0):
            return f"part {part.part_id}: empty or inverted box {part.box}"
        if not 0.0 <= part.visible_fraction <= 1.0:
            return f"part {part.part_id}: visible_fraction {part.visible_fraction} not in [0, 1]"
    ids = [p.part_id for p in label.parts]
    if len(set(ids)) != len(ids):
        return "part ids repeat"
    for obj in label.objects:
        x0, y0, x1, y1 = obj.box
        if not (x1 > x0 and y1 > y0):
            return f"object {obj.object_id}: empty or inverted box {obj.box}"
    object_ids = [o.object_id for o in label.objects]
    if len(set(object_ids)) != len(object_ids):
        return "object ids repeat"
    return None
