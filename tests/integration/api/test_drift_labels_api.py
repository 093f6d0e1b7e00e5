"""Drift events and labels through the operator API, on the session's real stack.

Drift events are written to ``drift_events`` as the drift service does (``record_events``), for
cameras of this test's own, and removed after. Labels are posted through the API and stored by
the stack's labels worker; the cameras they name are registered for the test and removed after.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete
from sqlalchemy.orm import Session

from services.api.app import create_app
from tests.factories import drift_event as make_drift_event
from tests.factories import (
    frame_meta,
    model_ref,
    observed_part,
    part_observations,
    window_stats,
)
from tests.integration.pipeline import free_port, rows, wait_rows
from visionline.camera_registry import CameraSpec, upsert_cameras
from visionline.db.models import (
    Camera,
    DriftEventRow,
    FrameLabelRow,
    LabelOutcomeRow,
    LabelPredictionRow,
)
from visionline.drift.store import record_events
from visionline.kafka import producer
from visionline.messages import (
    DriftEvent,
    Topic,
    to_json,
)
from visionline.settings import CommonSettings

pytestmark = pytest.mark.integration
LABEL = "SELECT * FROM frame_labels WHERE camera_id = :camera AND frame_id = :frame"


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def drift_event(
    camera: str, signal: str, frame: str, captured_at: float, created_at: float
) -> DriftEvent:
    stats = window_stats(
        1.0, frames=50, std=0.1, first_captured_at=captured_at, last_captured_at=captured_at
    )
    return make_drift_event(
        camera,
        signal,
        frame,
        detector_params={"delta": 0.002},
        detected_at=captured_at,
        captured_at=captured_at,
        before=stats,
        after=stats,
        p_value=1e-6,
        created_at=created_at,
    )


@pytest.fixture(scope="module")
def drift(engine):
    """Two cameras: ``hot`` with an old brightness drift and a recent blur one, ``cold`` with
    one drift two hours ago."""
    hot, cold, now = _id("api-drift"), _id("api-drift"), time.time()
    events = [
        drift_event(hot, "brightness", "f-1", now - 7200, now - 7200),
        drift_event(hot, "blur", "f-2", now - 60, now - 60),
        drift_event(cold, "contrast", "f-9", now - 7000, now - 7000),
    ]
    record_events(engine, events)
    yield hot, cold, events
    with Session(engine) as session, session.begin():
        session.execute(delete(DriftEventRow).where(DriftEventRow.camera_id.in_([hot, cold])))


# --- drift ---------------------------------------------------------------------------------------


def test_drift_needs_a_token(api_client, drift):
    hot, _, events = drift
    assert api_client.get("/v1/drift/events").status_code == 401
    assert api_client.get(f"/v1/drift/events/{events[0].event_id}").status_code == 401
    bad = {"Authorization": "Bearer nope"}
    assert api_client.get("/v1/drift/state", headers=bad).status_code == 401


def test_drift_events_filtered(api_client, as_role, drift):
    hot, cold, events = drift
    viewer = as_role("viewer")
    found = api_client.get("/v1/drift/events", params={"camera_id": hot}, headers=viewer)
    assert found.status_code == 200, found.text
    newest_first = [events[1].event_id, events[0].event_id]
    assert [e["event_id"] for e in found.json()["items"]] == newest_first
    blur = api_client.get(
        "/v1/drift/events", params={"camera_id": hot, "signal": "blur"}, headers=viewer
    ).json()["items"]
    assert [e["signal"] for e in blur] == ["blur"]
    assert blur[0]["before"]["frames"] == 50 and blur[0]["detector_params"] == {"delta": 0.002}
    recent = datetime.now(UTC) - timedelta(minutes=10)
    params = {"camera_id": hot, "since": recent.isoformat()}
    since = api_client.get("/v1/drift/events", params=params, headers=viewer).json()["items"]
    assert [e["signal"] for e in since] == ["blur"]
    # A time without zone is UTC; epoch seconds work too.
    naive = recent.replace(tzinfo=None).isoformat()
    until = api_client.get(
        "/v1/drift/events", params={"camera_id": hot, "until": naive}, headers=viewer
    ).json()["items"]
    assert [e["signal"] for e in until] == ["brightness"]
    epoch = api_client.get(
        "/v1/drift/events",
        params={"camera_id": hot, "since": int(recent.timestamp())},
        headers=viewer,
    ).json()
    assert [e["signal"] for e in epoch["items"]] == ["blur"]
    one = api_client.get(
        "/v1/drift/events", params={"camera_id": hot, "limit": 1}, headers=viewer
    ).json()["items"]
    assert len(one) == 1
    none = api_client.get(
        "/v1/drift/events", params={"camera_id": "no-such-camera"}, headers=viewer
    )
    assert none.status_code == 200 and none.json()["items"] == []


def test_drift_events_bad_input(api_client, as_role):
    viewer = as_role("viewer")
    later, earlier = "2030-01-01T00:00:00Z", "2020-01-01T00:00:00Z"
    for params in (
        {"limit": 0},
        {"limit": 10**6},
        {"since": "yesterday"},
        {"since": later, "until": earlier},
        {"camera_id": "x" * 65},
        {"signal": "a\x00b"},
    ):
        response = api_client.get("/v1/drift/events", params=params, headers=viewer)
        assert response.status_code == 422, (params, response.text)


def test_one_drift_event_by_id(api_client, as_role, drift):
    _, _, events = drift
    viewer = as_role("viewer")
    event = events[1]
    assert ":" in event.event_id
    found = api_client.get(f"/v1/drift/events/{event.event_id}", headers=viewer)
    assert found.status_code == 200, found.text
    body = found.json()
    assert (body["camera_id"], body["signal"], body["frame_id"]) == (event.camera_id, "blur", "f-2")
    assert body["p_value"] == pytest.approx(1e-6)
    escaped = event.event_id.replace(":", "%3A")
    assert api_client.get(f"/v1/drift/events/{escaped}", headers=viewer).status_code == 200
    missing = api_client.get("/v1/drift/events/nope:blur:f-0", headers=viewer)
    assert missing.status_code == 404 and "nope:blur:f-0" in missing.json()["detail"]


def test_drift_state_per_camera(api_client, as_role, drift):
    hot, cold, events = drift
    viewer = as_role("viewer")
    response = api_client.get("/v1/drift/state", headers=viewer)
    assert response.status_code == 200, response.text
    assert response.json()["window_minutes"] == 30
    cameras = {c["camera_id"]: c for c in response.json()["items"]}
    assert cameras[hot]["drifting"] is True and cameras[hot]["drifting_signals"] == ["blur"]
    last = (cameras[hot]["last_event_id"], cameras[hot]["last_signal"])
    assert last == (events[1].event_id, "blur")
    assert cameras[cold]["drifting"] is False and cameras[cold]["last_signal"] == "contrast"
    # Registered cameras without events are listed too (infra/cameras.yaml's line-1).
    assert "line-1" in cameras and cameras["line-1"]["drifting"] in (True, False)
    wide = api_client.get("/v1/drift/state", params={"window_minutes": 24 * 60}, headers=viewer)
    states = {c["camera_id"]: c for c in wide.json()["items"]}
    assert states[hot]["drifting_signals"] == ["blur", "brightness"]
    assert states[cold]["drifting"] is True
    for bad in (0, 10081, "x"):
        refused = api_client.get("/v1/drift/state", params={"window_minutes": bad}, headers=viewer)
        assert refused.status_code == 422


# --- labels ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cameras(engine):
    """An inspection camera and a classify camera of this test's own."""
    inspect, classify = _id("api-lbl-inspect"), _id("api-lbl-classify")
    upsert_cameras(
        engine,
        [
            CameraSpec(camera_id=inspect, pipeline="inspect", max_fps=200),
            CameraSpec(camera_id=classify, max_fps=200),
        ],
        pepper="dev",
    )
    yield inspect, classify
    ids = [inspect, classify]
    with Session(engine) as session, session.begin():
        for table in (LabelOutcomeRow, LabelPredictionRow, FrameLabelRow):
            session.execute(delete(table).where(table.camera_id.in_(ids)))
        session.execute(delete(Camera).where(Camera.camera_id.in_(ids)))


