import pytest

from visionline.kafka import RETENTION_MS, topic_config
from visionline.messages import Topic


def test_every_topic_has_a_retention_and_frames_expire_first():
    assert set(RETENTION_MS) == set(Topic)
    raw = int(topic_config(Topic.RAW_FRAMES)["retention.ms"])
    alerts = int(topic_config(Topic.ALERTS)["retention.ms"])
    assert raw < alerts
    assert topic_config("someone-elses-topic") == {"max.message.bytes": str(16 << 20)}


def test_every_limit_on_a_frame_s_way_admits_a_frame_at_the_ingest_cap():
    from visionline.settings import ENVELOPE_ROOM_BYTES, KAFKA_MAX_MESSAGE_BYTES, IngestSettings

    cap = IngestSettings().max_bytes
    assert cap + ENVELOPE_ROOM_BYTES <= KAFKA_MAX_MESSAGE_BYTES
    for topic in Topic:
        assert int(topic_config(topic)["max.message.bytes"]) == KAFKA_MAX_MESSAGE_BYTES
    with pytest.raises(ValueError, match="max_bytes"):
        IngestSettings(max_bytes=KAFKA_MAX_MESSAGE_BYTES)


def _batch(headers: list[tuple[str, bytes]]) -> bytes:
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 20)
    builder.append(0, 1_700_000_000_000, b"cam-1", b"\xff\xd8frame-0", headers=headers)
    builder.append(1, 1_700_000_000_001, b"cam-1", b"\xff\xd8frame-1", headers=[])
    return bytes(builder.build())


def _read(data: bytes) -> list[tuple[bytes, list]]:
    from aiokafka.consumer import fetcher

    from visionline.kafka import tolerate_bad_header_names

    tolerate_bad_header_names()
    records = fetcher.MemoryRecords(data)
    out = []
    while records.has_next():
        out += [(r.value, list(r.headers)) for r in records.next_batch()]
    return out


def test_a_header_name_that_is_not_utf8_does_not_fail_the_fetch():
    from aiokafka.record.memory_records import MemoryRecords

    good = _batch([("x-ok", b"1"), ("frame-id", b"f-0")])
    # The same batch with the first header's name made invalid UTF-8 (same length).
    bad = good.replace(b"x-ok", b"x-\xff\xfe")
    with pytest.raises(UnicodeDecodeError):  # what aiokafka alone does with it
        list(MemoryRecords(bad).next_batch())
    assert _read(good) == [
        (b"\xff\xd8frame-0", [("x-ok", b"1"), ("frame-id", b"f-0")]),
        (b"\xff\xd8frame-1", []),
    ]
    assert _read(bad) == [
        (b"\xff\xd8frame-0", [("x-\\xff\\xfe", b"1"), ("frame-id", b"f-0")]),
        (b"\xff\xd8frame-1", []),
    ]


def test_a_worker_off_the_decision_path_fetches_in_batches(monkeypatch):
    import asyncio

    import aiokafka

    from visionline.kafka import bound_fetch
    from visionline.settings import DriftSettings, LabelsSettings

    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", aiokafka.AIOKafkaConsumer)  # restored

    async def fetch_of(**kwargs) -> tuple[int, int]:
        consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", **kwargs)
        return consumer._fetch_max_wait_ms, consumer._fetch_min_bytes

    bound_fetch(500)
    assert asyncio.run(fetch_of(fetch_max_wait_ms=1500)) == (500, 1)  # Faust's 1500 capped
    bound_fetch(500, LabelsSettings().fetch_min_bytes)  # a second call rebinds, never rewraps
    assert asyncio.run(fetch_of()) == (500, 64 * 1024)
    assert DriftSettings().fetch_min_bytes == LabelsSettings().fetch_min_bytes > 1
