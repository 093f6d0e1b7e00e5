"""Reading a camera's recent frames back from Kafka, by time window (retraining, shadow
evaluation).

``replay_frames`` finds, on every partition of the topic, the first offset whose Kafka
timestamp is at or after ``start_ms`` (``Consumer.offsets_for_times``) and reads from there until
a message's timestamp is past ``end_ms`` or the partition's end as it was when the replay began
(its high watermark then). Frames of other cameras are skipped. It never commits: a fresh group
id, never joined (partitions are assigned), auto-commit off, so no worker's group is disturbed.
``replay_span`` gives the offsets a replay covers, for a job to record.

Timestamps are checked here too: a producer sets its records' timestamps (CreateTime), so one
older than ``start_ms`` may follow the offset the time lookup found.

Frames are in the camera wire format (``visionline.messages``): key = camera id, value = the
image, headers frame-id / captured-at / content-type, read as ingest reads them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass
from typing import cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from visionline.frame_headers import auto_frame_id, frame_id_of, header_text, parse_captured_at
from visionline.imaging import FrameRejected, sniff_content_type
from visionline.kafka import reader
from visionline.messages import HEADER_CAPTURED_AT, HEADER_CONTENT_TYPE, SourceRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayedFrame:
    camera_id: str
    frame_id: str
    captured_at: float  # epoch seconds: the captured-at header, else the Kafka timestamp
    content_type: str  # the header, else sniffed from the bytes ("" when neither tells)
    data: bytes
    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # the Kafka message timestamp


@dataclass(frozen=True)
class _Range:
    """What is to be read of one partition: ``[start, end)`` offsets, ``end`` its high
    watermark as the replay begins."""

    topic: str
    partition: int
    start: int
    end: int


def replay_frames(
    bootstrap: str,
    topic: str,
    camera_id: str | Collection[str],
    start_ms: int,
    end_ms: int,
    timeout_s: float = 30.0,
) -> Iterator[ReplayedFrame]:
    """``camera_id``'s frames (or those of several cameras, in one pass) of ``topic`` with Kafka
    timestamps in ``[start_ms, end_ms]``, in offset order per partition (partitions
    interleaved). Raises TimeoutError when the broker
    gives nothing for ``timeout_s`` before the window is read (however long the caller takes
    over each frame); an unknown topic is a LookupError."""
    cameras = [camera_id] if isinstance(camera_id, str) else list(camera_id)
    keys = {c.encode() for c in cameras}
    for message in replay_messages(bootstrap, topic, start_ms, end_ms, timeout_s):
        key = message.key()
        if key in keys:
            yield _frame(message, cast(bytes, key).decode())


def replay_messages(
    bootstrap: str, topic: str, start_ms: int, end_ms: int, timeout_s: float = 30.0
) -> Iterator[Message]:
    """The messages of ``topic`` with Kafka timestamps in ``[start_ms, end_ms]`` up to each
    partition's end as the replay begins, in offset order per partition (see replay_frames)."""
    deadline = time.monotonic() + timeout_s
    consumer = _consumer(bootstrap)
    try:
        ranges = _ranges(consumer, topic, start_ms, end_ms, deadline)
        if not ranges:
            return
        consumer.assign([TopicPartition(topic, r.partition, r.start) for r in ranges.values()])
        pending = dict(ranges)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"replay of {topic}: nothing from the broker for {timeout_s}"
                    f" s, partitions {sorted(pending)} unfinished"
                )
            batch = consumer.consume(500, min(left, 1.0))
            if batch:
                deadline = time.monotonic() + timeout_s
            for message in batch:
                # An error event may lack a partition (then no part is found); a message has one.
                part = pending.get(cast(int, message.partition()))
                if part is None or not _is_message(message, pending):
                    continue
                offset, stamp = cast(int, message.offset()), message.timestamp()[1]
                if stamp > end_ms or offset >= part.end - 1:
                    del pending[part.partition]
                if stamp <= end_ms and offset < part.end and stamp >= start_ms:
                    yield message
    finally:
        consumer.close()


def json_messages(bootstrap: str, topic: str, since_ms: int) -> Iterator[dict]:
    """The JSON objects on ``topic`` from ``since_ms`` to now; anything else is stepped over
    (topics are public: not every message on them is one of ours)."""
    for message in replay_messages(bootstrap, topic, since_ms, int(time.time() * 1000)):
        try:
            value = json.loads(message.value() or b"")
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def ids_on_topic(
    bootstrap: str, topic: str, id_field: str, ids: Collection[str], since_ms: int
) -> set[str]:
    """Which of ``ids`` the JSON messages of ``topic`` since ``since_ms`` carry in ``id_field``:
    what an outbox must not publish again (a worker died between the broker's ack and marking
    its rows published)."""
    wanted = set(ids)
    return {
        v[id_field] for v in json_messages(bootstrap, topic, since_ms) if v.get(id_field) in wanted
    }


