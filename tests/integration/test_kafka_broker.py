"""The local stack's broker on Apache Kafka (KRaft, `make kafka`), started by the stack's own
supervisor: `kill -9` of the broker, and it comes back with its topics, the consumer groups'
committed offsets and every message (its log is on disk). Debian's kcat
produces and consumes with the README's command. Three nodes from the same configuration
replicate each partition thrice and take ``acks=all`` writes with one node killed; a partition
leader killed under an idempotent producer's writes, then restarted, loses and doubles nothing.
Timings and memory are printed (``-s``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from visionline.kafka import create_topics, producer, reader
from visionline.messages import Topic
from visionline.stack import LocalStack, free_port_settings
from visionline.stack.kafka_cluster import KafkaCluster

pytestmark = pytest.mark.integration

MESSAGES = 100
COMMITTED = 60  # the group commits this far before the kill
PARTITIONS = 2
COORDINATOR_MOVING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


@pytest.fixture(scope="module")
def kafka_stack() -> Iterator[LocalStack]:
    # Not pytest's tmp_path: its parent is 0700 and PostgreSQL runs as another user under root.
    state_dir = Path(tempfile.mkdtemp(prefix="visionline-kafka-test-"))
    settings = free_port_settings(state_dir, with_workers=False, with_triton=False)
    stack = LocalStack(settings, workers=[], attached=True)
    started = time.monotonic()
    stack.start(timeout=240)
    print(f"\nstack (kafka, postgres, redis) ready in {time.monotonic() - started:.1f} s")
    yield stack
    stack.stop()
    shutil.rmtree(state_dir, ignore_errors=True)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def broker_pid(stack: LocalStack) -> int:
    return stack.pids("broker")[0]


def restarted(stack: LocalStack, old_pid: int) -> bool:
    member = stack.status().members("broker")[0]
    return member.pid not in (None, old_pid) and member.state == "healthy"


def group_consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )


def consume(consumer: Consumer, count: int, timeout: float = 60.0, extra_s: float = 2.0) -> list:
    """``count`` values (or what came within ``timeout``), then whatever comes in ``extra_s``
    more: a message read twice would show."""
    values: list[bytes] = []
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            values.append(message.value())
        if len(values) == count:
            until = min(until, time.monotonic() + extra_s)
    return values


def read_all(bootstrap: str, topic: str) -> list[bytes]:
    """Every value of ``topic`` from its start (by assignment, committing nothing)."""
    consumer = reader(bootstrap, group=f"check-{uuid.uuid4().hex[:6]}")
    try:
        parts = [TopicPartition(topic, p, 0) for p in range(PARTITIONS)]
        consumer.assign(parts)
        return consume(consumer, MESSAGES)
    finally:
        consumer.close()


def produce_and_commit(bootstrap: str, topic: str, group: str) -> list[bytes]:
    """MESSAGES values on ``topic``; ``group`` reads them and commits after COMMITTED of them."""
    values = [f"message-{i:03d}".encode() for i in range(MESSAGES)]
    sender = producer(bootstrap)
    for i, value in enumerate(values):
        sender.produce(topic, value=value, key=str(i % 7).encode())
    assert sender.flush(30) == 0
    consumer = group_consumer(bootstrap, group)
    consumer.subscribe([topic])
    try:
        seen: list[bytes] = []
        while len(seen) < COMMITTED:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            seen.append(message.value())
            consumer.commit(message=message, asynchronous=False)
    finally:
        consumer.close()
    return values


def committed(bootstrap: str, topic: str, group: str, timeout: float = 60.0) -> int:
    """How many of ``topic``'s messages ``group`` committed, over all partitions. Asked again
    while the group's coordinator is not there yet: a restarted broker answers metadata before
    it has loaded ``__consumer_offsets`` (NOT_COORDINATOR), and clients retry as this does."""
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    until = time.monotonic() + timeout
    consumer = group_consumer(bootstrap, group)
    try:
        while True:
            try:
                return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=15))
            except KafkaException as exc:
                if exc.args[0].code() not in COORDINATOR_MOVING or time.monotonic() > until:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()


def kill_and_wait(stack: LocalStack) -> float:
    """SIGKILL the broker; seconds until the supervisor has it healthy again."""
    old = broker_pid(stack)
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    while not restarted(stack, old):
        assert time.monotonic() - killed < 180, "the broker was not restarted within 180 s"
        time.sleep(0.1)
    return time.monotonic() - killed


def test_a_killed_broker_comes_back_with_its_topics_offsets_and_messages(kafka_stack):
    bootstrap = kafka_stack.kafka_bootstrap
    pid = broker_pid(kafka_stack)
    print(f"broker after start: {rss_mb(pid):.0f} MB resident")
    topic, group = f"test-kafka-{uuid.uuid4().hex[:8]}", f"test-group-{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, PARTITIONS, [topic])
    values = produce_and_commit(bootstrap, topic, group)
    assert committed(bootstrap, topic, group) == COMMITTED
    print(f"broker after {MESSAGES} messages: {rss_mb(pid):.0f} MB resident")

    back_s = kill_and_wait(kafka_stack)

    topics = reader(bootstrap).list_topics(timeout=15).topics
    assert {str(t) for t in Topic} | {topic} <= set(topics)
    assert len(topics[topic].partitions) == PARTITIONS
    assert len(topics[str(Topic.RAW_FRAMES)].partitions) == kafka_stack.settings.topic_partitions
    assert committed(bootstrap, topic, group) == COMMITTED
    assert sorted(read_all(bootstrap, topic)) == values
    # The group goes on where it committed: the rest, nothing twice.
    consumer = group_consumer(bootstrap, group)
    consumer.subscribe([topic])
    try:
        rest = consume(consumer, MESSAGES - COMMITTED)
    finally:
        consumer.close()
    assert len(rest) == MESSAGES - COMMITTED and set(rest) <= set(values)
    print(
        f"kill -9: broker healthy again {back_s:.1f} s later, {rss_mb(broker_pid(kafka_stack)):.0f}"
        " MB resident; topics, committed offsets and messages all there"
    )


def test_kcat_produces_and_consumes_with_the_readme_commands(kafka_stack, tmp_path):
    kcat = shutil.which("kcat")
    assert kcat, "Debian's kcat is not installed: `make kcat`"
    bootstrap = kafka_stack.kafka_bootstrap
    frame = tmp_path / "frame.jpg"
    frame.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg \xff\xd9")
    frame_id = f"f-{uuid.uuid4().hex[:8]}"
    topic = str(Topic.RAW_FRAMES)
    captured = str(int(time.time() * 1000))
    # The README's camera example, with this stack's address.
    produce = [kcat, "-P", "-b", bootstrap, "-t", topic, "-k", "dock-door-1"]
    produce += ["-H", f"frame-id={frame_id}", "-H", f"captured-at={captured}", str(frame)]
    subprocess.run(produce, check=True, timeout=60, capture_output=True)
    consume_argv = [kcat, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q"]
    consume_argv += ["-f", "%k|%h|%S\n"]
    done = subprocess.run(consume_argv, check=True, timeout=60, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if f"frame-id={frame_id}" in line]
    assert len(lines) == 1, done.stdout[-2000:]
    key, headers, size = lines[0].split("|")
    assert key == "dock-door-1" and f"captured-at={captured}" in headers
    assert int(size) == frame.stat().st_size


def test_a_restarted_stack_keeps_its_data(kafka_stack):
    """Stopped and started again on the same state folder: the log is not formatted again."""
    bootstrap = kafka_stack.kafka_bootstrap
    topic = f"test-kafka-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, PARTITIONS, [topic])
    values = produce_and_commit(bootstrap, topic, f"test-group-{uuid.uuid4().hex[:6]}")
    kafka_stack.stop()
    started = time.monotonic()
    kafka_stack.start(timeout=240)
    print(f"\nstack started again on its data in {time.monotonic() - started:.1f} s")
    assert sorted(read_all(bootstrap, topic)) == values


@pytest.fixture
def cluster(tmp_path) -> Iterator[KafkaCluster]:
    """Three combined nodes on loopback, from kafka_server's config as the stack's broker, as
    `visionline chaos --cluster` starts them."""
    kafka = KafkaCluster(tmp_path / "kafka")
    try:
        yield kafka.start(timeout_s=180)
    finally:  # their data is thrown away: no need for a controlled shutdown
        for process in kafka.procs.values():
            process.kill()
            process.wait()


def replicated_topic(cluster: KafkaCluster) -> str:
    """A new topic of 3 partitions, once each is on all three nodes."""
    admin = cluster.admin()
    topic = f"test-kafka-{uuid.uuid4().hex[:8]}"
    new = NewTopic(topic, num_partitions=3, replication_factor=-1)  # -1: the brokers' default
    admin.create_topics([new])[topic].result(30)
    until = time.monotonic() + 120
    replicas: list[list[int]] = []
    while len(replicas) < 3:  # every broker learns of the topic from the metadata log
        assert time.monotonic() < until, f"{topic} not in the metadata: {replicas}"
        time.sleep(0.2)
        partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions.values()
        replicas = [sorted(p.replicas) for p in partitions]
    assert replicas == [[1, 2, 3]] * 3
    return topic


def read_partitions(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = reader(bootstrap, log_level=0)
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
        return consume(consumer, count)
    finally:
        consumer.close()


def test_a_three_node_cluster_replicates_thrice_and_takes_writes_with_a_node_killed(cluster):
    topic = replicated_topic(cluster)
    cluster.kill(1)  # SIGKILL node 1: acks=all still needs only min.insync.replicas = 2
    sender = producer(cluster.bootstrap, log_level=0)
    for i in range(30):
        sender.produce(topic, value=f"v{i}".encode())
    assert sender.flush(60) == 0
    values = read_partitions(cluster.bootstrap, topic, 30)
    assert sorted(values) == sorted(f"v{i}".encode() for i in range(30))


def test_the_partition_leader_killed_under_writes_loses_and_doubles_nothing(cluster):
    """kill -9 of partition 0's leader while an idempotent acks=all producer writes, then the
    node restarted on its data: every acked write is there exactly once, the node back in sync."""
    topic = replicated_topic(cluster)
    leader = cluster.leader(topic, 0)
    acked: list[bytes] = []

    def delivered(err, msg) -> None:
        if err is None:
            acked.append(msg.value())

    sender = producer(cluster.bootstrap, log_level=0)
    for i in range(600):
        sender.produce(topic, value=f"v{i}".encode(), on_delivery=delivered)
        sender.poll(0)
        time.sleep(0.005)
        if i == 200:
            cluster.kill(leader)  # mid-stream: batches to it are in flight
        if i == 400:
            cluster.launch(leader)  # on its own log, as the supervisor would
    assert sender.flush(120) == 0
    assert len(acked) == 600  # the producer rode out the election: nothing failed
    assert cluster.leader(topic, 0) != -1
    values = read_partitions(cluster.bootstrap, topic, 600)
    assert len(values) == len(set(values)) == 600  # none lost, none written twice
    until = time.monotonic() + 120
    while not cluster.fully_in_sync(topic):
        assert time.monotonic() < until, f"node {leader} not back in sync"
        time.sleep(1)
