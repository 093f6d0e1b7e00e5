"""Bad frames land on the dead-letter topic with their reason; good frames keep flowing."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from tests.integration.pipeline import Camera, chelsea_jpeg, new_camera, rows, wait_rows
from tests.unit.images import jpeg_claiming
from visionline.kafka import producer
from visionline.messages import Topic

CASES = {
    "empty_payload": lambda good: b"",
    "truncated_image": lambda good: good[: len(good) // 2],
    "unsupported_format": lambda good: b"this is not an image at all" * 10,
    "too_many_pixels": lambda good: jpeg_claiming(50_000, 50_000),
}


def test_each_bad_input_is_dead_lettered_and_the_next_frame_passes(
    stack, engine, predictions, dead_letters
):
    camera_id = new_camera(engine)
    camera = Camera(stack.kafka_bootstrap)
    good = chelsea_jpeg(640, 480)
    tag = uuid.uuid4().hex[:6]
    expected: dict[str, str] = {}  # frame id -> reason
    for reason, make in CASES.items():
        frame_id = f"bad-{reason}-{tag}"
        camera.send(camera_id, make(good), frame_id)
        expected[frame_id] = reason
    unknown = f"unknown-{tag}"
    camera.send(unknown, good, f"unknown-cam-{tag}")
    camera.send(None, good, f"no-key-{tag}")
    camera.send(camera_id, good, headers=[("captured-at", b"not-a-time")])
    camera.send(camera_id, good, f"good-after-{tag}")
    camera.flush()

    def reasons(seen):
        out = {}
        for letter in seen:
            frame_id = letter["headers"].get("frame-id", "")
            if frame_id.endswith(tag) or letter["camera_id"] == camera_id:
                out[frame_id or letter["headers"].get("captured-at")] = letter["error_type"]
        return out

    wanted = {
        **expected,
        f"unknown-cam-{tag}": "unknown_camera",
        f"no-key-{tag}": "missing_camera_id",
        "not-a-time": "malformed_header",
    }
    letters = dead_letters.wait_for(lambda seen: len(reasons(seen)) >= len(wanted), timeout=60)
    assert reasons(letters) == wanted
    for letter in letters:
        if letter["headers"].get("frame-id", "").endswith(tag):
            assert letter["stage"] == "ingest" and letter["error_message"]
            assert letter["source"]["topic"] == "visionline.frames.raw"

    good_one = predictions.wait_for(
        lambda seen: any(p["frame_id"] == f"good-after-{tag}" for p in seen), timeout=60
    )
    assert good_one


def test_duplicate_frame_id_is_dropped(stack, engine, predictions, dead_letters):
    camera_id = new_camera(engine)
    camera = Camera(stack.kafka_bootstrap)
    frame_id = f"dup-{uuid.uuid4().hex[:6]}"
    camera.send(camera_id, chelsea_jpeg(640, 480), frame_id)
    camera.send(camera_id, chelsea_jpeg(640, 480), frame_id)
    camera.flush()
    dead_letters.wait_for(
        lambda seen: any(
            d["error_type"] == "duplicate_frame" and d["camera_id"] == camera_id for d in seen
        ),
        timeout=60,
    )
    seen = predictions.wait_for(
        lambda seen: any(p["frame_id"] == frame_id for p in seen), timeout=60
    )
    assert sum(p["frame_id"] == frame_id for p in seen) == 1


def test_a_frame_under_an_id_another_frame_holds_is_dead_lettered_not_dropped(
    stack, engine, predictions, dead_letters
):
    """Issue 15: frames whose ids were already stored reached the predictions topic, then made
    no prediction row and no alert, without a trace. A redelivery of the same frame (same
    capture time) stays a silent no-op; another frame under the id is dead-lettered."""
    camera_id = new_camera(engine)
    frame_id = f"reused-{uuid.uuid4().hex[:6]}"
    camera = Camera(stack.kafka_bootstrap)
    camera.send(camera_id, chelsea_jpeg(640, 480), frame_id)
    camera.flush()
    seen = predictions.wait_for(lambda s: any(p["frame_id"] == frame_id for p in s), timeout=60)
    first = next(p for p in seen if p["frame_id"] == frame_id)
    query = "SELECT captured_at FROM predictions WHERE camera_id = :c AND frame_id = :f"
    wait_rows(engine, query, lambda r: len(r) == 1, timeout=30, c=camera_id, f=frame_id)
    out = producer(stack.kafka_bootstrap)
    other = {**first, "captured_at": first["captured_at"] + 30.0}
    for message in (first, other):  # a redelivery, then another frame under the same id
        out.produce(str(Topic.PREDICTIONS), key=camera_id.encode(), value=json.dumps(message))
    assert out.flush(30) == 0

    def conflicts(letters):
        return [d for d in letters if d["camera_id"] == camera_id and d["frame_id"] == frame_id]

    letters = conflicts(dead_letters.wait_for(lambda s: conflicts(s), timeout=60))
    assert [(d["error_type"], d["stage"]) for d in letters] == [("frame_id_conflict", "rules")]
    assert "already taken" in letters[0]["error_message"]
    assert letters[0]["source"]["topic"] == str(Topic.PREDICTIONS)
    stored = rows(engine, query, c=camera_id, f=frame_id)
    assert len(stored) == 1 and stored[0]["captured_at"].timestamp() == pytest.approx(
        first["captured_at"], abs=0.001
    )


class NameNotUtf8(str):
    """A header name that encodes to bytes that are not UTF-8, as a client in another language
    can send: Kafka's own clients would refuse to write it."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"x-\xff\xfe"


async def produce_with_a_bad_header_name(bootstrap: str, camera_id: str, value: bytes, frame_id):
    from aiokafka import AIOKafkaProducer
    from aiokafka.producer import message_accumulator, producer
    from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

    modules = (message_accumulator, producer)
    fast = [module.DefaultRecordBatchBuilder for module in modules]
    for module in modules:  # the pure-Python builder calls the name's .encode
        module.DefaultRecordBatchBuilder = _DefaultRecordBatchBuilderPy
    try:
        out = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await out.start()
        try:
            headers = [(NameNotUtf8("x-ok"), b"1"), ("frame-id", frame_id.encode())]
            await out.send_and_wait(
                str(Topic.RAW_FRAMES), value, key=camera_id.encode(), headers=headers
            )
        finally:
            await out.stop()
    finally:
        for module, builder in zip(modules, fast, strict=True):
            module.DefaultRecordBatchBuilder = builder


def test_a_header_name_that_is_not_utf8_stops_nothing(stack, engine, predictions):
    """Issue 15: aiokafka failed the whole fetch on such a record, before any handler saw it:
    ingest restarted again and again and the frames after it never came through."""
    ingest = sorted(stack.pids("ingest"))
    camera_id, tag = new_camera(engine), uuid.uuid4().hex[:6]
    odd, after = f"bad-header-name-{tag}", f"good-after-{tag}"
    asyncio.run(
        produce_with_a_bad_header_name(stack.kafka_bootstrap, camera_id, chelsea_jpeg(), odd)
    )
    camera = Camera(stack.kafka_bootstrap)
    camera.send(camera_id, chelsea_jpeg(), after)
    camera.flush()

    def mine(seen):
        return {p["frame_id"] for p in seen if p["camera_id"] == camera_id}

    seen = predictions.wait_for(lambda seen: mine(seen) >= {odd, after}, timeout=90)
    assert mine(seen) == {odd, after}  # the odd header is ignored like any unknown one
    assert sorted(stack.pids("ingest")) == ingest
