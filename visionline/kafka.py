"""Kafka helpers every process uses: the Faust app factory, topic creation, producers, and
readers that take partitions by assignment and never commit."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from visionline.messages import SourceRef, Topic
from visionline.settings import KAFKA_MAX_MESSAGE_BYTES, CommonSettings

log = logging.getLogger(__name__)


def bound_fetch(max_wait_ms: int, min_bytes: int = 1) -> None:
    """Set how every aiokafka consumer this process creates fetches: it waits at most
    ``max_wait_ms`` on the broker, and for ``min_bytes`` unless that wait runs out.

    Faust builds its consumer with ``fetch_max_wait_ms=1500`` and offers no setting for either,
    so the consumer class is wrapped, once, in the worker process that calls this.
    """
    import aiokafka

    base = aiokafka.AIOKafkaConsumer
    if getattr(base, "visionline_fetch", None) is not None:
        base.visionline_fetch = (max_wait_ms, min_bytes)
        return

    class BoundConsumer(aiokafka.AIOKafkaConsumer):  # base, not yet wrapped
        visionline_fetch = (max_wait_ms, min_bytes)

        def __init__(self, *args, **kwargs):
            cap, least = BoundConsumer.visionline_fetch
            kwargs["fetch_max_wait_ms"] = min(kwargs.get("fetch_max_wait_ms", 500), cap)
            kwargs["fetch_min_bytes"] = least
            super().__init__(*args, **kwargs)

    aiokafka.AIOKafkaConsumer = BoundConsumer


def tolerate_bad_header_names() -> None:
    """Read a record whose header *name* is not UTF-8 instead of failing the whole fetch.

    aiokafka decodes header names strictly while it parses a fetched batch, before any handler
    sees a record: one such record from outside stopped ingest in a restart loop that
    poison-message detection could not break (issue 15). Batches are still parsed by the fast
    reader; only one that fails so is read again with its bad names backslash-escaped (a name no
    one asks for, so the frame goes on as if the header were absent). Installed once per process.
    """
    from aiokafka.consumer import fetcher

    from visionline.kafka_headers import TolerantRecords

    if not getattr(fetcher.MemoryRecords, "visionline_tolerant", False):
        fetcher.MemoryRecords = TolerantRecords


def security_config(common: CommonSettings | None = None) -> dict[str, str]:
    """librdkafka's security settings from ``common`` (``VISIONLINE_KAFKA_SECURITY_PROTOCOL``,
    ``_SASL_MECHANISM``, ``_USERNAME``, ``_PASSWORD``, ``_CA_FILE``); without ``common``, from
    this process's environment, so that every client a process makes authenticates alike.
    Empty for PLAINTEXT."""
    common = CommonSettings() if common is None else common
    protocol = common.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    config: dict[str, str] = {"security.protocol": protocol}
    if protocol.startswith("SASL_"):
        config["sasl.mechanism"] = common.kafka_sasl_mechanism
        config["sasl.username"] = common.kafka_username
        config["sasl.password"] = common.kafka_password.get_secret_value()
    if protocol.endswith("SSL") and common.kafka_ca_file is not None:
        config["ssl.ca.location"] = str(common.kafka_ca_file)
    return config


def faust_credentials(common: CommonSettings):
    """Faust's (aiokafka's) ``broker_credentials`` for ``common``; None for PLAINTEXT."""
    import ssl

    import faust

    protocol = common.kafka_security_protocol
    context = None
    if protocol.endswith("SSL"):
        cafile = str(common.kafka_ca_file) if common.kafka_ca_file else None
        context = ssl.create_default_context(cafile=cafile)
    if protocol.startswith("SASL_"):
        return faust.SASLCredentials(
            username=common.kafka_username,
            password=common.kafka_password.get_secret_value(),
            mechanism=common.kafka_sasl_mechanism,
            ssl_context=context,
        )
    return None if context is None else faust.SSLCredentials(context)


# Every worker's consumer group starts with it (``consumer_group``): the chaos harness finds
# the workers' groups on the broker by it.
CONSUMER_GROUP_PREFIX = "visionline-"


def consumer_group(service: str) -> str:
    """The consumer group of a service's replicas: its Faust app id."""
    return f"{CONSUMER_GROUP_PREFIX}{service}"


