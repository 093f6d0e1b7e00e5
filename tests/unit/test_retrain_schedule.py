"""visionline.retrain.schedule without servers: slots aligned to the epoch, the schedule's
settings, and one job per slot (SQLite; tests/integration/test_retrain_schedule.py runs the
same against PostgreSQL)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from visionline.model_registry.store import advance_job, get_job
from visionline.retrain.jobs import create_job_once
from visionline.retrain.schedule import create_scheduled_jobs, slot_of, slot_seconds, trigger_ref
from visionline.settings import RetrainSettings

T0 = datetime(2024, 5, 1, tzinfo=UTC).timestamp()  # a UTC midnight


# --- slots -----------------------------------------------------------------------------------


def test_slots_are_aligned_to_the_epoch() -> None:
    slot = slot_of(T0 + 5 * 3600 + 17, 24)
    assert (slot.start, slot.end) == (T0, T0 + 24 * 3600)
    assert slot.start_iso == "2024-05-01T00:00:00+00:00"
    assert slot.end_iso == "2024-05-02T00:00:00+00:00"
    assert slot_of(T0 + 5 * 3600 + 17, 6).start_iso == "2024-05-01T00:00:00+00:00"
    assert slot_of(T0 + 7 * 3600, 6).start_iso == "2024-05-01T06:00:00+00:00"


def test_a_slot_starts_at_its_start_and_ends_before_its_end() -> None:
    assert slot_of(T0, 1).start == T0  # the start belongs to the slot
    assert slot_of(T0 - 0.001, 1).end == T0  # the moment before belongs to the one before
    assert slot_of(T0 + 3600, 1).start == T0 + 3600


def test_every_moment_of_a_slot_gives_the_same_slot() -> None:
    start = slot_of(T0 + 1000, 1.5)  # 90 minutes, aligned to the epoch, not to the day
    assert start.start % 5400 == 0 and start.end - start.start == 5400
    moments = [start.start + k * 7.3 for k in range(0, int(5400 / 7.3))]
    assert {slot_of(m, 1.5) for m in moments} == {start}


def test_fractional_hours_are_whole_seconds() -> None:
    assert slot_seconds(0.5) == 1800 and slot_seconds(1 / 60) == 60 and slot_seconds(2.25) == 8100
    with pytest.raises(ValueError, match="shorter than a minute"):
        slot_seconds(0.001)


def test_trigger_ref_names_model_and_slot_start() -> None:
    slot = slot_of(T0 + 10, 24)
    assert trigger_ref("defect_detector", slot) == "defect_detector@2024-05-01T00:00:00+00:00"


# --- settings --------------------------------------------------------------------------------


def test_no_schedule_by_default() -> None:
    settings = RetrainSettings()
    assert settings.schedule_hours == {} and settings.schedule_check_s == 60.0


def test_schedule_from_env_json(monkeypatch) -> None:
    monkeypatch.setenv(
        "VISIONLINE_RETRAIN_SCHEDULE_HOURS", '{"defect_detector": 24, "part_detector": 0.5}'
    )
    monkeypatch.setenv("VISIONLINE_RETRAIN_SCHEDULE_CHECK_S", "15")
    settings = RetrainSettings()
    assert settings.schedule_hours == {"defect_detector": 24.0, "part_detector": 0.5}
    assert settings.schedule_check_s == 15.0


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"efficientnet_lite0": 24}, "unknown model(s) efficientnet_lite0"),
        ({"defect_detector": 0}, "interval of defect_detector"),
        ({"defect_detector": -1}, "interval of defect_detector"),
        ({"part_anomaly": 0.001}, "from 1/60 h (a minute) to 87600 h"),
        ({"part_anomaly": float("inf")}, "interval of part_anomaly"),
        ({"part_anomaly": float("nan")}, "interval of part_anomaly"),
        ({"defect_detector": "daily"}, "valid number"),
    ],
)
def test_schedule_is_validated(schedule: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        RetrainSettings(schedule_hours=schedule)


def test_check_interval_must_be_positive() -> None:
    with pytest.raises(ValidationError):
        RetrainSettings(schedule_check_s=0)


# --- one job per slot ------------------------------------------------------------------------


def test_the_slot_job_is_created_once(engine) -> None:
    first = create_scheduled_jobs(engine, {"defect_detector": 24}, now=T0 + 60)
    assert len(first) == 1 and first[0].created and first[0].job_id is not None
    job = get_job(engine, first[0].job_id)
    assert (job.state, job.trigger) == ("queued", "schedule")
    assert job.trigger_ref == "defect_detector@2024-05-01T00:00:00+00:00"
    assert job.dataset["schedule"]["slot_end"] == "2024-05-02T00:00:00+00:00"
    request = first[0].request
    expected = (job.id, "defect_detector", "schedule")
    assert (request.job_id, request.model, request.trigger) == expected
    assert request.trigger_ref == job.trigger_ref and request.camera_id is None
    # a later check of the same slot (another replica, a restart): the same job, nothing to send
    advance_job(engine, job.id, "building_dataset", "x")
    advance_job(engine, job.id, "failed", "x")
    again = create_scheduled_jobs(engine, {"defect_detector": 24}, now=T0 + 23 * 3600)
    assert again[0].job_id == job.id and not again[0].created
    assert again[0].reason == f"the slot's job is {job.id} (failed)"
    # the next slot: a new job
    nxt = create_scheduled_jobs(engine, {"defect_detector": 24}, now=T0 + 24 * 3600)
    assert nxt[0].created and nxt[0].job_id != job.id
    assert get_job(engine, nxt[0].job_id).trigger_ref.endswith("@2024-05-02T00:00:00+00:00")


def test_debounced_while_a_job_of_the_model_is_open_then_created(engine) -> None:
    drift = create_job_once(engine, "defect_detector", "drift", "line-1:blur:f-1").job_id
    held = create_scheduled_jobs(engine, {"defect_detector": 6, "part_detector": 6}, now=T0)
    by_model = {s.model: s for s in held}
    held_back = by_model["defect_detector"]
    assert held_back.job_id is None and not held_back.created
    assert f"job {drift} for defect_detector is already queued" in held_back.reason
    assert by_model["part_detector"].created  # other models are not held back
    advance_job(engine, drift, "building_dataset", "x")
    advance_job(engine, drift, "failed", "x")
    later = create_scheduled_jobs(engine, {"defect_detector": 6}, now=T0 + 3600)
    assert later[0].created and later[0].ref.endswith("@2024-05-01T00:00:00+00:00")


def test_jobs_list_shows_the_schedule_trigger(engine, tmp_path: Path, monkeypatch) -> None:
    from visionline.retrain.cli import app

    create_scheduled_jobs(engine, {"part_anomaly": 12}, now=T0 + 13 * 3600)
    monkeypatch.setenv("VISIONLINE_DATABASE_URL", str(engine.url))
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    assert "schedule part_anomaly@2024-05-01T12:00:00+00:00" in result.output
