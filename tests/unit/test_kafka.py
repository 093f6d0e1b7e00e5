from visionline.kafka import RETENTION_MS, topic_config
from visionline.messages import Topic


def test_every_topic_has_a_retention_and_frames_expire_first():
    assert set(RETENTION_MS) == set(Topic)
    raw = int(topic_config(Topic.RAW_FRAMES)["retention.ms"])
    alerts = int(topic_config(Topic.ALERTS)["retention.ms"])
    assert raw < alerts
    assert topic_config("someone-elses-topic") == {}
