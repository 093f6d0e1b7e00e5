"""Reading alerts back: live from the alerts topic, or stored from PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from visionline.db.models import AlertRow
from visionline.messages import Alert, Topic, from_json


def topic_consumer(
    bootstrap: str, topics: Topic | str | Sequence[Topic | str], from_beginning: bool
) -> Consumer:
    """A consumer assigned every partition of the topics, committing nothing: reading never
    disturbs the workers' consumer groups."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "visionline-reader",  # required by librdkafka; never committed
            "enable.auto.commit": False,
            "topic.metadata.refresh.interval.ms": 2000,
            "fetch.wait.max.ms": 50,  # some brokers hold a fetch until this expires
        }
    )
    names = [str(topics)] if isinstance(topics, str) else [str(t) for t in topics]
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    assignment = []
    for name in names:
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        assignment += [TopicPartition(name, p, start) for p in partitions]
    consumer.assign(assignment)
    return consumer


def read_messages(consumer: Consumer, until: float | None = None, idle_s: float = 1.0):
    """Messages as they arrive; None after each idle ``idle_s`` (so callers can refresh)."""
    while until is None or time.monotonic() < until:
        message = consumer.poll(idle_s)
        yield None if message is None or message.error() else message


def read_topic(consumer: Consumer, until: float | None = None) -> Iterator[bytes | None]:
    """Message values as they arrive; None on each idle second."""
    for message in read_messages(consumer, until):
        yield None if message is None else message.value()


def tail_alerts(bootstrap: str, from_beginning: bool = False, until: float | None = None):
    consumer = topic_consumer(bootstrap, Topic.ALERTS, from_beginning)
    try:
        for value in read_topic(consumer, until):
            yield None if value is None else from_json(value, Alert)
    finally:
        consumer.close()


@dataclass(frozen=True)
class AlertFilter:
    camera_id: str | None = None
    severity: str | None = None
    rule: str | None = None
    limit: int = 50


def list_alerts(engine: Engine, query: AlertFilter) -> list[AlertRow]:
    stmt = select(AlertRow).order_by(AlertRow.captured_at.desc()).limit(query.limit)
    for column, value in (
        (AlertRow.camera_id, query.camera_id),
        (AlertRow.severity, query.severity),
        (AlertRow.rule, query.rule),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    with Session(engine) as session:
        return list(session.scalars(stmt))
