"""The rules worker's handlers: predictions and part verdicts in; alerts to PostgreSQL and the
alerts topic.

Predictions, per batch: claim cooldowns in Redis, write predictions and alerts in one
transaction (idempotent on the alert id), publish the alerts not yet published, mark them
published, and only then let Faust commit the offsets. A crash anywhere repeats work, never
loses or doubles: an alert stored by an earlier attempt is looked for on the alerts topic
before it is sent again (``visionline.db.outbox.publish_once``), so a crash between the broker's
ack and the mark does not put it there twice.

Part verdicts (inspection cameras), per batch: write every verdict to ``part_decisions``
(idempotent on the decision id) and, in the same transaction, one alert per rejected part
whose camera's ``inspection:`` entry alerts, only for verdicts inserted just now (a replayed
verdict raises nothing new); then the same outbox steps. No cooldown: one alert per part.

Object events (detect cameras), per batch: one alert each, its id the event's (idempotent,
as the event id repeats on a replay), then the same outbox steps.

Rules: the version in effect in ``rule_sets`` (``infra/rules.yaml`` while there is none),
looked for again at the start of a batch at most every ``VISIONLINE_RULES_REFRESH_S``: a change
through the API applies to the next batches, no restart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from sqlalchemy import Engine

from services.rules.logic import (
    candidate_alerts,
    cooldown_allows,
    cooldown_key,
    frame_id_taken,
    object_alert,
    part_alert,
)
from services.rules.store import mark_published, record, record_object_alerts, record_parts
from visionline.db.outbox import Unpublished, publish_once
from visionline.imaging import FrameRejected
from visionline.messages import Alert, keyed_by_camera
from visionline.rulesets import RulesWatcher


class Cooldowns:
    def __init__(self, redis_client) -> None:
        self.redis = redis_client

    def allows(self, rule, alert: Alert) -> bool:
        if rule.cooldown_s <= 0:
            return True
        key = cooldown_key(alert.camera_id, rule.name, alert.label)
        claimed = bool(self.redis.set(key, alert.alert_id, nx=True, px=int(rule.cooldown_s * 1000)))
        holder = None if claimed else self.redis.get(key)
        return cooldown_allows(claimed, holder.decode() if holder else None, alert.alert_id)


@dataclass
class RulesHandlers:
    engine: Engine
    watcher: RulesWatcher
    cooldowns: Cooldowns
    send_alerts: Callable[[list[tuple[bytes | None, bytes]]], Awaitable[None]]
    reject: Callable[[object, FrameRejected], Awaitable[None]]
    # Which alert ids the alerts topic already holds (since a time): asked before resending an
    # alert an earlier attempt stored, so that a crash after the broker's ack repeats nothing.
    alerts_on_topic: Callable[[list[str], float], Awaitable[set[str]]]

    async def publish(self, alerts: list[Alert], unpublished: Unpublished) -> None:
        await publish_once(
            alerts,
            unpublished,
            lambda a: a.alert_id,
            self.alerts_on_topic,
            lambda batch: self.send_alerts(keyed_by_camera(batch)),
            partial(mark_published, self.engine),
        )

    async def raise_alerts(self, parsed: list[tuple]) -> None:
        predictions = [p for _, p in parsed]
        self.watcher.poll()
        rules = self.watcher.current.rules.rules
        alerts = [
            alert
            for p in predictions
            for rule, alert in candidate_alerts(rules, p)
            if self.cooldowns.allows(rule, alert)
        ]
        pending, clashes = record(self.engine, predictions, alerts)
        await self.publish([a for a in alerts if a.alert_id in pending], pending)
        event_of = {id(p): event for event, p in parsed}
        for clash in clashes:
            await self.reject(event_of[id(clash)], frame_id_taken(clash))

    async def record_part_verdicts(self, parsed: list[tuple]) -> None:
        verdicts = [v for _, v in parsed]
        self.watcher.poll()
        inspection = self.watcher.current.rules.inspection
        alerts = [a for v in verdicts if (a := part_alert(inspection, v)) is not None]
        await self.publish(*record_parts(self.engine, verdicts, alerts))

    async def record_object_events(self, parsed: list[tuple]) -> None:
        """One alert per event (detect cameras), its id the event's: no cooldown, the
        objects worker already raises one event per tracked object and rule."""
        alerts = {e.event_id: object_alert(e) for _, e in parsed}  # a replay may repeat one
        pending = record_object_alerts(self.engine, list(alerts.values()))
        await self.publish([a for a in alerts.values() if a.alert_id in pending], pending)
