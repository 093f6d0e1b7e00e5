"""Alerts: stored alerts with filters and paging, their annotated snapshots, and what operators
do with them (acknowledge, resolve: ``open -> acknowledged -> resolved``, audited).

Alert ids hold ``:`` (``<camera>:<frame>:<rule>``, or ``<decision id>:<rule>`` for parts) but
never ``/``, so one path segment carries them; other characters are percent-encoded as usual.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.api.auth import Operator, Viewer
from services.api.deps import Engine, PageSize, Settings
from services.api.params import utc
from visionline import alerts
from visionline.db.models import AlertRow
from visionline.db.rows import fields_of

router = APIRouter(tags=["alerts"])

CURSOR_SEPARATOR = "|"  # alert ids never hold it (camera, frame and rule ids do not)


def storable(value: str | None) -> str | None:
    """Text PostgreSQL can store: no NUL, no lone surrogate (else psycopg fails, a 500)."""
    if value is not None:
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode") from None
    return value


Text = AfterValidator(storable)
Filter = Annotated[str | None, Query(max_length=300), Text]


class ModelOut(BaseModel):
    name: str
    version: str


class AlertOut(BaseModel):
    alert_id: str
    camera_id: str
    frame_id: str
    rule: str
    label: str = Field(description="What was seen; the defect class on part alerts")
    confidence: float
    severity: str
    captured_at: datetime
    created_at: datetime
    model: ModelOut
    part: dict[str, Any] | None = Field(None, description="Tracked-part detail (inspection)")
    object: dict[str, Any] | None = Field(
        None, description="Tracked-object detail (detect cameras): rule kind, track, box, counts"
    )
    state: Literal["open", "acknowledged", "resolved"]
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution: str | None
    snapshot_url: str | None = Field(description="The annotated snapshot (JPEG), if one was kept")


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_before: str | None = Field(
        description="Pass as `before` for the next page; null on the last page"
    )


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: Annotated[str | None, Field(max_length=2000), Text] = None


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Annotated[str, Field(min_length=1, max_length=2000), Text]


def alert_out(row: AlertRow) -> AlertOut:
    has_snapshot = alerts.snapshot_ref(row) is not None
    url = f"/v1/alerts/{quote(row.alert_id, safe='')}/snapshot" if has_snapshot else None
    model = ModelOut(name=row.model_name, version=row.model_version)
    return AlertOut(**fields_of(row, AlertOut, model=model, snapshot_url=url))


def encode_cursor(row: AlertRow) -> str:
    return f"{row.captured_at.isoformat()}{CURSOR_SEPARATOR}{row.alert_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str | None]:
    """``next_before`` of a page (time and alert id), or a plain ISO 8601 time."""
    when, _, alert_id = cursor.partition(CURSOR_SEPARATOR)
    try:
        parsed = utc(datetime.fromisoformat(when))
    except ValueError:
        raise HTTPException(422, "before: an ISO 8601 time or a page's next_before") from None
    return parsed, alert_id or None


@router.get("/v1/alerts", response_model=AlertPage)
def list_alerts(
    engine: Engine,
    _: Viewer,
    limit: PageSize,
    camera_id: Filter = None,
    severity: Literal["info", "warning", "critical"] | None = None,
    label: Filter = None,
    defect_class: Annotated[
        str | None, Query(max_length=300, description="Of the part, on part alerts"), Text
    ] = None,
    rule: Filter = None,
    state: Literal["open", "acknowledged", "resolved"] | None = None,
    since: Annotated[datetime | None, Query(description="captured_at >= since")] = None,
    until: Annotated[datetime | None, Query(description="captured_at < until")] = None,
    before: Annotated[
        str | None,
        Query(max_length=400, description="A page's next_before, or an ISO 8601 time"),
        Text,
    ] = None,
) -> AlertPage:
    """Stored alerts, newest (captured_at) first."""
    before_at, before_id = decode_cursor(before) if before else (None, None)
    query = alerts.AlertFilter(
        camera_id=camera_id,
        severity=severity,
        rule=rule,
        limit=limit,
        label=label,
        defect_class=defect_class,
        state=state,
        since=utc(since),
        until=utc(until),
        before=before_at,
        before_id=before_id,
    )
    rows = alerts.list_alerts(engine, query)
    cursor = encode_cursor(rows[-1]) if len(rows) == limit else None
    return AlertPage(items=[alert_out(r) for r in rows], next_before=cursor)


def _alert(engine: Engine, alert_id: str) -> AlertRow:
    try:
        return alerts.get_alert(engine, storable(alert_id))
    except (alerts.AlertNotFound, ValueError):
        raise HTTPException(404, f"no alert {alert_id!r}") from None


@router.get("/v1/alerts/{alert_id}", response_model=AlertOut)
def get_alert(engine: Engine, alert_id: str, _: Viewer) -> AlertOut:
    return alert_out(_alert(engine, alert_id))


@router.get(
    "/v1/alerts/{alert_id}/snapshot",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "The annotated snapshot"}},
)
def get_snapshot(engine: Engine, settings: Settings, alert_id: str, _: Viewer) -> Response:
    """The frame of the alert with the parts and defects drawn (part alerts); 404 when the
    alert has none or it was pruned (InspectSettings.snapshot_max_age_s)."""
    ref = alerts.snapshot_ref(_alert(engine, alert_id))
    content = alerts.snapshot_image(settings.snapshot_dir, ref) if ref else None
    if content is None:
        raise HTTPException(404, f"alert {alert_id!r} has no stored snapshot")
    return Response(content, media_type="image/jpeg", headers={"Cache-Control": "private"})


def _act(
    engine: Engine, alert_id: str, action: alerts.Action, actor: str, text: str | None
) -> AlertOut:
    try:
        row = alerts.apply_action(engine, storable(alert_id), action, actor, text)
    except (alerts.AlertNotFound, ValueError):
        raise HTTPException(404, f"no alert {alert_id!r}") from None
    except alerts.AlertConflict as exc:
        raise HTTPException(409, str(exc)) from None
    return alert_out(row)


@router.post("/v1/alerts/{alert_id}/acknowledge", response_model=AlertOut)
def acknowledge(
    engine: Engine, alert_id: str, principal: Operator, body: AcknowledgeIn | None = None
) -> AlertOut:
    """open -> acknowledged (409 once resolved); again: no change."""
    comment = body.comment if body else None
    return _act(engine, alert_id, "acknowledge", principal.name, comment)


@router.post("/v1/alerts/{alert_id}/resolve", response_model=AlertOut)
def resolve(engine: Engine, alert_id: str, principal: Operator, body: ResolveIn) -> AlertOut:
    """open or acknowledged -> resolved; again: no change (the first resolution stays)."""
    return _act(engine, alert_id, "resolve", principal.name, body.resolution)
