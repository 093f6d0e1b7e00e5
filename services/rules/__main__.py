"""python -m services.rules: predictions, part verdicts and object events in; alerts to
PostgreSQL and the alerts topic (the handlers and their delivery guarantees:
``services/rules/handlers.py``)."""

from __future__ import annotations

import redis

from services.rules.handlers import Cooldowns, RulesHandlers
from visionline import rulesets
from visionline.db import make_engine
from visionline.messages import ObjectEvent, PartVerdict, Prediction, Topic
from visionline.settings import CommonSettings, RulesSettings
from visionline.worker import Worker, configure_logging


def main() -> None:
    common, settings = CommonSettings(), RulesSettings()
    configure_logging(common, "rules")
    engine = make_engine(common.database_url, pre_ping=False)  # writes retry (Worker.attempt)
    watcher = rulesets.watch(engine, settings.rules_file, settings.refresh_s)
    cooldowns = Cooldowns(redis.Redis.from_url(common.redis_url))
    worker = Worker("rules", common)
    alerts, on_topic = worker.outbox(Topic.ALERTS, "alert_id")
    rules = RulesHandlers(engine, watcher, cooldowns, alerts, worker.reject, on_topic)
    # A crash anywhere in a batch redelivers it (nothing is committed before the outbox is done).
    batches = settings.max_batch, settings.max_wait_ms
    worker.batched(Topic.PREDICTIONS, Prediction, rules.raise_alerts, *batches)
    worker.batched(Topic.PART_DECISIONS, PartVerdict, rules.record_part_verdicts, *batches)
    worker.batched(Topic.OBJECT_EVENTS, ObjectEvent, rules.record_object_events, *batches)
    worker.run()


if __name__ == "__main__":
    main()
