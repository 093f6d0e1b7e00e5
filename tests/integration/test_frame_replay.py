"""visionline.replay against the real broker: one camera's frames of a time window, read back
from Kafka offsets, on a topic of its own."""

from __future__ import annotations

import time
import uuid

import pytest

from visionline.kafka import create_topics, producer
from visionline.messages import HEADER_CAPTURED_AT, HEADER_CONTENT_TYPE, HEADER_FRAME_ID
from visionline.replay import replay_frames, replay_span

pytestmark = pytest.mark.integration

PARTITIONS = 3
FRAMES = 20
STEP_MS = 1000


def fake_jpeg(n: int) -> bytes:
    return b"\xff\xd8\xff\xe0" + n.to_bytes(4, "big") * 8


@pytest.fixture(scope="module")
def published(bootstrap):
    """Frames of cameras A and B, one a second (B half a second after A), A's on partitions 0
    and 1, B's on all three; A's first frame has no headers. Where each one landed."""
    topic = f"test.replay.{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, PARTITIONS, [topic])
    camera_a, camera_b = f"replay-a-{uuid.uuid4().hex[:6]}", f"replay-b-{uuid.uuid4().hex[:6]}"
    base = int(time.time() * 1000) - 120_000
    send = producer(bootstrap)
    landed: dict[str, tuple[int, int]] = {}

    def delivered(frame_id: str):
        def callback(error, message) -> None:
            assert error is None, error
            landed[frame_id] = (message.partition(), message.offset())

        return callback

    for i in range(FRAMES):
        for camera, shift, partition in ((camera_a, 0, i % 2), (camera_b, 500, i % 3)):
            frame_id = f"{camera}-{i}"
            stamp = base + i * STEP_MS + shift
            headers = [
                (HEADER_FRAME_ID, frame_id.encode()),
                (HEADER_CAPTURED_AT, str(stamp - 40).encode()),
                (HEADER_CONTENT_TYPE, b"image/jpeg"),
            ]
            if camera == camera_a and i == 0:
                headers = []
            send.produce(
                topic,
                fake_jpeg(i),
                camera.encode(),
                partition=partition,
                timestamp=stamp,
                headers=headers,
                on_delivery=delivered(frame_id),
            )
            send.poll(0)
    assert send.flush(30) == 0
    return topic, camera_a, camera_b, base, landed


def test_replay_gives_one_cameras_frames_of_the_window(bootstrap, published) -> None:
    topic, camera_a, _, base, landed = published
    start, end = base + 5 * STEP_MS, base + 14 * STEP_MS  # A's frames 5..14, both ends included
    frames = list(replay_frames(bootstrap, topic, camera_a, start, end, timeout_s=30))
    expected = {f"{camera_a}-{i}" for i in range(5, 15)}
    assert sorted(f.frame_id for f in frames) == sorted(expected)
    for frame in frames:
        i = int(frame.frame_id.rsplit("-", 1)[1])
        assert frame.camera_id == camera_a and frame.topic == topic
        assert (frame.partition, frame.offset) == landed[frame.frame_id]
        assert frame.data == fake_jpeg(i) and frame.content_type == "image/jpeg"
        assert frame.timestamp_ms == base + i * STEP_MS
        assert frame.captured_at == pytest.approx((base + i * STEP_MS - 40) / 1000)
    for partition in {f.partition for f in frames}:
        offsets = [f.offset for f in frames if f.partition == partition]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    assert {f.partition for f in frames} == {0, 1}

    span = replay_span(bootstrap, topic, camera_a, start, end)
    assert span == {
        p: (
            min(o for q, o in (landed[i] for i in expected) if q == p),
            max(o for q, o in (landed[i] for i in expected) if q == p),
        )
        for p in (0, 1)
    }


def test_headers_missing_fall_back_to_the_kafka_record(bootstrap, published) -> None:
    topic, camera_a, _, base, landed = published
    (frame,) = replay_frames(bootstrap, topic, camera_a, base, base)
    partition, offset = landed[f"{camera_a}-0"]
    assert (frame.partition, frame.offset) == (partition, offset)
    assert frame.frame_id == f"auto-{partition}-{offset}-{base}"  # as ingest names it
    assert frame.captured_at == base / 1000 and frame.content_type == "image/jpeg"  # sniffed


def test_the_other_camera_is_read_on_every_partition(bootstrap, published) -> None:
    topic, _, camera_b, base, landed = published
    frames = list(replay_frames(bootstrap, topic, camera_b, base, base + FRAMES * STEP_MS))
    assert [f.frame_id for f in sorted(frames, key=lambda f: f.timestamp_ms)] == [
        f"{camera_b}-{i}" for i in range(FRAMES)
    ]
    assert {f.partition for f in frames} == {0, 1, 2}
    assert all((f.partition, f.offset) == landed[f.frame_id] for f in frames)


@pytest.mark.parametrize(
    "window",
    [
        (10 * 60_000, 20 * 60_000),  # after the last message: nothing at or after the start
        (-60_000, -1),  # before the first: stops at the first message past the end
        (5 * STEP_MS + 100, 5 * STEP_MS + 400),  # between two frames
        (5 * STEP_MS, 4 * STEP_MS),  # end before start
    ],
)
def test_an_empty_window_returns_nothing_at_once(bootstrap, published, window) -> None:
    topic, camera_a, _, base, _ = published
    began = time.monotonic()
    start, end = base + window[0], base + window[1]
    assert list(replay_frames(bootstrap, topic, camera_a, start, end, timeout_s=20)) == []
    assert replay_span(bootstrap, topic, camera_a, start, end, timeout_s=20) == {}
    assert time.monotonic() - began < 15


def test_an_unknown_topic_is_an_error(bootstrap) -> None:
    with pytest.raises(LookupError):
        list(replay_frames(bootstrap, f"test.none.{uuid.uuid4().hex[:8]}", "x", 0, 1, 10))
