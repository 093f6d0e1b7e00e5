"""The operator API and dashboard: alerts, cameras, rules, models and jobs, drift, labels,
a live alert stream and webhooks (one router per area in ``services.api.routers``).

Everything it knows is in PostgreSQL and on Kafka; it keeps no state of its own, so replicas
can run side by side behind a load balancer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from starlette.concurrency import run_in_threadpool

from services.api.limits import BodySizeLimit
from services.api.routers import (
    alerts,
    cameras,
    dashboard,
    drift,
    labels,
    live,
    models,
    rules,
    webhooks,
)
from visionline.settings import ApiSettings, CommonSettings

log = logging.getLogger(__name__)
ROUTERS = (alerts, cameras, rules, models, drift, labels, live, webhooks, dashboard)


def create_app(common: CommonSettings, settings: ApiSettings, engine: Engine,
               producer: Any = None, alert_feed: Any = None) -> FastAPI:  # fmt: skip
    """The API on ``engine``. ``producer`` (confluent_kafka) publishes what operators post
    (labels, retrain requests); ``alert_feed`` (``services.api.routers.live.AlertFeed``) fans
    the alerts topic out to live streams. Either may be None where a test needs neither."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if alert_feed is not None:
            alert_feed.start()
        yield
        if alert_feed is not None:
            await run_in_threadpool(alert_feed.stop)
        if producer is not None:
            await run_in_threadpool(producer.flush, 5)

    docs = None if common.is_production else "/docs"
    app = FastAPI(title="visionline operator API", version="1", lifespan=lifespan,
                  docs_url=docs, redoc_url=None)  # fmt: skip
    app.state.common, app.state.settings, app.state.engine = common, settings, engine
    app.state.producer, app.state.alert_feed = producer, alert_feed
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_exception_handler(Exception, _internal_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    for module in ROUTERS:
        app.include_router(module.router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> JSONResponse:
        """200 when PostgreSQL answers, 503 otherwise (no token needed)."""
        try:
            await run_in_threadpool(_ping, engine)
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
            log.warning("health check failed: %s", exc)
            return JSONResponse({"detail": {"database": type(exc).__name__}}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    return app


def _ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


class AsciiJSONResponse(JSONResponse):
    """Escapes everything outside ASCII: a lone surrogate a client sent cannot break it."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with where and what, less the rejected input FastAPI would echo: an input that
    cannot be written back as JSON (1e999, NaN, a lone surrogate) turned the 422 into a 500."""
    errors = [{"loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
               "msg": str(e.get("msg", "")),
               "type": str(e.get("type", ""))} for e in exc.errors()]  # fmt: skip
    return AsciiJSONResponse({"detail": errors}, status_code=422)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """Unexpected failures answer JSON too; the details go to the log, not to the caller."""
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error"}, status_code=500)
