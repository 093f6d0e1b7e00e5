"""The pure parts of the alerts and cameras API: alert state machine, paging cursor, snapshot
paths, camera activity records and health."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi import HTTPException

from services.api.params import utc
from services.api.routers.alerts import alert_out, decode_cursor, encode_cursor, storable
from visionline import camera_health as ch
from visionline.alerts import AlertConflict, snapshot_image, snapshot_ref, transition
from visionline.db.models import AlertRow


def row(alert_id: str = "cam-1:f:7:part-defect", part: dict | None = None) -> AlertRow:
    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    return AlertRow(
        alert_id=alert_id,
        camera_id="cam-1",
        frame_id="f:7",
        rule="part-defect",
        label="scratch",
        confidence=0.9,
        severity="critical",
        captured_at=at,
        created_at=at,
        model_name="defect_detector",
        model_version="2",
        part=part,
        state="open",
    )


# --- alerts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "action", "changes"),
    [
        ("open", "acknowledge", True),
        ("acknowledged", "acknowledge", False),
        ("open", "resolve", True),
        ("acknowledged", "resolve", True),
        ("resolved", "resolve", False),
    ],
)
def test_transitions(state: str, action: str, changes: bool) -> None:
    assert transition(state, action) is changes


def test_acknowledging_a_resolved_alert_conflicts() -> None:
    with pytest.raises(AlertConflict, match="resolved"):
        transition("resolved", "acknowledge")


def test_cursor_round_trip_keeps_time_and_id() -> None:
    alert = row()
    when, alert_id = decode_cursor(encode_cursor(alert))
    assert (when, alert_id) == (alert.captured_at, alert.alert_id)


def test_cursor_may_be_a_plain_time_and_naive_means_utc() -> None:
    assert decode_cursor("2026-01-02T03:04:05") == (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), None)
    with pytest.raises(HTTPException) as refused:
        decode_cursor("yesterday")
    assert refused.value.status_code == 422


def test_times_go_to_utc_as_postgresql_refuses_offsets_past_16_hours() -> None:
    far = datetime.fromisoformat("2000-01-01T00:00:00+16:00")
    assert utc(far) == far and utc(far).utcoffset().total_seconds() == 0
    with pytest.raises(HTTPException) as refused:
        utc(datetime.fromisoformat("0001-01-01T00:00:00+16:00"))
    assert refused.value.status_code == 422


@pytest.mark.parametrize("text", ["a\x00b", "\ud800"])
def test_text_postgresql_cannot_store_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        storable(text)
    assert storable("ok: é ✓") == "ok: é ✓"


def test_snapshot_url_only_with_a_snapshot_and_escaped() -> None:
    assert alert_out(row()).snapshot_url is None
    out = alert_out(row("c:f 1:r", part={"snapshot": "snapshot://c/f_1.jpg"}))
    assert out.snapshot_url == "/v1/alerts/c%3Af%201%3Ar/snapshot"
    assert snapshot_ref(row(part={"snapshot": 5})) is None


def test_a_snapshot_is_read_only_inside_the_store(tmp_path: Path) -> None:
    root = tmp_path / "snapshots"
    (root / "cam").mkdir(parents=True)
    (root / "cam" / "f1.jpg").write_bytes(b"jpeg")
    (tmp_path / "secret.jpg").write_bytes(b"secret")
    (root / "cam" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    assert snapshot_image(root, "snapshot://cam/f1.jpg") == b"jpeg"  # stored drawn: as it is
    for ref in (
        "snapshot://../secret.jpg",
        "snapshot://cam/../../secret.jpg",
        "snapshot:///etc/passwd.jpg",
        "file:///etc/passwd",
        "snapshot://cam/link.jpg",
        "snapshot://cam/gone.jpg",
    ):
        assert snapshot_image(root, ref) is None, ref
    assert snapshot_image(tmp_path / "none", "snapshot://cam/f1.jpg") is None
    (root / "cam" / "f1.jpg.boxes.json").write_text("[]")  # a frame to draw on that is no JPEG
    assert snapshot_image(root, "snapshot://cam/f1.jpg") is None
    (root / "cam" / "f1.jpg").write_bytes(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1])
    for boxes in ('[{"box": [1, 2]}]', "[1]", "{", '[{"label": "x"}]'):  # boxes gone wrong
        (root / "cam" / "f1.jpg.boxes.json").write_text(boxes)
        assert snapshot_image(root, "snapshot://cam/f1.jpg") is None, boxes


# --- camera activity -----------------------------------------------------------------------


def test_a_frame_increments_this_seconds_bucket_and_sets_the_last_frame() -> None:
    commands = ch.activity_commands("cam-1", "f-9", 1000.25, now=2000.75)
    bucket, last = "visionline:activity:cam-1:2000", "visionline:activity:cam-1:last"
    assert commands == [
        ("INCR", bucket),
        ("EXPIRE", bucket, ch.BUCKET_TTL_S),
        ("HSET", last, "at", "2000.75", "captured_at", "1000.25", "frame_id", "f-9"),
        ("EXPIRE", last, ch.LAST_TTL_S),
    ]
    assert ch.BUCKET_TTL_S > ch.WINDOW_S  # a bucket outlives the window it is read in


def test_the_window_ends_with_the_current_second() -> None:
    seconds = ch.window_seconds(2000.9)
    assert len(seconds) == ch.WINDOW_S and seconds[-1] == 2000 and seconds[0] == 1941


def test_parse_activity_sums_buckets_and_tolerates_junk() -> None:
    last = {b"at": b"2000.5", b"captured_at": b"nan", b"frame_id": b"f-1"}
    activity = ch.parse_activity([b"3", None, b"27"], last)
    assert activity == ch.Activity(2000.5, None, "f-1", 30)
    assert activity.fps == 0.5
    assert ch.parse_activity([], {}) == ch.Activity(None, None, None, 0)
    shed = ch.parse_activity([b"10"], last, [b"2", None, b"5"])
    assert (shed.frames_last_minute, shed.shed_last_minute) == (10, 7)
    assert ch.shed_key("line-1", 7) != ch.bucket_key("line-1", 7)


@pytest.mark.parametrize(
    ("enabled", "max_fps", "age", "expected"),
    [
        (False, 30, 0.1, "disabled"),
        (True, 30, 4.9, "ok"),
        (True, 30, 6.0, "stale"),
        (True, 0.5, 9.0, "ok"),  # one frame every 2 s: 5 intervals are 10 s
        (True, 0.5, 11.0, "stale"),
        (True, 30, 61.0, "silent"),
        (True, 30, None, "silent"),
    ],
)
def test_health(enabled: bool, max_fps: float, age: float | None, expected: str) -> None:
    now = 10_000.0
    activity = ch.Activity(None if age is None else now - age, None, None, 1)
    assert ch.health(enabled, max_fps, activity, now) == expected


def test_health_is_unknown_without_activity_data() -> None:
    assert ch.health(True, 30, None, 0.0) == "unknown"
