"""The outbox's resend rule (``visionline.db.outbox.publish_once``): rows stored by this attempt
are sent; rows an earlier attempt stored are looked for on the topic first and only marked when
found there, so a crash between the broker's ack and the mark repeats nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from visionline.db.outbox import Unpublished, publish_once, unpublished_of


def at(second: int) -> datetime:
    return datetime.fromtimestamp(1_700_000_000 + second, UTC)


class Topic:
    """A topic that holds ``already`` and records what is sent, asked and marked."""

    def __init__(self, already: set[str]) -> None:
        self.held, self.sent, self.marked = set(already), [], []
        self.asked: list[tuple[list[str], float]] = []

    async def on_topic(self, ids: list[str], since: float) -> set[str]:
        self.asked.append((ids, since))
        return self.held & set(ids)

    async def send(self, batch: list[str]) -> None:
        self.sent += batch
        self.held |= set(batch)

    def mark(self, ids: list[str]) -> None:
        self.marked += ids


def publish(pending: list[str], unpublished: Unpublished, topic: Topic) -> list[str]:
    return asyncio.run(
        publish_once(pending, unpublished, str, topic.on_topic, topic.send, topic.mark)
    )


def test_rows_stored_now_are_sent_without_asking_the_topic() -> None:
    topic = Topic(set())
    stored = unpublished_of([("a", at(1)), ("b", at(2))], new={"a", "b"})
    assert stored.retried == set() and stored.retried_since is None
    assert publish(["a", "b"], stored, topic) == ["a", "b"]
    assert topic.asked == [] and topic.sent == ["a", "b"] and topic.marked == ["a", "b"]


def test_a_row_acked_before_a_crash_is_marked_not_sent_again() -> None:
    topic = Topic({"a"})  # "a" reached the broker; the worker died before marking it
    stored = unpublished_of([("a", at(5)), ("b", at(3)), ("c", at(9))], new={"c"})
    assert stored.retried == {"a", "b"} and stored.retried_since == at(3).timestamp()
    assert publish(["a", "b", "c"], stored, topic) == ["b", "c"]
    assert topic.asked == [(["a", "b"], at(3).timestamp())]
    assert topic.sent == ["b", "c"]  # "b" was stored but never sent: it goes out once
    assert sorted(topic.marked) == ["a", "b", "c"]


def test_the_same_batch_twice_puts_each_row_on_the_topic_once() -> None:
    topic = Topic(set())
    first = unpublished_of([("a", at(1))], new={"a"})
    publish(["a"], first, topic)
    topic.marked.clear()  # the crash: the mark never reached the table
    again = unpublished_of([("a", at(1))], new=set())
    assert publish(["a"], again, topic) == []
    assert topic.sent == ["a"] and topic.marked == ["a"]


def test_nothing_pending_does_nothing() -> None:
    topic = Topic(set())
    assert publish([], Unpublished(), topic) == []
    assert (topic.asked, topic.sent, topic.marked) == ([], [], [])
