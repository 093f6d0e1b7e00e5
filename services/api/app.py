"""The operator API and dashboard: alerts, cameras, rules, models and jobs, drift, labels,
a live alert stream and webhooks (one router per area in ``services.api.routers``).

Everything it knows is in PostgreSQL and on Kafka; it keeps no state of its own, so replicas
can run side by side behind a load balancer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine, text
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from services.api.auth import Viewer
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
from visionline.auth_limits import limiter_for
from visionline.http_headers import SecurityHeaders
from visionline.settings import ApiSettings, CommonSettings

log = logging.getLogger(__name__)
ROUTERS = (alerts, cameras, rules, models, drift, labels, live, webhooks, dashboard)
MAX_ECHOED = 64  # characters of a path parameter an error message may repeat


def create_app(
    common: CommonSettings,
    settings: ApiSettings,
    engine: Engine,
    producer: Any = None,
    alert_feed: Any = None,
) -> FastAPI:
    """The API on ``engine``. ``producer`` (confluent_kafka) publishes what operators post
    (labels, retrain requests); ``alert_feed`` (``services.api.alert_feed.AlertFeed``) fans
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

    # The schema only for token holders (below); no docs pages, which a browser would open
    # without a token and which could then not read the schema.
    app = FastAPI(
        title="visionline operator API",
        version="1",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.common, app.state.settings, app.state.engine = common, settings, engine
    app.state.producer, app.state.alert_feed = producer, alert_feed
    app.state.auth_limiter = limiter_for(common.redis_url, settings.auth_window_s)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)  # the last added is outermost: on every answer
    app.add_exception_handler(Exception, _internal_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    for module in ROUTERS:
        app.include_router(module.router)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_: Viewer) -> JSONResponse:
        """The OpenAPI schema, for any valid token."""
        return JSONResponse(app.openapi())

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
    errors = [
        {
            "loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()
    ]
    return AsciiJSONResponse({"detail": errors}, status_code=422)


def shortened(detail: str, values: Iterable[Any]) -> str:
    """``detail`` with each long string of ``values`` (the request's path parameters) cut to
    ``MAX_ECHOED`` characters: an id sent is repeated in a 404, but not at any length."""
    for value in values:
        if isinstance(value, str) and len(value) > MAX_ECHOED:
            short = f"{value[:MAX_ECHOED]}..."
            detail = detail.replace(repr(value), repr(short)).replace(value, short)
    return detail


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """FastAPI's answer to an HTTPException, less what the message repeats of long ids."""
    if isinstance(exc.detail, str):
        detail = shortened(exc.detail, request.path_params.values())
        exc = HTTPException(exc.status_code, detail, exc.headers)
    return await http_exception_handler(request, exc)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """Unexpected failures answer JSON too; the details go to the log, not to the caller."""
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error"}, status_code=500)
