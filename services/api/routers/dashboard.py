"""The operator dashboard (one static page that talks to this API) and the per-minute figures
its charts draw: frames, parts, alerts and capture-to-result latency."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel
from sqlalchemy import Engine, text

from services.api import deps
from services.api.auth import Viewer

STATIC = Path(__file__).resolve().parent.parent / "static"
NONE = "'none'"
router = APIRouter()


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard")


@router.get("/dashboard", include_in_schema=False)
def dashboard() -> FileResponse:
    """The page itself needs no token: it asks for one and sends it with every request."""
    page = STATIC / "dashboard.html"
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy": page_csp(page)}
    return FileResponse(page, headers=headers)


@cache
def page_csp(page: Path) -> str:
    """The strictest policy the page works under: its own inline script and style block only
    (by their SHA-256, so no other inline code runs), images from the API or blob URLs (the
    snapshots, fetched with the token), requests to the API only, never framed."""
    html = page.read_text(encoding="utf-8")
    scripts = [_sha256(s) for s in re.findall(r"<script>(.*?)</script>", html, re.S)]
    styles = [_sha256(s) for s in re.findall(r"<style>(.*?)</style>", html, re.S)]
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(scripts) or NONE}",
            f"style-src {' '.join(styles) or NONE}",
            "img-src 'self' blob:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def _sha256(inline: str) -> str:
    digest = hashlib.sha256(inline.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


class MinuteStats(BaseModel):
    minute: datetime
    frames: int  # classified frames stored (classifier cameras)
    parts: int  # parts decided (inspection cameras)
    alerts: int
    latency_p50_ms: float | None  # capture to stored result, frames and parts together
    latency_p95_ms: float | None


class Stats(BaseModel):
    since: datetime
    minutes: list[MinuteStats]


# Capture-to-result latency of classified frames (stored) and decided parts (decided).
_RESULTS = """
SELECT date_trunc('minute', done) AS minute, count(*) FILTER (WHERE kind = 'frame') AS frames,
       count(*) FILTER (WHERE kind = 'part') AS parts,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency) AS p95
FROM (SELECT 'frame' AS kind, created_at AS done,
             1000 * extract(epoch FROM created_at - captured_at) AS latency
      FROM predictions WHERE created_at >= :since
      UNION ALL
      SELECT 'part', decided_at, 1000 * extract(epoch FROM decided_at - captured_at)
      FROM part_decisions WHERE decided_at >= :since) AS results
GROUP BY 1
"""
_ALERTS = """
SELECT date_trunc('minute', created_at) AS minute, count(*) AS alerts
FROM alerts WHERE created_at >= :since GROUP BY 1
"""


def minute_stats(engine: Engine, minutes: int, now: datetime | None = None) -> Stats:
    """The last ``minutes`` whole minutes and the current one, oldest first, zeros included."""
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    since = now - timedelta(minutes=minutes)
    with engine.connect() as connection:
        results = {r.minute: r for r in connection.execute(text(_RESULTS), {"since": since})}
        alerts = {r.minute: r.alerts for r in connection.execute(text(_ALERTS), {"since": since})}
    rows = []
    for i in range(minutes + 1):
        minute = since + timedelta(minutes=i)
        r = results.get(minute)
        rows.append(
            MinuteStats(
                minute=minute,
                frames=r.frames if r else 0,
                parts=r.parts if r else 0,
                alerts=alerts.get(minute, 0),
                latency_p50_ms=_round(r.p50) if r else None,
                latency_p95_ms=_round(r.p95) if r else None,
            )
        )
    return Stats(since=since, minutes=rows)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


@router.get("/v1/stats", tags=["dashboard"])
def stats(
    engine: deps.Engine, _: Viewer, minutes: Annotated[int, Query(ge=1, le=1440)] = 30
) -> Stats:
    """Per minute: frames classified, parts decided, alerts, latency (p50, p95)."""
    return minute_stats(engine, minutes)
