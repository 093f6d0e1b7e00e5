"""The live alert stream: ``GET /v1/live/alerts`` as server-sent events, fed by one
``services.api.alert_feed.AlertFeed`` per API process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials

from services.api.alert_feed import AlertFeed
from services.api.auth import TokenGate, bearer, principal_of
from services.api.deps import Feed, Settings
from visionline.messages import Alert
from visionline.tokens import Principal, role_allows

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/live", tags=["live"])


async def live_viewer(
    request: Request,
    checks: TokenGate,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    access_token: Annotated[
        str | None,
        Query(max_length=200, description="The token, for EventSource (it cannot send headers)"),
    ] = None,
) -> Principal:
    """Viewer, by header or, here only, by ``access_token`` query parameter."""
    token = credentials.credentials if credentials else access_token
    principal = await principal_of(request, checks, token)
    if not role_allows(principal.role, "viewer"):
        raise HTTPException(403, f"role {principal.role} may not do this; needs viewer")
    return principal


def event(alert: Alert) -> str:
    # An id with a line break would end the field early: the SSE framing must hold.
    alert_id = "".join(c for c in alert.alert_id if c not in "\r\n\0")
    return f"event: alert\nid: {alert_id}\ndata: {alert.model_dump_json()}\n\n"


def wanted(alert: Alert, camera_id: str | None, severity: str | None) -> bool:
    return (camera_id is None or alert.camera_id == camera_id) and (
        severity is None or alert.severity == severity
    )


async def events(
    feed: AlertFeed, keepalive_s: float, camera_id: str | None, severity: str | None
) -> AsyncIterator[str]:
    subscriber = feed.subscribe()
    try:
        yield ": connected\n\n"  # headers and a first line out at once: the stream is open
        while True:
            try:
                alert = await asyncio.wait_for(subscriber.queue.get(), keepalive_s)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if alert is None:  # the feed stopped: the API is shutting down
                return
            if wanted(alert, camera_id, severity):
                yield event(alert)
    finally:
        feed.unsubscribe(subscriber)


@router.get(
    "/alerts",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Alerts as SSE"}},
)
async def live_alerts(
    feed: Feed,
    settings: Settings,
    _: Annotated[Principal, Depends(live_viewer)],
    camera_id: Annotated[str | None, Query(max_length=200)] = None,
    severity: Literal["info", "warning", "critical"] | None = None,
) -> StreamingResponse:
    """New alerts as they are raised: ``event: alert``, ``id: <alert_id>``, the alert as JSON
    data; a comment line every ``sse_keepalive_s`` keeps proxies from closing an idle stream."""
    if feed is None:
        raise HTTPException(503, "the live alert feed is not running in this process")
    stream = events(feed, settings.sse_keepalive_s, camera_id, severity)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
