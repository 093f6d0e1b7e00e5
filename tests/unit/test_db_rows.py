"""Rows from messages (``visionline.db.rows.row_of``) and the mappers built on it: a field is
copied to the column of its name (a time as a UTC datetime); the rest is the mapper's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.rules.store import alert_row, prediction_row
from visionline.db.models import FrameLabelRow, PredictionRow
from visionline.db.rows import row_of
from visionline.drift.store import event_row
from visionline.messages import (
    Alert,
    DriftEvent,
    LabelFeedback,
    LabelScore,
    ModelRef,
    Prediction,
    Quality,
    WindowStats,
)

MODEL = ModelRef(name="m", version="3", served_by="triton")
NAMED = {"model_name": "m", "model_version": "3"}


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def test_fields_fill_the_columns_of_their_name_and_times_are_utc():
    same = dict(label_id="l1", camera_id="c", frame_id="f", source="operator")
    label = LabelFeedback(**same, captured_at=10.0, labelled_at=20.0, parts=[], label="ok")
    row = row_of(label, FrameLabelRow, message={"m": 1}, updated_at=at(30))
    times = {"captured_at": at(10), "labelled_at": at(20), "updated_at": at(30)}
    assert row == {**same, **times, "message": {"m": 1}}


def prediction() -> Prediction:
    quality = Quality(brightness=1, contrast=2, blur=3, saturation=4, histogram=(0.5, 0.5))
    top = [LabelScore(class_id=1, label="cat", score=0.9)]
    same = dict(camera_id="c", frame_id="f", label="cat", confidence=0.9, stages={"s": 4.0})
    return Prediction(**same, captured_at=5.0, model=MODEL, top_k=top, quality=quality)


def test_a_nested_model_must_be_mapped_by_the_caller():
    with pytest.raises(TypeError, match="is a model"):
        row_of(prediction(), PredictionRow)


def test_prediction_rows_name_the_model_and_leave_the_histogram_out():
    row = prediction_row(prediction())
    assert row == {
        **{"camera_id": "c", "frame_id": "f", "label": "cat", "confidence": 0.9},
        **{"stages": {"s": 4.0}, "captured_at": at(5), **NAMED, "served_by": "triton"},
        "top_k": [{"class_id": 1, "label": "cat", "score": 0.9}],
        "quality": {"brightness": 1, "contrast": 2, "blur": 3, "saturation": 4},
    }


def test_alert_rows_name_the_model():
    same = dict(alert_id="a", camera_id="c", frame_id="f", rule="r", label="cat", severity="info")
    alert = Alert(**same, confidence=0.5, captured_at=1.0, created_at=2.0, model=MODEL)
    times = {"captured_at": at(1), "created_at": at(2)}
    assert alert_row(alert) == {
        **same,
        **times,
        **NAMED,
        "confidence": 0.5,
        "part": None,
        "object": None,
    }


def test_drift_event_rows_keep_their_windows():
    stats = WindowStats(frames=3, mean=1, std=0, median=1, first_captured_at=1, last_captured_at=2)
    ids = dict(event_id="c:b:f9", camera_id="c", frame_id="f9", detected_frame_id="f5")
    found = dict(signal="b", detector="adwin", detector_params={"d": 0.5}, p_value=1e-9)
    window = dict(before=stats, after=stats, statistic=0.9)
    e = DriftEvent(**ids, **found, **window, detected_at=1.0, captured_at=2.0, created_at=3.0)
    times = {"detected_at": at(1), "captured_at": at(2), "created_at": at(3)}
    stored = {"before": stats.model_dump(), "after": stats.model_dump(), "statistic": 0.9}
    assert event_row(e) == {**ids, **found, **times, **stored}
