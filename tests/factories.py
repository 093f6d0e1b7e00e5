"""Builders of the pipeline's messages for tests: defaults for what a test does not care about,
keyword overrides for the rest. A test passes every value it asserts on, so they stay in sight.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from visionline.messages import (
    Alert,
    DefectFinding,
    DriftEvent,
    FloatBox,
    FrameMeta,
    LabelFeedback,
    LabelledPart,
    LabelScore,
    LineCounts,
    ModelRef,
    ObservedPart,
    PartObservations,
    PartVerdict,
    Prediction,
    Quality,
    SourceRef,
    WindowStats,
)

if TYPE_CHECKING:
    from visionline.inspection.tracking import PartDecision


def model_ref(name: str = "m", version: str = "1", served_by: str = "triton") -> ModelRef:
    return ModelRef(name=name, version=version, served_by=served_by)


def source_ref(offset: int = 0, topic: str = "t", partition: int = 0) -> SourceRef:
    return SourceRef(topic=str(topic), partition=partition, offset=offset)


def quality(
    brightness: float = 120, contrast: float = 40, blur: float = 300, saturation: float = 60, **kw
) -> Quality:
    return Quality(brightness=brightness, contrast=contrast, blur=blur, saturation=saturation, **kw)


def frame_meta(
    camera_id: str = "cam",
    frame_id: str = "f1",
    *,
    size: tuple[int, int] = (1280, 720),
    **kw: Any,
) -> FrameMeta:
    """A JPEG frame's metadata; ``size`` is (width, height)."""
    values: dict[str, Any] = dict(
        camera_id=camera_id,
        frame_id=frame_id,
        captured_at=100.0,
        content_type="image/jpeg",
        width=size[0],
        height=size[1],
        source=source_ref(),
    )
    return FrameMeta(**(values | kw))


def observed_part(
    box: FloatBox,
    score: float,
    *,
    anomaly_score: float | None = None,
    defects: Sequence[DefectFinding] = (),
    confidence: float = 0.9,
    class_scores: dict[str, float] | None = None,
) -> ObservedPart:
    """A detected part with defect score ``score``; its anomaly score is the same unless given."""
    return ObservedPart(
        box=box,
        confidence=confidence,
        defect_score=score,
        anomaly_score=score if anomaly_score is None else anomaly_score,
        defects=list(defects),
        class_scores=class_scores or {},
    )


def part_observations(
    frame: FrameMeta, parts: Sequence[ObservedPart], models: Sequence[ModelRef] = (), **kw: Any
) -> PartObservations:
    values: dict[str, Any] = dict(
        frame=frame, quality=quality(), models=list(models), parts=list(parts)
    )
    return PartObservations(**(values | kw))


def labelled_part(
    part_id: str, box: FloatBox, defective: bool = False, visible: float = 1.0
) -> LabelledPart:
    return LabelledPart(part_id=part_id, box=box, defective=defective, visible_fraction=visible)


def part_verdict(
    camera_id: str = "line-1", decision_id: str | None = None, status: str = "accepted", **kw: Any
) -> PartVerdict:
    """A decided part, seen in frame ``f1``; ``defective`` follows ``status`` unless given."""
    values: dict[str, Any] = dict(
        decision_id=decision_id or f"{camera_id}:f1",
        camera_id=camera_id,
        track_id=1,
        status=status,
        defective=status == "rejected",
        defect_class=None,
        score=0.1,
        frames_seen=6,
        defect_frames=0,
        first_frame_id="f1",
        last_frame_id="f1",
        best_frame_id="f1",
        captured_at=100.0,
        decided_at=101.0,
        crossed_line=True,
        box=(0.0, 0.0, 10.0, 10.0),
        defects=[],
        snapshot=None,
        models=[],
        counts=LineCounts(),
    )
    return PartVerdict(**(values | kw))


