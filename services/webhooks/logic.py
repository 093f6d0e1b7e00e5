"""The worker's decisions as plain functions: which deliveries an alert makes, and what one
attempt's outcome does to its delivery."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from visionline.messages import Alert, from_json
from visionline.webhooks import backoff_s, coarse_error, matches

log = logging.getLogger("visionline.webhooks")


@dataclass(frozen=True)
class Subscription:
    id: int
    filter: dict
    created_at: datetime


@dataclass(frozen=True)
class Retry:
    """How failed attempts are retried (WebhookSettings)."""

    max_attempts: int
    backoff_s: float
    max_backoff_s: float


def delivery_rows(
    subscriptions: Iterable[Subscription], alerts: Iterable[Alert], now: datetime
) -> list[dict]:
    """One pending delivery per (subscription, alert) the filter matches. A subscription gets
    the alerts raised from its creation on: a new consumer group starting at the topic's
    beginning must not send it the history."""
    subscriptions = list(subscriptions)
    return [
        {
            "subscription_id": s.id,
            "alert_id": a.alert_id,
            "payload": a.model_dump(mode="json"),
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for a in alerts
        for s in subscriptions
        if a.created_at >= s.created_at.timestamp() and matches(s.filter, a)
    ]


def outcome(
    attempts_before: int, status: int | None, error: str | None, retry: Retry, now: datetime
) -> dict:
    """The delivery's new columns after one attempt: ``status`` is the HTTP status (None when
    no answer came), ``error`` why it failed (None on success)."""
    attempts = attempts_before + 1
    changes = {"attempts": attempts, "last_status": status, "updated_at": now}
    if status is not None and 200 <= status < 300:
        return {**changes, "state": "delivered", "delivered_at": now, "last_error": None}
    # Coarse (visionline.webhooks.coarse_error): the API shows it, and the kind of a network
    # failure would tell an admin which internal ports are open.
    changes["last_error"] = coarse_error(error or "failed", status)
    if attempts >= retry.max_attempts:
        return {**changes, "state": "failed"}
    wait = backoff_s(attempts, retry.backoff_s, retry.max_backoff_s)
    return {**changes, "state": "pending", "next_attempt_at": now + timedelta(seconds=wait)}


def parse_alerts(values: list[bytes | None]) -> list[Alert]:
    alerts = []
    for value in values:
        try:
            alerts.append(from_json(value or b"", Alert))
        except ValidationError as exc:  # not ours to repair: skip it, keep the stream going
            log.warning("skipped an unparsable alert: %s", str(exc)[:300])
    return alerts
