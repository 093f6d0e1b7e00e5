"""What routers take from the app, as FastAPI dependencies: ``create_app`` puts it on
``app.state`` once and routers declare what they use (``engine: Engine``), so a signature says
what a route needs and this module is the one place that reads ``app.state``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import redis
import sqlalchemy
from fastapi import Depends, HTTPException, Query, Request

from visionline.auth_limits import FailureLimiter
from visionline.settings import ApiSettings, CommonSettings

if TYPE_CHECKING:
    from services.api.alert_feed import AlertFeed

DEFAULT_PAGE = 50  # items a list request returns when it names no limit


def engine(request: Request) -> sqlalchemy.Engine:
    return request.app.state.engine


def api_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


def common_settings(request: Request) -> CommonSettings:
    return request.app.state.common


def producer(request: Request) -> Any:
    """The confluent_kafka producer, or None where the app was made without one."""
    return request.app.state.producer


def alert_feed(request: Request) -> AlertFeed | None:
    return request.app.state.alert_feed


def auth_limiter(request: Request) -> FailureLimiter:
    return request.app.state.auth_limiter


def webhook_networks(request: Request) -> tuple:
    """The private networks webhook targets may be in, as ``python -m services.api`` sets them
    (none set: none allowed)."""
    return getattr(request.app.state, "webhook_allowed_networks", ())


def redis_client(request: Request) -> redis.Redis:
    """One client (and connection pool) per app, made on first use."""
    state = request.app.state
    client = getattr(state, "redis", None)
    if client is None:
        client = redis.Redis.from_url(
            state.common.redis_url, socket_timeout=2, socket_connect_timeout=2
        )
        state.redis = client
    return client


Engine = Annotated[sqlalchemy.Engine, Depends(engine)]
Settings = Annotated[ApiSettings, Depends(api_settings)]
Common = Annotated[CommonSettings, Depends(common_settings)]
Producer = Annotated[Any, Depends(producer)]
Feed = Annotated[Any, Depends(alert_feed)]  # an AlertFeed, or None
AuthLimiter = Annotated[FailureLimiter, Depends(auth_limiter)]
WebhookNetworks = Annotated[tuple, Depends(webhook_networks)]
Redis = Annotated[redis.Redis, Depends(redis_client)]


def checked_page(limit: int, settings: ApiSettings) -> int:
    """``limit``, or 422 when it is over the API's ``max_page``."""
    if limit > settings.max_page:
        raise HTTPException(422, f"limit must be at most {settings.max_page}")
    return limit


def page_size(settings: Settings, limit: Annotated[int, Query(ge=1)] = DEFAULT_PAGE) -> int:
    """The ``limit`` query parameter, checked against ``max_page``. Declare ``PageSize`` after
    the principal: a caller without a token gets 401, not 422."""
    return checked_page(limit, settings)


PageSize = Annotated[int, Depends(page_size)]
