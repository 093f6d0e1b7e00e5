"""Rows from messages (``visionline.db.rows.row_of``) and the mappers built on it."""

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
STATS = WindowStats(frames=3, mean=1, std=0, median=1, first_captured_at=1, last_captured_at=2)


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def a_prediction() -> Prediction:
    quality = Quality(brightness=1, contrast=2, blur=3, saturation=4, histogram=(0.5, 0.5))
    top = LabelScore(class_id=1, label="cat", score=0.9)
    return Prediction(
        camera_id="c",
        frame_id="f",
        captured_at=5.0,
        model=MODEL,
        label="cat",
        confidence=0.9,
        top_k=[top],
        quality=quality,
        stages={"ingest": 4.0},
    )


def test_columns_come_from_fields_of_the_same_name_with_times_in_utc():
    label = LabelFeedback(
        label_id="l1",
        camera_id="c",
        frame_id="f",
        source="operator",
        captured_at=10.0,
        labelled_at=20.0,
        parts=[],
        label="ok",
    )
    row = row_of(label, FrameLabelRow, message={"m": 1}, updated_at=at(30))
    assert row == {
        "camera_id": "c",
        "frame_id": "f",
        "source": "operator",
        "label_id": "l1",
        "captured_at": at(10),
        "labelled_at": at(20),
        "message": {"m": 1},
        "updated_at": at(30),
    }


def test_a_nested_model_must_be_mapped_by_the_caller():
    with pytest.raises(TypeError, match="is a model"):
        row_of(a_prediction(), PredictionRow)


def test_prediction_rows_keep_the_model_and_drop_the_histogram():
    assert prediction_row(a_prediction()) == {
        "camera_id": "c",
        "frame_id": "f",
        "captured_at": at(5),
        "model_name": "m",
        "model_version": "3",
        "served_by": "triton",
        "label": "cat",
        "confidence": 0.9,
        "top_k": [{"class_id": 1, "label": "cat", "score": 0.9}],
        "quality": {"brightness": 1, "contrast": 2, "blur": 3, "saturation": 4},
        "stages": {"ingest": 4.0},
    }


def test_alert_rows_name_the_model():
    alert = Alert(
        alert_id="a",
        camera_id="c",
        frame_id="f",
        rule="r",
        label="cat",
        confidence=0.5,
        severity="info",
        captured_at=1.0,
        created_at=2.0,
        model=MODEL,
    )
    assert alert_row(alert) == {
        "alert_id": "a",
        "camera_id": "c",
        "frame_id": "f",
        "rule": "r",
        "label": "cat",
        "confidence": 0.5,
        "severity": "info",
        "captured_at": at(1),
        "created_at": at(2),
        "model_name": "m",
        "model_version": "3",
        "part": None,
    }


def test_drift_event_rows():
    e = DriftEvent(
        event_id="c:b:f9",
        camera_id="c",
        signal="brightness",
        detector="adwin",
        detector_params={"delta": 0.002},
        detected_frame_id="f5",
        detected_at=1.0,
        frame_id="f9",
        captured_at=2.0,
        before=STATS,
        after=STATS,
        statistic=0.9,
        p_value=1e-9,
        created_at=3.0,
    )
    assert event_row(e) == {
        "event_id": "c:b:f9",
        "camera_id": "c",
        "signal": "brightness",
        "detector": "adwin",
        "detector_params": {"delta": 0.002},
        "detected_frame_id": "f5",
        "detected_at": at(1),
        "frame_id": "f9",
        "captured_at": at(2),
        "before": STATS.model_dump(),
        "after": STATS.model_dump(),
        "statistic": 0.9,
        "p_value": 1e-9,
        "created_at": at(3),
    }