def part(box, defective: bool, defects=()) -> dict:
    return {
        "part_id": uuid.uuid4().hex[:6],
        "box": list(box),
        "defective": defective,
        "defects": list(defects),
    }


def test_labels_need_a_token_and_the_operator_role(api_client, as_role, cameras):
    inspect, _ = cameras
    body = {"camera_id": inspect, "frame_id": "f-1", "captured_at": time.time(), "parts": []}
    assert api_client.post("/v1/labels", json=body).status_code == 401
    assert api_client.post("/v1/labels", json=body, headers=as_role("viewer")).status_code == 403
    assert api_client.get("/v1/labels/accuracy").status_code == 401


def test_posted_labels_are_stored_by_the_labels_worker(api_client, as_role, engine, cameras):
    inspect, classify = cameras
    operator = as_role("operator")
    scratch = {
        "defect_class": "scratch",
        "box": [10, 10, 20, 20],
        "polygon": [[10, 10], [20, 10], [20, 20]],
    }
    parts = [part((0, 0, 100, 100), True, [scratch]), part((200, 0, 300, 100), False)]
    body = {"camera_id": inspect, "frame_id": "f-1", "captured_at": time.time() - 5, "parts": parts}
    posted = api_client.post("/v1/labels", json=body, headers=operator)
    assert posted.status_code == 202, posted.text
    label_id = posted.json()["label_id"]
    assert posted.json()["source"] == "operator" and label_id.startswith("operator:f-1:")
    (row,) = wait_rows(
        engine, LABEL, lambda f: len(f) == 1, timeout=15, camera=inspect, frame="f-1"
    )
    assert (row["source"], row["label_id"]) == ("operator", label_id)
    parts = row["message"]["parts"]
    assert [p["defective"] for p in parts] == [True, False]
    assert parts[0]["defects"][0]["defect_class"] == "scratch"

    # A newer labelling of the frame replaces the stored one.
    body["parts"] = []
    again = api_client.post("/v1/labels", json=body, headers=as_role("admin"))
    assert again.status_code == 202
    wait_rows(
        engine,
        LABEL,
        lambda f: f and f[0]["label_id"] == again.json()["label_id"],
        timeout=15,
        camera=inspect,
        frame="f-1",
    )

    cls = {"camera_id": classify, "frame_id": "c-1", "captured_at": time.time(), "label": "cat"}
    posted = api_client.post("/v1/labels", json=cls, headers=operator)
    assert posted.status_code == 202, posted.text
    (row,) = wait_rows(
        engine, LABEL, lambda f: len(f) == 1, timeout=15, camera=classify, frame="c-1"
    )
    assert row["message"]["label"] == "cat" and row["message"]["parts"] == []


