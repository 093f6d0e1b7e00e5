"""The objects worker's handler without a broker: a camera's tracker state saved after each
batch (signed), a replay after a crash gives the same event ids, messages already folded in
are skipped, and a state signed with another secret is not loaded."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from services.objects.handlers import ObjectsHandlers
from services.objects.logic import STATE_KEY
from tests.factories import frame_meta, model_ref, quality
from visionline.detection.config import LineRule
from visionline.messages import DetectedObject, FrameDetections, ObjectEvent, from_json

LINE = LineRule(name="crossing", kind="line", classes=["cup"], line=((0.5, 0.0), (0.5, 1.0)))


class FakeRedis(dict):
    def get(self, key):  # type: ignore[override]
        return super().get(key)

    def set(self, key, value, ex=None):
        self[key] = value


def watcher(rules: list) -> SimpleNamespace:
    return SimpleNamespace(
        poll=lambda: None, current=SimpleNamespace(rules=SimpleNamespace(detect=rules))
    )


def message(i: int, x: float, camera: str = "dock-1") -> tuple:
    """The i-th frame (10 per second, offset i), a cup with its left edge at x."""
    meta = frame_meta(camera, f"f{i:03d}", size=(320, 240), captured_at=100.0 + i / 10)
    cup = DetectedObject(box=(x, 100, x + 40, 140), class_name="cup", score=0.9)
    detections = FrameDetections(
        frame=meta, quality=quality(), model=model_ref("det"), objects=[cup]
    )
    event = SimpleNamespace(message=SimpleNamespace(tp=SimpleNamespace(partition=0), offset=i))
    return event, detections


def crossing(start: int, stop: int) -> list[tuple]:
    """Frames start..stop-1 of a cup moving 20 px a frame from x=10: its centre crosses the
    middle (x=160) at frame 7."""
    return [message(i, 10 + 20 * i) for i in range(start, stop)]


def handlers(redis: FakeRedis, sent: list, secret: bytes = b"s3cret") -> ObjectsHandlers:
    async def send(records):
        sent.extend(from_json(value, ObjectEvent) for _, value in records)

    return ObjectsHandlers(watcher([LINE]), redis, secret, 10.0, 3600.0, send)


def run(h: ObjectsHandlers, batch: list[tuple]) -> None:
    asyncio.run(h.observe(batch))


def test_a_crossing_gives_one_event_and_the_state_is_saved_after_each_batch() -> None:
    redis, sent = FakeRedis(), []
    h = handlers(redis, sent)
    run(h, crossing(0, 5))
    assert sent == [] and STATE_KEY.format(camera="dock-1") in redis
    run(h, crossing(5, 12))
    assert len(sent) == 1 and sent[0].kind == "line" and sent[0].frame_id == "f007"
    assert sent[0].event_id.startswith("dock-1:f000:crossing:")  # epoch: the state's first frame
    assert sent[0].model.name == "det" and sent[0].captured_at == pytest.approx(100.7)


def test_a_crash_before_the_save_replays_the_batch_into_the_same_event_ids() -> None:
    redis, sent = FakeRedis(), []
    run(handlers(redis, sent), crossing(0, 5))
    crashing = handlers(redis, sent)
    crashing.save = lambda camera, state: (_ for _ in ()).throw(RuntimeError("killed"))
    with pytest.raises(RuntimeError):
        run(crashing, crossing(5, 12))
    assert len(sent) == 1  # on the broker, but the offsets were not committed
    run(handlers(redis, sent), crossing(5, 12))  # the restarted worker gets the batch again
    assert len(sent) == 2 and sent[0].event_id == sent[1].event_id  # written once downstream


def test_messages_folded_in_before_are_skipped_on_redelivery() -> None:
    redis, sent = FakeRedis(), []
    h = handlers(redis, sent)
    run(h, crossing(0, 12))
    assert len(sent) == 1
    run(handlers(redis, sent), crossing(0, 12))  # committed late: the same batch again
    assert len(sent) == 1


def test_a_state_signed_with_another_secret_is_not_loaded() -> None:
    redis, sent = FakeRedis(), []
    run(handlers(redis, sent, secret=b"other"), crossing(0, 5))
    run(handlers(redis, sent), crossing(5, 12))
    assert [e.event_id.split(":")[1] for e in sent] == ["f005"]  # a fresh state, a new epoch
    tampered = redis[STATE_KEY.format(camera="dock-1")]
    redis[STATE_KEY.format(camera="dock-1")] = tampered[:-1] + bytes([tampered[-1] ^ 1])
    assert handlers(redis, sent).load("dock-1") is None


def test_each_camera_has_its_own_state() -> None:
    redis, sent = FakeRedis(), []
    batch = [
        m for i in range(12) for m in (message(i, 10 + 20 * i), message(i, 300 - 20 * i, "dock-2"))
    ]
    run(handlers(redis, sent), batch)
    assert sorted(e.camera_id for e in sent) == ["dock-1", "dock-2"]
    assert {e.detail["direction"] for e in sent} == {"in", "out"}
