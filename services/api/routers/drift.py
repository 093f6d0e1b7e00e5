"""Drift: the confirmed drift events (``drift_events``) and each camera's drift now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from services.api.auth import Viewer
from services.api.deps import Engine, PageSize
from services.api.params import NO_NUL, ShortFilter, utc
from visionline.db.models import DriftEventRow
from visionline.drift.store import CameraDrift, camera_drift, get_event, list_events

router = APIRouter(prefix="/v1/drift", tags=["drift"])

DRIFTING_WINDOW_MIN = 30  # default: drifting = a drift confirmed in the last 30 minutes


class DriftEventOut(BaseModel):
    event_id: str = Field(description="camera:signal:confirming frame id")
    camera_id: str
    signal: str
    detector: str
    detector_params: dict[str, Any]
    detected_frame_id: str
    detected_at: datetime = Field(description="Capture time of the frame that raised the alarm")
    frame_id: str = Field(description="The confirming frame")
    captured_at: datetime
    before: dict[str, Any] = Field(description="The reference window's statistics")
    after: dict[str, Any] = Field(description="The drifted window's statistics")
    statistic: float
    p_value: float
    created_at: datetime = Field(description="When the drift was confirmed")

    @classmethod
    def of(cls, row: DriftEventRow) -> DriftEventOut:
        names = cls.model_fields
        return cls(**{name: getattr(row, name) for name in names})


class DriftEventsOut(BaseModel):
    items: list[DriftEventOut]


class CameraDriftOut(BaseModel):
    camera_id: str
    drifting: bool = Field(description="A drift was confirmed within the window")
    drifting_signals: list[str] = Field(description="The signals confirmed within the window")
    last_event_id: str | None
    last_signal: str | None
    last_event_at: datetime | None = Field(description="When the last drift was confirmed")

    @classmethod
    def of(cls, state: CameraDrift) -> CameraDriftOut:
        return cls(
            camera_id=state.camera_id,
            drifting=state.drifting,
            drifting_signals=list(state.recent_signals),
            last_event_id=state.last_event_id,
            last_signal=state.last_signal,
            last_event_at=state.last_event_at,
        )


class DriftStateOut(BaseModel):
    window_minutes: int
    items: list[CameraDriftOut]


@router.get("/events", response_model=DriftEventsOut)
def events(
    engine: Engine,
    _: Viewer,
    limit: PageSize,
    camera_id: ShortFilter = None,
    signal: ShortFilter = None,
    since: Annotated[datetime | None, Query(description="Capture time, ISO 8601 or epoch")] = None,
    until: Annotated[datetime | None, Query(description="Capture time, ISO 8601 or epoch")] = None,
) -> DriftEventsOut:
    """Confirmed drift events, newest first (capture time of the confirming frame)."""
    since, until = utc(since), utc(until)
    if since is not None and until is not None and since > until:
        raise HTTPException(422, "since is after until")
    rows = list_events(engine, camera_id, signal, since, until, limit)
    return DriftEventsOut(items=[DriftEventOut.of(r) for r in rows])


@router.get("/events/{event_id:path}", response_model=DriftEventOut)
def event(
    engine: Engine, event_id: Annotated[str, Path(max_length=300, pattern=NO_NUL)], _: Viewer
) -> DriftEventOut:
    """One event by its id (``camera:signal:frame id``; ':' may be sent as is)."""
    row = get_event(engine, event_id)
    if row is None:
        raise HTTPException(404, f"no drift event {event_id!r}")
    return DriftEventOut.of(row)


@router.get("/state", response_model=DriftStateOut)
def state(
    engine: Engine,
    _: Viewer,
    window_minutes: Annotated[int, Query(ge=1, le=10080)] = DRIFTING_WINDOW_MIN,
) -> DriftStateOut:
    """Each camera (registered, or with events): its last drift event, and whether it is
    drifting now: a drift confirmed within the last ``window_minutes`` (default 30)."""
    since = datetime.now(UTC) - timedelta(minutes=window_minutes)
    cameras = camera_drift(engine, since)
    return DriftStateOut(
        window_minutes=window_minutes, items=[CameraDriftOut.of(c) for c in cameras]
    )
