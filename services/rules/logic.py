"""Rules' business logic: matching, cooldown decisions, part alerts (the rules file's model is
``visionline.rulesets``)."""

from __future__ import annotations

import time

from visionline.imaging import FrameRejected
from visionline.inspection.config import InspectionConfig, config_for
from visionline.messages import (
    Alert,
    ModelRef,
    ObjectAlertDetail,
    ObjectEvent,
    PartAlertDetail,
    PartVerdict,
    Prediction,
    alert_id,
)
from visionline.rulesets import Rule


def match(rule: Rule, prediction: Prediction) -> tuple[str, float] | None:
    """The best-scoring label of the prediction's top-k that the rule watches for, if any."""
    if not rule.applies_to(prediction.camera_id):
        return None
    wanted = {label.casefold() for label in rule.labels}
    for entry in prediction.top_k:  # sorted best first
        if entry.label.casefold() in wanted and entry.score >= rule.min_confidence:
            return entry.label, entry.score
    return None


def candidate_alerts(rules: list[Rule], prediction: Prediction) -> list[tuple[Rule, Alert]]:
    now = time.time()
    out = []
    for rule in rules:
        hit = match(rule, prediction)
        if hit is None:
            continue
        label, score = hit
        alert = Alert(
            alert_id=alert_id(prediction.camera_id, prediction.frame_id, rule.name),
            camera_id=prediction.camera_id,
            frame_id=prediction.frame_id,
            rule=rule.name,
            label=label,
            confidence=score,
            severity=rule.severity,
            captured_at=prediction.captured_at,
            created_at=now,
            model=prediction.model,
        )
        out.append((rule, alert))
    return out


def cooldown_key(camera_id: str, rule: str, label: str) -> str:
    return f"visionline:cooldown:{camera_id}:{rule}:{label.casefold()}"


def cooldown_allows(claimed: bool, holder: str | None, alert: str) -> bool:
    """After SET NX on the cooldown key: the alert goes on if it took the cooldown, or if the
    cooldown is held by this same alert (a redelivery after a crash must not lose it)."""
    return claimed or holder == alert


# Inspection cameras: one alert per rejected part ---------------------------------------------

DEFECT_MODEL = "defect_detector"  # visionline.inspection.vision.DEFECT_DETECTOR
UNKNOWN_MODEL = ModelRef(name="unknown", version="", served_by="triton")


def defect_model(models: list[ModelRef]) -> ModelRef:
    """The defect detector among a verdict's models (the last one when none is named so)."""
    named = [m for m in models if m.name == DEFECT_MODEL]
    return named[0] if named else (models[-1] if models else UNKNOWN_MODEL)


def part_alert_id(decision_id: str, rule: str) -> str:
    return f"{decision_id}:{rule}"


def part_detail(verdict: PartVerdict) -> PartAlertDetail:
    """The verdict's fields an alert carries (every field of the detail is one of them)."""
    fields = {name: getattr(verdict, name) for name in PartAlertDetail.model_fields}
    return PartAlertDetail(**fields)


def part_alert(
    configs: list[InspectionConfig], verdict: PartVerdict, now: float | None = None
) -> Alert | None:
    """The alert of a rejected part whose camera has an alerting inspection entry, else None."""
    config = config_for(configs, verdict.camera_id)
    if config is None or not config.alert or verdict.status != "rejected":
        return None
    return Alert(
        alert_id=part_alert_id(verdict.decision_id, config.name),
        camera_id=verdict.camera_id,
        frame_id=verdict.best_frame_id,
        rule=config.name,
        label=verdict.defect_class or "defect",
        confidence=verdict.score,
        severity=config.severity,
        captured_at=verdict.captured_at,
        created_at=time.time() if now is None else now,
        model=defect_model(verdict.models),
        part=part_detail(verdict),
    )


# Detect cameras: one alert per object event -----------------------------------------------------


def object_alert(event: ObjectEvent, now: float | None = None) -> Alert:
    """The alert of a tracked object's event; its id is the event's, so a replayed event
    (same tracker state, same id) is written and published once."""
    return Alert(
        alert_id=event.event_id,
        camera_id=event.camera_id,
        frame_id=event.frame_id,
        rule=event.rule,
        label=event.class_name or event.rule,  # a count rule is about a zone, not one class
        confidence=event.score,
        severity=event.severity,
        captured_at=event.captured_at,
        created_at=time.time() if now is None else now,
        model=event.model,
        object=ObjectAlertDetail(
            event_id=event.event_id,
            kind=event.kind,
            track_id=event.track_id,
            class_name=event.class_name,
            box=event.box,
            detail=event.detail,
            snapshot=event.snapshot,
        ),
    )


def frame_id_taken(prediction: Prediction) -> FrameRejected:
    """The dead letter of a frame whose id another frame of its camera already holds: stored,
    it would vanish (no row, no alert), so it is set aside with the reason instead."""
    return FrameRejected(
        "frame_id_conflict",
        f"frame id {prediction.frame_id} of camera {prediction.camera_id} is already taken by a "
        "frame captured at another time; give each frame its own id",
        frame_id=prediction.frame_id,
    )