def faust_app(service: str, common: CommonSettings, fetch_min_bytes: int = 1, **overrides):
    """A Faust app whose consumer group is ``visionline-<service>``: more processes, more scale.
    ``fetch_min_bytes`` above 1: its consumer reads in batches (``Worker.fetch_min_bytes``)."""
    import faust  # imported here: faust patches asyncio and logging on import

    bound_fetch(common.kafka_fetch_max_wait_ms, fetch_min_bytes)
    tolerate_bad_header_names()
    options: dict[str, Any] = dict(
        broker=f"kafka://{common.kafka_bootstrap}",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=common.topic_partitions,
        topic_allow_declare=False,  # topics are created up front with their partition counts
        broker_session_timeout=common.kafka_session_timeout_s,
        broker_heartbeat_interval=min(1.0, common.kafka_session_timeout_s / 3),
        broker_commit_every=100,
        broker_commit_interval=0.5,
        consumer_auto_offset_reset="earliest",
        store="memory://",
        web_enabled=False,
        producer_linger_ms=1,
        producer_acks=-1,
        # aiokafka's 1 MB defaults refused a 5 MB frame the ingest cap admits (issue 15).
        producer_max_request_size=KAFKA_MAX_MESSAGE_BYTES,
        consumer_max_fetch_size=KAFKA_MAX_MESSAGE_BYTES,
        broker_credentials=faust_credentials(common),
    )
    options.update(overrides)
    return faust.App(consumer_group(service), **options)


def faust_topic(app, topic: Topic):
    return app.topic(str(topic), key_type=bytes, value_type=bytes, value_serializer="raw")


def source_of(event) -> SourceRef:
    """Where a Faust event came from."""
    message = event.message
    return SourceRef(topic=message.topic, partition=message.partition, offset=message.offset)


_HOUR_MS = 3600 * 1000
# Frames and tensors are big and only useful while in flight; what people read is kept longer.
RETENTION_MS = {
    Topic.RAW_FRAMES: _HOUR_MS,
    Topic.VALID_FRAMES: _HOUR_MS,
    Topic.PREPROCESSED: _HOUR_MS,
    Topic.INFERENCE: _HOUR_MS,
    Topic.PREDICTIONS: 7 * 24 * _HOUR_MS,
    Topic.ALERTS: 30 * 24 * _HOUR_MS,
    Topic.INSPECTION_FRAMES: _HOUR_MS,
    Topic.PART_OBSERVATIONS: 7 * 24 * _HOUR_MS,
    Topic.PART_DECISIONS: 30 * 24 * _HOUR_MS,
    Topic.DETECTION_FRAMES: _HOUR_MS,
    Topic.DETECTIONS: 7 * 24 * _HOUR_MS,
    Topic.OBJECT_EVENTS: 30 * 24 * _HOUR_MS,
    Topic.DRIFT_EVENTS: 30 * 24 * _HOUR_MS,
    Topic.RETRAIN_REQUESTS: 30 * 24 * _HOUR_MS,
    Topic.LABELS_FEEDBACK: 30 * 24 * _HOUR_MS,
    Topic.DEAD_LETTER: 14 * 24 * _HOUR_MS,
}


def topic_config(name: str) -> dict[str, str]:
    """Per topic: its retention, and records up to KAFKA_MAX_MESSAGE_BYTES (Apache Kafka's
    default, about 1 MB, would refuse most frames)."""
    config = {"max.message.bytes": str(KAFKA_MAX_MESSAGE_BYTES)}
    retention = RETENTION_MS.get(Topic(name)) if name in set(Topic) else None
    return config | ({"retention.ms": str(retention)} if retention else {})


