"""The window between the broker's ack and the outbox mark, on the real stack's broker and
PostgreSQL: a rules worker that sent alerts and died before marking them published has its batch
redelivered; the alerts are found on the alerts topic and only marked, so each is on the topic
once. An alert stored but never sent goes out once."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from services.rules.handlers import RulesHandlers
from services.rules.logic import object_alert
from services.rules.store import record_object_alerts
from tests.factories import model_ref
from visionline.kafka import producer, topic_consumer
from visionline.messages import ObjectEvent, Topic, keyed_by_camera
from visionline.replay import topic_lookup

pytestmark = pytest.mark.integration


def events(camera: str, count: int) -> list[tuple[None, ObjectEvent]]:
    now = time.time()
    return [
        (
            None,
            ObjectEvent(
                event_id=f"{camera}:1:zone:{k}",
                camera_id=camera,
                frame_id=f"f{k}",
                captured_at=now,
                rule="zone",
                kind="seen",
                severity="warning",
                track_id=k,
                class_name="person",
                box=(1.0, 2.0, 30.0, 40.0),
                score=0.9,
                detail={},
                model=model_ref("detector"),
            ),
        )
        for k in range(count)
    ]


def published(engine, ids: list[str]) -> dict[str, bool]:
    from sqlalchemy import text

    query = text("SELECT alert_id, published FROM alerts WHERE alert_id = ANY(:ids)")
    with engine.connect() as conn:
        return {alert_id: flag for alert_id, flag in conn.execute(query, {"ids": ids}).all()}


def on_alerts_topic(bootstrap: str, ids: set[str]) -> list[str]:
    """Every occurrence of ``ids`` on the alerts topic, read from its beginning."""
    import json

    consumer = topic_consumer(bootstrap, Topic.ALERTS, from_beginning=True)
    found, quiet_until = [], time.monotonic() + 5
    try:
        while time.monotonic() < quiet_until:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            try:  # the API tests publish garbage on the alerts topic: step over it
                alert_id = json.loads(message.value()).get("alert_id")
            except (ValueError, AttributeError):
                continue
            if alert_id in ids:
                found.append(alert_id)
                quiet_until = time.monotonic() + 5
    finally:
        consumer.close()
    return found


def test_a_batch_redelivered_after_a_crash_past_the_ack_puts_each_alert_on_the_topic_once(
    bootstrap, engine
) -> None:
    camera = f"outbox-{uuid.uuid4().hex[:8]}"
    send_to = producer(bootstrap)

    async def send(messages) -> None:
        for key, value in messages:
            send_to.produce(str(Topic.ALERTS), value, key)
        assert send_to.flush(30) == 0  # acked by the broker

    handlers = RulesHandlers(
        engine, None, None, send, None, topic_lookup(bootstrap, str(Topic.ALERTS), "alert_id")
    )
    batch = events(camera, 3)
    ids = [e.event_id for _, e in batch]

    # Attempt 1: stored, the first two sent and acked, then the worker died before the mark.
    unpublished = record_object_alerts(engine, [object_alert(e) for _, e in batch])
    assert unpublished.ids == set(ids) and unpublished.retried == set()
    first_two = [object_alert(e) for _, e in batch[:2]]
    asyncio.run(send(keyed_by_camera(first_two)))
    assert published(engine, ids) == dict.fromkeys(ids, False)

    # The batch is redelivered (nothing was committed): the real handler runs it again.
    asyncio.run(handlers.record_object_events(batch))
    assert published(engine, ids) == dict.fromkeys(ids, True)
    assert sorted(on_alerts_topic(bootstrap, set(ids))) == sorted(ids)  # once each

    # And once more (a second crash after the mark, before the commit): nothing new is sent.
    asyncio.run(handlers.record_object_events(batch))
    assert sorted(on_alerts_topic(bootstrap, set(ids))) == sorted(ids)
