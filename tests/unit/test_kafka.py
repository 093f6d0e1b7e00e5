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