def test_label_bad_input_and_unknown_camera(api_client, as_role, cameras):
    inspect, classify = cameras
    operator, now = as_role("operator"), time.time()
    base = {"camera_id": inspect, "frame_id": "f-2", "captured_at": now}
    scratch = {"defect_class": "scratch", "box": [0, 0, 1, 1]}
    unknown = api_client.post(
        "/v1/labels", json={**base, "camera_id": "no-such-camera", "parts": []}, headers=operator
    )
    assert unknown.status_code == 404 and "no-such-camera" in unknown.json()["detail"]
    bad_bodies = [
        base,  # neither parts nor label
        {**base, "parts": [], "label": "cat"},  # both
        {**base, "label": "cat"},  # a label for an inspection camera
        {**base, "camera_id": classify, "parts": []},  # parts for a classify camera
        {**base, "parts": [], "extra": 1},
        {**base, "parts": [part((100, 0, 50, 100), True)]},  # inverted box
        {**base, "parts": [part((0, 0, 0, 100), True)]},  # empty box
        {**base, "parts": [{**part((0, 0, 1, 1), False), "part_id": "7"}] * 2},  # ids repeat
        {**base, "parts": [part((0, 0, 1, 1), False, [scratch])]},  # defects, not defective
        {**base, "parts": [{**part((0, 0, 1, 1), False), "visible_fraction": 2}]},
        {**base, "captured_at": -1, "parts": []},
        {**base, "captured_at": 1e300, "parts": []},
        {**base, "frame_id": "", "parts": []},
        {**base, "frame_id": "a\x00b", "parts": []},
        {**base, "frame_id": "x" * 129, "parts": []},
        {**base, "parts": [{**part((0, 0, 1, 1), False), "box": [0, 0, 1]}]},
    ]
    for body in bad_bodies:
        response = api_client.post("/v1/labels", json=body, headers=operator)
        assert response.status_code == 422, (body, response.text)
    nan = api_client.post(
        "/v1/labels",
        headers={**operator, "Content-Type": "application/json"},
        content=f'{{"camera_id": "{inspect}", "frame_id": "f", "captured_at": NaN, "parts": []}}',
    )
    assert nan.status_code == 422


