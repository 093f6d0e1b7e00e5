"""Alerts through the operator API on the real stack: filters, paging, snapshots, acknowledge
and resolve. Each test inserts the alerts it needs under camera ids of its own."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np
import pytest
from sqlalchemy.orm import Session

from tests.integration.pipeline import rows
from visionline.db.models import AlertRow
from visionline.inspection.snapshots import SnapshotStore, part_boxes

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def camera() -> str:
    return f"api-alerts-{uuid.uuid4().hex[:8]}"


def add_alert(
    engine,
    camera_id: str,
    frame: str,
    *,
    rule: str = "cat",
    minutes: float = 0,
    severity: str = "warning",
    label: str = "tabby",
    part: dict | None = None,
) -> str:
    """Insert an alert as the rules worker stores it; returns its id."""
    alert_id = f"{camera_id}:{frame}:{rule}"
    at = T0 + timedelta(minutes=minutes)
    with Session(engine) as session, session.begin():
        session.add(
            AlertRow(
                alert_id=alert_id,
                camera_id=camera_id,
                frame_id=frame,
                rule=rule,
                label=label,
                confidence=0.8,
                severity=severity,
                captured_at=at,
                created_at=at,
                model_name="m",
                model_version="1",
                published=True,
                part=part,
            )
        )
    return alert_id


def part(defect_class: str, snapshot: str | None = None) -> dict:
    return {
        "decision_id": "d",
        "track_id": 1,
        "defect_class": defect_class,
        "score": 0.9,
        "box": [0, 0, 10, 10],
        "defects": [],
        "frames_seen": 5,
        "defect_frames": 4,
        "snapshot": snapshot,
        "models": [],
    }


def url(alert_id: str, suffix: str = "") -> str:
    return f"/v1/alerts/{quote(alert_id, safe=':')}{suffix}"


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [a["alert_id"] for a in response.json()["items"]]


def audit_of(engine, alert_id: str) -> list[dict]:
    return rows(
        engine,
        "SELECT actor, action, detail FROM audit_log WHERE target = :t ORDER BY id",
        t=f"alert:{alert_id}",
    )


# --- reading -------------------------------------------------------------------------------


def test_filters_and_newest_first(api_client, engine, as_role) -> None:
    cam, other = camera(), camera()
    a = add_alert(engine, cam, "f-1", minutes=0, severity="info", label="tabby")
    b = add_alert(
        engine,
        cam,
        "f-2",
        minutes=1,
        severity="critical",
        rule="part-defect",
        label="scratch",
        part=part("scratch"),
    )
    c = add_alert(
        engine,
        cam,
        "f-3",
        minutes=2,
        severity="warning",
        label="dent",
        rule="part-defect",
        part=part("dent"),
    )
    add_alert(engine, other, "f-1", minutes=3)
    get = lambda **params: ids(  # noqa: E731
        api_client.get("/v1/alerts", params={"camera_id": cam, **params}, headers=as_role("viewer"))
    )
    assert get() == [c, b, a]
    assert get(severity="critical") == [b]
    assert get(label="dent") == [c]
    assert get(defect_class="scratch") == [b]
    assert get(rule="part-defect") == [c, b]
    assert get(state="open") == [c, b, a] and get(state="resolved") == []
    assert get(since=(T0 + timedelta(minutes=1)).isoformat()) == [c, b]
    assert get(until=(T0 + timedelta(minutes=1)).isoformat()) == [a]
    assert get(since="2026-03-01T12:00:30", until="2026-03-01T12:01:30") == [b]  # naive: UTC
    assert get(since="2026-03-01T12:00:00+16:00") == [c, b, a]  # an offset PostgreSQL refuses
    assert get(camera_id=other) == [f"{other}:f-1:cat"]


def test_pages_follow_the_cursor_across_equal_times(api_client, engine, as_role) -> None:
    cam = camera()
    made = [add_alert(engine, cam, "f-1", rule=r, minutes=0) for r in ("r-a", "r-b", "r-c")]
    made += [add_alert(engine, cam, "f-0", minutes=-1)]
    seen, before = [], None
    while True:
        params = {"camera_id": cam, "limit": 2} | ({"before": before} if before else {})
        response = api_client.get("/v1/alerts", params=params, headers=as_role("viewer"))
        seen += ids(response)
        before = response.json()["next_before"]
        if before is None:
            break
    assert seen == sorted(made[:3], reverse=True) + [made[3]]
    plain = {"camera_id": cam, "before": T0.isoformat()}  # a plain time: strictly before it
    assert ids(api_client.get("/v1/alerts", params=plain, headers=as_role("viewer"))) == [made[3]]


def test_one_alert_with_every_field(api_client, engine, as_role) -> None:
    cam = camera()
    alert_id = add_alert(engine, cam, "frame:7", part=part("scratch"))  # ':' in the frame id
    response = api_client.get(url(alert_id), headers=as_role("viewer"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["alert_id"] == alert_id and body["frame_id"] == "frame:7"
    assert body["model"] == {"name": "m", "version": "1"}
    assert body["part"]["defect_class"] == "scratch"
    assert body["state"] == "open" and body["acknowledged_by"] is None
    assert body["snapshot_url"] is None
    assert datetime.fromisoformat(body["captured_at"]) == T0
    assert api_client.get(url(f"{cam}:nope:cat"), headers=as_role("viewer")).status_code == 404
    assert api_client.get("/v1/alerts/a%00b", headers=as_role("viewer")).status_code == 404


def jpeg() -> bytes:
    return cv2.imencode(".jpg", np.full((20, 30, 3), 90, np.uint8))[1].tobytes()


def test_snapshot(api_client, engine, as_role, api_settings) -> None:
    cam = camera()
    root: Path = api_settings.snapshot_dir
    (root / cam).mkdir(parents=True, exist_ok=True)
    image = jpeg()
    (root / cam / "f-1.jpg").write_bytes(image)
    kept = add_alert(engine, cam, "f-1", part=part("dent", f"snapshot://{cam}/f-1.jpg"))
    response = api_client.get(url(kept), headers=as_role("viewer"))
    assert response.json()["snapshot_url"] == url(kept, "/snapshot").replace(":", "%3A")
    response = api_client.get(response.json()["snapshot_url"], headers=as_role("viewer"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg" and response.content == image
    # A frame kept as the camera sent it (the inspect worker's): its boxes drawn when served.
    ref = SnapshotStore(root).put_frame(f"{cam}/f-5", image, part_boxes((2, 2, 20, 20), True))
    framed = add_alert(engine, cam, "f-5", part=part("dent", ref))
    response = api_client.get(url(framed, "/snapshot"), headers=as_role("viewer"))
    assert response.status_code == 200 and response.content.startswith(b"\xff\xd8")
    assert response.content != image and (root / cam / "f-5.jpg").read_bytes() == image

    (root.parent / "outside.jpg").write_bytes(image)
    escaping = add_alert(engine, cam, "f-2", part=part("dent", "snapshot://../outside.jpg"))
    pruned = add_alert(engine, cam, "f-3", part=part("dent", f"snapshot://{cam}/f-3.jpg"))
    without = add_alert(engine, cam, "f-4")
    for alert_id in (escaping, pruned, without, f"{cam}:unknown:cat"):
        response = api_client.get(url(alert_id, "/snapshot"), headers=as_role("viewer"))
        assert response.status_code == 404, alert_id


# --- acknowledge and resolve ---------------------------------------------------------------


def test_acknowledge_then_resolve(api_client, engine, as_role) -> None:
    alert_id = add_alert(engine, camera(), "f-1")
    ack = api_client.post(
        url(alert_id, "/acknowledge"), json={"comment": "looking"}, headers=as_role("operator")
    )
    assert ack.status_code == 200, ack.text
    first = ack.json()
    assert first["state"] == "acknowledged" and first["acknowledged_by"] == "test-operator"
    assert first["acknowledged_at"] is not None
    again = api_client.post(url(alert_id, "/acknowledge"), headers=as_role("admin"))
    assert again.status_code == 200
    assert again.json()["acknowledged_by"] == "test-operator"  # the repeat changed nothing
    assert again.json()["acknowledged_at"] == first["acknowledged_at"]

    done = api_client.post(
        url(alert_id, "/resolve"), json={"resolution": "false alarm"}, headers=as_role("operator")
    )
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "resolved" and done.json()["resolution"] == "false alarm"
    assert done.json()["resolved_by"] == "test-operator"
    repeat = api_client.post(
        url(alert_id, "/resolve"), json={"resolution": "other"}, headers=as_role("admin")
    )
    assert repeat.status_code == 200 and repeat.json()["resolution"] == "false alarm"
    assert repeat.json()["resolved_at"] == done.json()["resolved_at"]
    late = api_client.post(url(alert_id, "/acknowledge"), headers=as_role("operator"))
    assert late.status_code == 409

    assert audit_of(engine, alert_id) == [
        {"actor": "test-operator", "action": "alert.acknowledge", "detail": {"comment": "looking"}},
        {
            "actor": "test-operator",
            "action": "alert.resolve",
            "detail": {"resolution": "false alarm"},
        },
    ]
    stored = rows(engine, "SELECT state FROM alerts WHERE alert_id = :a", a=alert_id)
    assert stored == [{"state": "resolved"}]
    listed = {"camera_id": alert_id.split(":")[0], "state": "resolved"}
    assert ids(api_client.get("/v1/alerts", params=listed, headers=as_role("viewer"))) == [alert_id]


def test_resolve_straight_from_open(api_client, engine, as_role) -> None:
    alert_id = add_alert(engine, camera(), "f-1")
    done = api_client.post(
        url(alert_id, "/resolve"), json={"resolution": "fixed belt"}, headers=as_role("operator")
    )
    assert done.status_code == 200 and done.json()["state"] == "resolved"
    assert done.json()["acknowledged_by"] is None


def test_unknown_alert_actions_are_404(api_client, as_role) -> None:
    missing = f"{camera()}:f:cat"
    headers = as_role("operator")
    assert api_client.post(url(missing, "/acknowledge"), headers=headers).status_code == 404
    response = api_client.post(url(missing, "/resolve"), json={"resolution": "x"}, headers=headers)
    assert response.status_code == 404


# --- refusals ------------------------------------------------------------------------------


def test_tokens_and_roles(api_client, engine, as_role) -> None:
    alert_id = add_alert(engine, camera(), "f-1")
    reads = ["/v1/alerts", url(alert_id), url(alert_id, "/snapshot")]
    for path in reads:
        assert api_client.get(path).status_code == 401, path
        bad = {"Authorization": "Bearer vl_0000000000000000_" + "x" * 43}
        assert api_client.get(path, headers=bad).status_code == 401, path
    writes = [
        (url(alert_id, "/acknowledge"), None),
        (url(alert_id, "/resolve"), {"resolution": "x"}),
    ]
    for path, body in writes:
        assert api_client.post(path, json=body).status_code == 401, path
        assert api_client.post(path, json=body, headers=as_role("viewer")).status_code == 403
    assert rows(engine, "SELECT state FROM alerts WHERE alert_id = :a", a=alert_id) == [
        {"state": "open"}
    ]


@pytest.mark.parametrize(
    "params",
    [
        {"severity": "loud"},
        {"state": "closed"},
        {"since": "last tuesday"},
        {"until": "2026-02-30T00:00:00Z"},
        {"limit": 0},
        {"limit": 10_000},
        {"before": "not a time"},
        {"camera_id": "a\x00b"},
    ],
)
def test_bad_list_queries_are_422(api_client, as_role, params) -> None:
    response = api_client.get("/v1/alerts", params=params, headers=as_role("viewer"))
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("/resolve", None),
        ("/resolve", {}),
        ("/resolve", {"resolution": ""}),
        ("/resolve", {"resolution": "x" * 2001}),
        ("/resolve", {"resolution": "ok", "extra": 1}),
        ("/resolve", {"resolution": "nul\x00"}),
        ("/acknowledge", {"comment": 5}),
        ("/acknowledge", {"note": "x"}),
        ("/acknowledge", [1]),
    ],
)
def test_bad_bodies_are_422(api_client, engine, as_role, action, body) -> None:
    alert_id = add_alert(engine, camera(), "f-1")
    response = api_client.post(url(alert_id, action), json=body, headers=as_role("operator"))
    assert response.status_code == 422, response.text
    assert audit_of(engine, alert_id) == []