def part_decision(
    camera: str, track_id: int, box: FloatBox, frame: int, status: str = "accepted", **kw: Any
) -> PartDecision:
    """A tracker's decision on a part seen in 3 frames; ``frame`` is its first, last and best."""
    from visionline.inspection.tracking import PartDecision, PartDetection  # slow: supervision

    values: dict[str, Any] = dict(
        camera=camera,
        track_id=track_id,
        status=status,
        defective=status == "rejected",
        frames_seen=3,
        defect_frames=0,
        max_defect_score=0.0,
        top_class=None,
        class_votes={},
        best_box=box,
        best_area=0.0,
        first_frame=frame,
        last_frame=frame,
        crossed_line=True,
        ref=None,
        best_frame=frame,
        best_part=PartDetection(box=box),
    )
    return PartDecision(**(values | kw))


def window_stats(
    mean: float = 1.0,
    *,
    frames: int = 50,
    std: float = 1.0,
    median: float | None = None,
    first_captured_at: float = 1.0,
    last_captured_at: float = 2.0,
) -> WindowStats:
    """A window of one signal; its median is its mean unless given."""
    return WindowStats(
        frames=frames,
        mean=mean,
        std=std,
        median=mean if median is None else median,
        first_captured_at=first_captured_at,
        last_captured_at=last_captured_at,
    )


def drift_event(
    camera_id: str = "cam", signal: str = "brightness", frame_id: str = "f9", **kw: Any
) -> DriftEvent:
    """An ADWIN drift confirmed in ``frame_id``, with the event id the drift service gives it."""
    stats = window_stats()
    values: dict[str, Any] = dict(
        event_id=f"{camera_id}:{signal}:{frame_id}",
        camera_id=camera_id,
        signal=signal,
        detector="adwin",
        detector_params={"delta": 0.002},
        detected_frame_id=frame_id,
        detected_at=1.0,
        frame_id=frame_id,
        captured_at=2.0,
        before=stats,
        after=stats,
        statistic=0.8,
        p_value=1e-9,
    )
    return DriftEvent(**(values | kw))


def prediction(
    camera_id: str = "cam",
    frame_id: str = "f1",
    top_k: Sequence[tuple[str, float]] = (("tabby", 0.9),),
    **kw: Any,
) -> Prediction:
    """A classification whose label and confidence are the first of ``top_k`` (label, score)."""
    values: dict[str, Any] = dict(
        camera_id=camera_id,
        frame_id=frame_id,
        captured_at=1.0,
        model=model_ref(),
        top_k=[LabelScore(class_id=i, label=lab, score=s) for i, (lab, s) in enumerate(top_k)],
        label=top_k[0][0],
        confidence=top_k[0][1],
        quality=quality(),
        stages={},
    )
    return Prediction(**(values | kw))


def alert(
    camera_id: str = "cam-1", frame_id: str = "f-1", rule: str = "low-conf", **kw: Any
) -> Alert:
    """An alert of ``rule`` about a frame captured now (or at ``captured_at``)."""
    at = kw.pop("captured_at", time.time())
    values: dict[str, Any] = dict(
        alert_id=f"{camera_id}:{frame_id}:{rule}",
        camera_id=camera_id,
        frame_id=frame_id,
        rule=rule,
        label="cat",
        confidence=0.9,
        severity="warning",
        captured_at=at,
        created_at=at,
        model=model_ref(),
    )
    return Alert(**(values | kw))


def label_feedback(
    camera_id: str = "cam",
    frame_id: str = "f1",
    parts: Sequence[LabelledPart] = (),
    **kw: Any,
) -> LabelFeedback:
    """The generator's labels of one frame, with the label id it gives them."""
    values: dict[str, Any] = dict(
        label_id=f"generator:{frame_id}",
        camera_id=camera_id,
        frame_id=frame_id,
        captured_at=100.0,
        source="generator",
        parts=list(parts),
    )
    return LabelFeedback(**(values | kw))