def test_broker_down_is_a_503(stack, engine, api_settings, as_role, cameras):
    inspect, _ = cameras
    down = producer(f"127.0.0.1:{free_port()}", **{"message.timeout.ms": 1500})
    common = CommonSettings(kafka_bootstrap=stack.kafka_bootstrap, database_url=stack.database_url)
    with TestClient(create_app(common, api_settings, engine, down)) as client:
        body = {"camera_id": inspect, "frame_id": "f-down", "captured_at": time.time(), "parts": []}
        response = client.post("/v1/labels", json=body, headers=as_role("operator"))
    assert response.status_code == 503 and "broker" in response.json()["detail"]
    assert rows(engine, LABEL, camera=inspect, frame="f-down") == []


def test_accuracy_of_posted_labels(api_client, as_role, engine, stack, cameras):
    """Observations of a frame, then its labels posted: the outcomes show in the accuracy."""
    inspect, _ = cameras
    frame_id, captured = "acc-1", time.time() - 30
    frame = frame_meta(inspect, frame_id, captured_at=captured)
    found = [observed_part((0, 0, 100, 100), 0.9), observed_part((200, 0, 300, 100), 0.1)]
    obs = part_observations(frame, found, [model_ref("defect_detector", "7")])
    out = producer(stack.kafka_bootstrap)
    out.produce(str(Topic.PART_OBSERVATIONS), to_json(obs), inspect.encode())
    assert out.flush(30) == 0
    wait_rows(
        engine,
        "SELECT 1 FROM label_predictions WHERE prediction_id = :id",
        lambda f: len(f) == 1,
        timeout=60,
        id=f"frame:{inspect}:{frame_id}",
    )
    body = {
        "camera_id": inspect,
        "frame_id": frame_id,
        "captured_at": captured,
        "parts": [part((0, 0, 100, 100), True), part((200, 0, 300, 100), False)],
    }
    assert api_client.post("/v1/labels", json=body, headers=as_role("operator")).status_code == 202

    def mine(response) -> list[dict]:
        return [
            r
            for r in response.json()["accuracy"]
            if (r["model"], r["version"], r["kind"]) == ("defect_detector", "7", "frame_part")
        ]

    viewer = as_role("viewer")
    deadline = time.monotonic() + 30
    while True:
        got = api_client.get("/v1/labels/accuracy", params={"camera_id": inspect}, headers=viewer)
        assert got.status_code == 200, got.text
        if mine(got) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    (row,) = mine(got)
    assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (1, 0, 0, 1)
    assert (row["precision"], row["recall"], row["f1"]) == (1.0, 1.0, 1.0)
    other = api_client.get(
        "/v1/labels/accuracy",
        params={"camera_id": inspect, "model": "part_detector"},
        headers=viewer,
    ).json()
    assert all(r["model"] == "part_detector" for r in other["accuracy"])
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    empty = api_client.get(
        "/v1/labels/accuracy", params={"camera_id": inspect, "since": later}, headers=viewer
    )
    assert empty.json()["accuracy"] == []
    for params in ({"limit": 0}, {"limit": 10**6}, {"since": "soon"}, {"camera_id": "\x00"}):
        assert (
            api_client.get("/v1/labels/accuracy", params=params, headers=viewer).status_code == 422
        )
