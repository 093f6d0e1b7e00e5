"""Webhook subscriptions (Admin) and their deliveries; the worker that sends them is
``services.webhooks`` and the signature a receiver checks is in ``visionline.webhooks``.

A subscription's secret is shown once: in the answer to the POST that generated it. It is
never listed, and never written to the audit log.

A URL is refused (422) when its host is, or resolves to, an address that is not allowed
(``visionline.webhooks.check_target``: loopback, private, link-local, metadata) unless inside
``WebhookSettings.allowed_networks``, which ``python -m services.api`` hands the app
(``services.api.deps.webhook_networks``; none there: none allowed). The worker checks again at
each connection. Delivery errors are shown coarse.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from services.api import deps
from services.api.auth import Admin
from services.api.params import NO_NUL
from visionline import audit
from visionline.db.models import WebhookDeliveryRow, WebhookSubscriptionRow
from visionline.webhooks import (
    MAX_URL_LENGTH,
    MIN_SECRET_LENGTH,
    TargetRefused,
    check_target,
    check_url,
    coarse_error,
    generate_secret,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

Severity = Literal["info", "warning", "critical"]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL)]
SubscriptionId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Secret = Annotated[str, Field(min_length=MIN_SECRET_LENGTH, max_length=200, pattern=NO_NUL)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookFilter(_Body):
    """Each list given must contain the alert's value; absent or null: any value."""

    camera_ids: list[Name] | None = Field(None, max_length=1000)
    severities: list[Severity] | None = Field(None, max_length=3)
    rules: list[Name] | None = Field(None, max_length=1000)


class WebhookIn(_Body):
    url: str = Field(max_length=MAX_URL_LENGTH, description="http:// or https://")
    secret: Secret | None = Field(None, description="Generated (and returned once) if absent")
    filter: WebhookFilter = Field(default_factory=WebhookFilter)
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_url(value)


class WebhookPatch(_Body):
    """Fields to change; absent ones stay as they are."""

    url: str | None = Field(None, max_length=MAX_URL_LENGTH)
    secret: Secret | None = None
    filter: WebhookFilter | None = None
    enabled: bool | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)


class WebhookOut(BaseModel):
    id: int
    url: str
    enabled: bool
    filter: dict
    created_at: datetime
    created_by: str


class WebhookCreated(WebhookOut):
    secret: str | None = Field(description="The generated secret, shown only now; else null")


class DeliveryOut(BaseModel):
    subscription_id: int
    alert_id: str
    state: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @model_validator(mode="after")
    def _coarse(self) -> DeliveryOut:
        """Rows written before errors were coarse said which network failure it was."""
        self.last_error = coarse_error(self.last_error, self.last_status)
        return self