def admin_client(bootstrap: str, **config: Any) -> AdminClient:
    """An AdminClient with this process's ``security_config``; ``config`` adds or overrides."""
    return AdminClient({"bootstrap.servers": bootstrap, **security_config(), **config})


def create_topics(
    bootstrap: str,
    partitions: int,
    topics: Iterable[str] | None = None,
    timeout: float = 15.0,
    **config: Any,
) -> None:
    """Create the pipeline's topics (idempotent): camera frames need their partitions up front.

    Retention is set per topic. The replication factor is the broker's
    ``default.replication.factor`` (-1): 1 on a single node, 3 on the fault tests' cluster.
    ``config``: librdkafka settings of the admin client (an admin principal's credentials).
    """
    admin = admin_client(bootstrap, **config)
    wanted = [str(t) for t in (topics or Topic)]
    existing = set(admin.list_topics(timeout=timeout).topics)
    new = [
        NewTopic(t, num_partitions=partitions, replication_factor=-1, config=topic_config(t))
        for t in wanted
    ]
    new = [t for t in new if t.topic not in existing]
    if not new:
        return
    for name, future in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
        log.info("created topic %s with %d partitions", name, partitions)


def producer(bootstrap: str, **config) -> Producer:
    """A librdkafka producer that waits for all replicas and keeps a camera's frames in order.

    Idempotent: a send retried after the broker died before its ack (the frame was in its log
    already) is written once, not twice; `visionline chaos` found the second copy dead-lettered
    as a duplicate frame id when the broker was killed."""
    base = {
        "bootstrap.servers": bootstrap,
        **security_config(),
        "acks": "all",
        "enable.idempotence": True,
        "max.in.flight.requests.per.connection": 1,
        "linger.ms": 2,
        "message.max.bytes": KAFKA_MAX_MESSAGE_BYTES,
    }
    base.update(config)
    return Producer(base)


READER_GROUP = "visionline-reader"
# Where assign_all starts a partition: an offset (OFFSET_BEGINNING, OFFSET_END), or a function
# of the consumer, the topic and the partition.
Start = int | Callable[[Consumer, str, int], int]


def reader(bootstrap: str, group: str = READER_GROUP, **config: Any) -> Consumer:
    """A consumer that reads by assignment and commits nothing. Its ``group.id`` is only what
    librdkafka requires: it never joins that group, so reading never disturbs the workers'
    consumer groups. ``config`` adds to or overrides the librdkafka settings."""
    settings = {
        "bootstrap.servers": bootstrap,
        **security_config(),
        "group.id": group,
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 50,  # a read learns a partition's end (EOF) after this wait
    }
    return Consumer(settings | config)


def high_watermark(consumer: Consumer, topic: str, partition: int) -> int:
    """A ``Start``: the partition's high watermark as the broker reports it now."""
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    return high


def assign_all(
    consumer: Consumer, topics: Topic | str | Sequence[Topic | str], start: Start
) -> None:
    """Assign ``consumer`` every partition of ``topics``, each from ``start``."""
    names = [str(topics)] if isinstance(topics, str) else [str(t) for t in topics]
    assignment = []
    for name in names:
        for p in consumer.list_topics(name, timeout=10).topics[name].partitions:
            offset = start(consumer, name, p) if callable(start) else start
            assignment.append(TopicPartition(name, p, offset))
    consumer.assign(assignment)


def topic_consumer(
    bootstrap: str, topics: Topic | str | Sequence[Topic | str], from_beginning: bool
) -> Consumer:
    """A ``reader`` of every partition of the topics, from their beginning or their end."""
    refresh: dict[str, Any] = {"topic.metadata.refresh.interval.ms": 2000}
    consumer = reader(bootstrap, **refresh)
    assign_all(consumer, topics, OFFSET_BEGINNING if from_beginning else OFFSET_END)
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
