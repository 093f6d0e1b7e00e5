"""Topic readers (``visionline.kafka.reader``, ``assign_all``): by assignment, never committing."""

from __future__ import annotations

from types import SimpleNamespace

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

from visionline import kafka


class FakeConsumer:
    """What ``assign_all`` asks of a consumer: topic metadata, watermarks, ``assign``."""

    def __init__(self, partitions: dict[str, int], highs: dict[tuple[str, int], int]) -> None:
        self.partitions, self.highs = partitions, highs
        self.assigned: list[tuple[str, int, int]] = []

    def list_topics(self, name: str, timeout: float):
        found = {p: None for p in range(self.partitions[name])}
        return SimpleNamespace(topics={name: SimpleNamespace(partitions=found)})

    def get_watermark_offsets(self, tp, timeout: float) -> tuple[int, int]:
        return 0, self.highs[(tp.topic, tp.partition)]

    def assign(self, assignment) -> None:
        self.assigned = [(tp.topic, tp.partition, tp.offset) for tp in assignment]


def test_assign_all_takes_every_partition_of_every_topic_from_one_offset():
    consumer = FakeConsumer({"a": 2, "b": 1}, {})
    kafka.assign_all(consumer, ["a", "b"], OFFSET_BEGINNING)
    start = OFFSET_BEGINNING
    assert consumer.assigned == [("a", 0, start), ("a", 1, start), ("b", 0, start)]


def test_assign_all_takes_one_topic_by_name_and_a_start_per_partition():
    consumer = FakeConsumer({"alerts": 2}, {("alerts", 0): 7, ("alerts", 1): 3})
    kafka.assign_all(consumer, "alerts", kafka.high_watermark)
    assert consumer.assigned == [("alerts", 0, 7), ("alerts", 1, 3)]


def test_a_reader_commits_nothing_and_keeps_the_callers_settings(monkeypatch):
    made = []
    monkeypatch.setattr(kafka, "Consumer", lambda config: made.append(config) or config)
    kafka.reader("broker:9092", group="g", **{"enable.partition.eof": True})
    (config,) = made
    assert config["bootstrap.servers"] == "broker:9092" and config["group.id"] == "g"
    assert config["enable.auto.commit"] is False
    assert config["enable.partition.eof"] is True


def test_topic_consumer_reads_from_the_end_unless_asked_for_the_beginning(monkeypatch):
    fake = FakeConsumer({"t": 1}, {})
    monkeypatch.setattr(kafka, "Consumer", lambda config: fake)
    kafka.topic_consumer("broker:9092", "t", from_beginning=False)
    assert fake.assigned == [("t", 0, OFFSET_END)]
    kafka.topic_consumer("broker:9092", "t", from_beginning=True)
    assert fake.assigned == [("t", 0, OFFSET_BEGINNING)]
