"""The dashboard's page and its per-minute figures (``/v1/stats``) on the real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from services.api.routers.dashboard import minute_stats
from visionline.db.models import AlertRow, PartDecisionRow, PredictionRow

pytestmark = pytest.mark.integration

# Far in the past: no other test's rows fall in these minutes.
T0 = datetime(2001, 2, 3, 4, 5, tzinfo=UTC)


def add_rows(engine, camera: str) -> None:
    """Minute 0: two classified frames (100 and 300 ms) and an alert; minute 2: a part decided
    1.5 s after its best frame."""
    with Session(engine) as session, session.begin():
        for i, latency_ms in enumerate((100, 300)):
            captured = T0 + timedelta(seconds=10 * i)
            session.add(
                PredictionRow(
                    camera_id=camera,
                    frame_id=f"f{i}",
                    captured_at=captured,
                    model_name="m",
                    model_version="1",
                    served_by="triton",
                    label="tabby",
                    confidence=0.9,
                    top_k=[],
                    quality={},
                    stages={},
                    created_at=captured + timedelta(milliseconds=latency_ms),
                )
            )
        session.add(
            AlertRow(
                alert_id=f"{camera}:f0:cat",
                camera_id=camera,
                frame_id="f0",
                rule="cat",
                label="tabby",
                confidence=0.9,
                severity="info",
                captured_at=T0,
                created_at=T0 + timedelta(seconds=1),
                model_name="m",
                model_version="1",
            )
        )
        decided = T0 + timedelta(minutes=2, seconds=30)
        session.add(
            PartDecisionRow(
                decision_id=f"{camera}:1",
                camera_id=camera,
                track_id=1,
                status="accepted",
                defective=False,
                defect_class=None,
                score=0.1,
                frames_seen=6,
                defect_frames=0,
                first_frame_id="a",
                last_frame_id="b",
                best_frame_id="c",
                crossed_line=True,
                box=[0, 0, 1, 1],
                defects=[],
                snapshot=None,
                models=[],
                counts={},
                captured_at=decided - timedelta(milliseconds=1500),
                decided_at=decided,
            )
        )


def test_minute_stats_counts_and_latency_per_minute(engine):
    add_rows(engine, f"stats-{uuid.uuid4().hex[:8]}")
    stats = minute_stats(engine, 3, now=T0 + timedelta(minutes=3, seconds=20))
    assert [m.minute for m in stats.minutes] == [T0 + timedelta(minutes=i) for i in range(4)]
    first, empty, parts, last = stats.minutes
    assert (first.frames, first.parts, first.alerts) == (2, 0, 1)
    assert first.latency_p50_ms == pytest.approx(200, abs=1)
    assert first.latency_p95_ms == pytest.approx(290, abs=1)
    assert (empty.frames, empty.parts, empty.alerts, empty.latency_p50_ms) == (0, 0, 0, None)
    assert (parts.frames, parts.parts) == (0, 1) and parts.latency_p50_ms == pytest.approx(1500)
    assert last.frames == last.parts == last.alerts == 0


def test_stats_endpoint_needs_a_token_and_a_sane_window(api_client, as_role):
    assert api_client.get("/v1/stats").status_code == 401
    assert (
        api_client.get("/v1/stats", params={"minutes": 0}, headers=as_role("viewer")).status_code
        == 422
    )
    response = api_client.get("/v1/stats", params={"minutes": 5}, headers=as_role("viewer"))
    assert response.status_code == 200
    minutes = response.json()["minutes"]
    assert len(minutes) == 6 and all(m["frames"] >= 0 and m["alerts"] >= 0 for m in minutes)


def test_the_page_is_served_without_a_token(api_client):
    page = api_client.get("/dashboard")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="alert-feed"' in page.text and "/v1/live/alerts" in page.text
    assert api_client.get("/", follow_redirects=False).headers["location"] == "/dashboard"