def replay_span(
    bootstrap: str,
    topic: str,
    camera_id: str,
    start_ms: int,
    end_ms: int,
    timeout_s: float = 30.0,
) -> dict[int, tuple[int, int]]:
    """{partition: (first offset, last offset)} of ``camera_id``'s frames in the window, for
    the partitions that hold any (both offsets included)."""
    span: dict[int, tuple[int, int]] = {}
    for frame in replay_frames(bootstrap, topic, camera_id, start_ms, end_ms, timeout_s):
        first, _ = span.get(frame.partition, (frame.offset, frame.offset))
        span[frame.partition] = (min(first, frame.offset), frame.offset)
    return span


def _consumer(bootstrap: str) -> Consumer:
    return reader(
        bootstrap,
        group=f"visionline-replay-{uuid.uuid4().hex}",
        **{
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,  # the end of a partition whose last offsets are gaps
        },
    )


def _ranges(
    consumer: Consumer, topic: str, start_ms: int, end_ms: int, deadline: float
) -> dict[int, _Range]:
    """Per partition with something at or after ``start_ms`` (when the window is not empty):
    the first such offset and the high watermark."""
    metadata = consumer.list_topics(topic, timeout=_left(deadline)).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise LookupError(f"topic {topic}: {metadata.error if metadata else 'unknown'}")
    if end_ms < start_ms:
        return {}
    wanted = [TopicPartition(topic, p, start_ms) for p in sorted(metadata.partitions)]
    found = consumer.offsets_for_times(wanted, timeout=_left(deadline))
    ranges = {}
    for tp in found:
        if tp.error is not None:
            raise KafkaException(tp.error)
        if tp.offset < 0:  # no message at or after start_ms
            continue
        _, high = consumer.get_watermark_offsets(
            TopicPartition(topic, tp.partition), timeout=_left(deadline), cached=False
        )
        if tp.offset < high:
            ranges[tp.partition] = _Range(topic, tp.partition, tp.offset, high)
    return ranges


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("replay: the broker did not answer in time")
    return left


def _is_message(message: Message, pending: dict[int, _Range]) -> bool:
    """True for a message. The end of a partition (it holds nothing newer than what was there
    when the replay began) finishes it; a fatal error raises, a transient one is logged."""
    error = message.error()
    if error is None:
        return True
    if error.code() == KafkaError._PARTITION_EOF:
        pending.pop(cast(int, message.partition()), None)  # the end of a partition names it
    elif error.fatal() or error.code() in (
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
    ):
        raise KafkaException(error)
    else:
        log.warning("replay: %s", error)
    return False


def _frame(message: Message, camera_id: str) -> ReplayedFrame:
    """The frame of a message, its headers read as ingest reads them; a malformed header
    falls back (frame id from the offset, capture time from the Kafka timestamp)."""
    # A consumed message's headers are (name, bytes or None) pairs; only produce takes a dict.
    headers = cast(list[tuple[str, bytes | None]], message.headers() or [])
    data = message.value() or b""
    source = SourceRef(
        topic=message.topic(), partition=message.partition(), offset=message.offset()
    )
    stamp_s = message.timestamp()[1] / 1000
    try:
        frame_id = frame_id_of(headers, source, stamp_s)
    except FrameRejected:
        frame_id = auto_frame_id(source, stamp_s)
    try:
        captured_at = parse_captured_at(header_text(headers, HEADER_CAPTURED_AT), stamp_s)
    except FrameRejected:
        captured_at = stamp_s
    try:
        content_type = header_text(headers, HEADER_CONTENT_TYPE)
    except FrameRejected:
        content_type = None
    return ReplayedFrame(
        camera_id=camera_id,
        frame_id=frame_id,
        captured_at=captured_at,
        content_type=content_type or sniff_content_type(data) or "",
        data=data,
        topic=source.topic,
        partition=source.partition,
        offset=source.offset,
        timestamp_ms=message.timestamp()[1],
    )


SKEW_MS = 60_000  # the clocks of the host that stored a row and the one that sent it may differ


def topic_lookup(
    bootstrap: str, topic: str, id_field: str
) -> Callable[[list[str], float], Awaitable[set[str]]]:
    """``await on_topic(ids, since_s)``: ``ids_on_topic`` off the event loop, from a minute
    before ``since_s`` (what ``visionline.db.outbox.publish_once`` asks before a resend)."""

    async def on_topic(ids: list[str], since_s: float) -> set[str]:
        since_ms = int(since_s * 1000) - SKEW_MS
        return await asyncio.to_thread(ids_on_topic, bootstrap, topic, id_field, ids, since_ms)

    return on_topic
