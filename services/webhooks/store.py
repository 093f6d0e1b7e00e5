"""PostgreSQL side of the webhook worker: deliveries queued idempotently, claimed one at a
time with a row lock that is held while the request is in flight."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from services.webhooks.logic import Retry, Subscription, delivery_rows, outcome
from visionline.db.models import WebhookDeliveryRow, WebhookSubscriptionRow
from visionline.messages import Alert


def enabled_subscriptions(engine: Engine) -> list[Subscription]:
    stmt = select(WebhookSubscriptionRow).where(WebhookSubscriptionRow.enabled.is_(True))
    with Session(engine) as session:
        return [Subscription(r.id, r.filter or {}, r.created_at) for r in session.scalars(stmt)]


def enqueue(engine: Engine, alerts: Sequence[Alert]) -> int:
    """Queue the deliveries ``alerts`` make; a replayed alert adds nothing. Rows queued."""
    rows = delivery_rows(enabled_subscriptions(engine), alerts, datetime.now(UTC))
    if not rows:
        return 0
    stmt = insert(WebhookDeliveryRow).values(rows).on_conflict_do_nothing()
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount


@dataclass(frozen=True)
class Due:
    subscription_id: int
    alert_id: str
    url: str
    secret: str
    payload: dict
    attempts: int


@contextmanager
def claim_due(engine: Engine):
    """The oldest due delivery of an enabled subscription, locked (FOR UPDATE SKIP LOCKED: other
    replicas pass it by) until the block ends; yields (Due, record) or None when nothing is due.
    ``record(status, error, retry)`` stores the attempt in the same transaction."""
    d, s = WebhookDeliveryRow, WebhookSubscriptionRow
    stmt = (
        select(d, s.url, s.secret)
        .join(s, s.id == d.subscription_id)
        .where(d.state == "pending", d.next_attempt_at <= datetime.now(UTC), s.enabled.is_(True))
        .order_by(d.next_attempt_at)
        .limit(1)
        .with_for_update(of=d, skip_locked=True)
    )
    with Session(engine) as session, session.begin():
        found = session.execute(stmt).first()
        if found is None:
            yield None
            return
        row, url, secret = found
        due = Due(row.subscription_id, row.alert_id, url, secret, row.payload, row.attempts)
        yield due, _recorder(session, due)


def _recorder(session: Session, due: Due) -> Callable[[int | None, str | None, Retry], None]:
    def record(status: int | None, error: str | None, retry: Retry) -> None:
        changes = outcome(due.attempts, status, error, retry, datetime.now(UTC))
        session.execute(
            update(WebhookDeliveryRow)
            .where(
                WebhookDeliveryRow.subscription_id == due.subscription_id,
                WebhookDeliveryRow.alert_id == due.alert_id,
            )
            .values(changes)
        )

    return record
