"""python -m services.rules: predictions and part verdicts in; alerts to PostgreSQL and the
alerts topic.

Predictions, per batch: claim cooldowns in Redis, write predictions and alerts in one
transaction (idempotent on the alert id), publish the alerts not yet published, mark them
published, and only then let Faust commit the offsets. A crash anywhere repeats work, never
loses or doubles.

Part verdicts (inspection cameras), per batch: write every verdict to ``part_decisions``
(idempotent on the decision id) and, in the same transaction, one alert per rejected part
whose camera's ``inspection:`` entry alerts, only for verdicts inserted just now (a replayed
verdict raises nothing new); then the same outbox steps. No cooldown: one alert per part.

Rules: the version in effect in ``rule_sets`` (``infra/rules.yaml`` while there is none),
looked for again at the start of a batch at most every ``VISIONLINE_RULES_REFRESH_S``: a change
through the API applies to the next batches, no restart.
"""

from __future__ import annotations

import redis

from services.rules.logic import (
    candidate_alerts,
    cooldown_allows,
    cooldown_key,
    frame_id_taken,
    part_alert,
)
from services.rules.store import mark_published, record, record_parts
from visionline import rulesets
from visionline.db import make_engine
from visionline.messages import Alert, PartVerdict, Prediction, Topic, to_json
from visionline.settings import CommonSettings, RulesSettings
from visionline.worker import Worker, configure_logging


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


def main() -> None:
    common, settings = CommonSettings(), RulesSettings()
    configure_logging(common, "rules")
    engine = make_engine(common.database_url)
    watcher = rulesets.watch(engine, settings.rules_file, settings.refresh_s)
    cooldowns = Cooldowns(redis.Redis.from_url(common.redis_url))
    worker = Worker("rules", common)
    alerts_topic = worker.topic(Topic.ALERTS)

    async def publish(alerts: list[Alert]) -> None:
        await worker.send_many(alerts_topic, [(a.camera_id.encode(), to_json(a)) for a in alerts])
        mark_published(engine, [a.alert_id for a in alerts])

    async def raise_alerts(parsed: list[tuple]) -> None:
        predictions = [p for _, p in parsed]
        watcher.poll()
        rules = watcher.current.rules.rules
        alerts = [
            alert
            for p in predictions
            for rule, alert in candidate_alerts(rules, p)
            if cooldowns.allows(rule, alert)
        ]
        pending, clashes = record(engine, predictions, alerts)
        await publish([a for a in alerts if a.alert_id in pending])
        event_of = {id(p): event for event, p in parsed}
        for clash in clashes:
            await worker.reject(event_of[id(clash)], frame_id_taken(clash))

    async def record_part_verdicts(parsed: list[tuple]) -> None:
        verdicts = [v for _, v in parsed]
        watcher.poll()
        inspection = watcher.current.rules.inspection
        alerts = [a for v in verdicts if (a := part_alert(inspection, v)) is not None]
        await publish(record_parts(engine, verdicts, alerts))

    # A crash anywhere in a batch redelivers it (nothing is committed before the outbox is done).
    batches = settings.max_batch, settings.max_wait_ms
    worker.batched(Topic.PREDICTIONS, Prediction, raise_alerts, *batches)
    worker.batched(Topic.PART_DECISIONS, PartVerdict, record_part_verdicts, *batches)

    worker.run()


if __name__ == "__main__":
    main()