def _out(row: WebhookSubscriptionRow) -> WebhookOut:
    return WebhookOut(
        id=row.id,
        url=row.url,
        enabled=row.enabled,
        filter=row.filter,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def _filter(f: WebhookFilter) -> dict:
    return f.model_dump(exclude_none=True)


def create_subscription(engine: Engine, body: WebhookIn, actor: str) -> WebhookCreated:
    secret = body.secret or generate_secret()
    row = WebhookSubscriptionRow(
        url=body.url,
        secret=secret,
        enabled=body.enabled,
        filter=_filter(body.filter),
        created_at=datetime.now(UTC),
        created_by=actor,
    )
    with Session(engine) as session, session.begin():
        session.add(row)
        session.flush()
        audit.record(
            session,
            actor,
            "webhook.create",
            f"webhook:{row.id}",
            url=row.url,
            filter=row.filter,
            enabled=row.enabled,
        )
        out = _out(row)
    return WebhookCreated(**out.model_dump(), secret=None if body.secret else secret)


def _get(session: Session, webhook_id: int) -> WebhookSubscriptionRow:
    row = session.get(WebhookSubscriptionRow, webhook_id)
    if row is None:
        raise HTTPException(404, f"no webhook subscription {webhook_id}")
    return row


def update_subscription(
    engine: Engine, webhook_id: int, body: WebhookPatch, actor: str
) -> WebhookOut:
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "filter" in changes:
        changes["filter"] = _filter(body.filter)
    with Session(engine) as session, session.begin():
        row = _get(session, webhook_id)
        for name, value in changes.items():
            setattr(row, name, value)
        detail = {k: v for k, v in changes.items() if k != "secret"}
        audit.record(
            session,
            actor,
            "webhook.update",
            f"webhook:{row.id}",
            **detail,
            secret_changed="secret" in changes,
        )
        return _out(row)


def delete_subscription(engine: Engine, webhook_id: int, actor: str) -> None:
    with Session(engine) as session, session.begin():
        row = _get(session, webhook_id)
        audit.record(session, actor, "webhook.delete", f"webhook:{row.id}", url=row.url)
        session.delete(row)


def list_deliveries(
    engine: Engine, webhook_id: int, state: str | None, limit: int
) -> list[DeliveryOut]:
    d = WebhookDeliveryRow
    stmt = select(d).where(d.subscription_id == webhook_id)
    if state is not None:
        stmt = stmt.where(d.state == state)
    stmt = stmt.order_by(d.created_at.desc(), d.alert_id).limit(limit)
    with Session(engine) as session:
        _get(session, webhook_id)
        return [DeliveryOut.model_validate(r, from_attributes=True) for r in session.scalars(stmt)]


def _check_target(allowed: tuple, url: str | None) -> None:
    """422 when the URL's host is not an allowed webhook target (nothing of its resolution
    said)."""
    if url is None:
        return
    try:
        check_target(url, allowed)
    except TargetRefused as exc:
        error = {"loc": ["body", "url"], "msg": f"Value error, {exc}", "type": "value_error"}
        raise HTTPException(422, [error]) from None


def _page_size(
    settings: deps.Settings, limit: Annotated[int, Query(ge=1, le=100_000)] = deps.DEFAULT_PAGE
) -> int:
    return deps.checked_page(limit, settings)


Limit = Annotated[int, Depends(_page_size)]


@router.post("", status_code=201, response_model=WebhookCreated)
def create(
    engine: deps.Engine, allowed: deps.WebhookNetworks, body: WebhookIn, principal: Admin
) -> WebhookCreated:
    """Subscribe a URL to alerts. Without ``secret`` one is generated and returned once. A URL
    whose host is or resolves to a loopback, private, link-local or metadata address is refused
    (422) unless the deployment allows that network."""
    _check_target(allowed, body.url)
    return create_subscription(engine, body, principal.name)


@router.get("", response_model=list[WebhookOut])
def list_(engine: deps.Engine, _: Admin, limit: Limit) -> list[WebhookOut]:
    """Subscriptions, newest first (secrets are never shown)."""
    stmt = select(WebhookSubscriptionRow).order_by(WebhookSubscriptionRow.id.desc())
    with Session(engine) as session:
        rows = session.scalars(stmt.limit(limit))
        return [_out(r) for r in rows]


@router.get("/{webhook_id}", response_model=WebhookOut)
def get(engine: deps.Engine, webhook_id: SubscriptionId, _: Admin) -> WebhookOut:
    with Session(engine) as session:
        return _out(_get(session, webhook_id))


@router.patch("/{webhook_id}", response_model=WebhookOut)
def patch(
    engine: deps.Engine,
    allowed: deps.WebhookNetworks,
    webhook_id: SubscriptionId,
    body: WebhookPatch,
    principal: Admin,
) -> WebhookOut:
    """Change url, secret, filter or enabled; deliveries already queued keep going. The URL is
    checked as at creation."""
    _check_target(allowed, body.url)
    return update_subscription(engine, webhook_id, body, principal.name)


@router.delete("/{webhook_id}", status_code=204)
def delete(engine: deps.Engine, webhook_id: SubscriptionId, principal: Admin) -> None:
    """Unsubscribe; its deliveries go with it."""
    delete_subscription(engine, webhook_id, principal.name)


@router.get("/{webhook_id}/deliveries", response_model=list[DeliveryOut])
def deliveries(
    engine: deps.Engine,
    webhook_id: SubscriptionId,
    _: Admin,
    limit: Limit,
    state: Literal["pending", "delivered", "failed"] | None = None,
) -> list[DeliveryOut]:
    """The subscription's deliveries, newest first: state, attempts, last status and a coarse
    error (``refused: target not allowed``, ``failed: no response``, ``failed: HTTP 5xx``)."""
    return list_deliveries(engine, webhook_id, state, limit)
