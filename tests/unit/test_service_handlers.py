"""The services' handlers run without a broker: what they send, and when they ack."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace

import numpy as np
from faust.types import TP

from services.drift.handlers import DriftHandlers
from services.inference.handlers import InferenceHandlers
from services.inference.logic import ModelPool, ResilientModel
from services.parts.handlers import PartsHandlers
from tests.unit.test_drift import MemoryState, monitor, prediction
from tests.unit.test_inference_logic import frame
from tests.unit.test_parts_logic import lane_lines, observations, observed
from visionline.messages import InferenceResult, PartVerdict, from_json, unpack_envelope
from visionline.observability import DriftStates
from visionline.resilience import RetryPolicy
from visionline.worker import ManualAcks


def event(offset: int, partition: int = 0, topic: str = "t", key: bytes | None = None):
    """What the handlers read of a Faust event: its message's coordinates and key."""
    tp = TP(topic, partition)
    message = SimpleNamespace(topic=topic, partition=partition, offset=offset, tp=tp, key=key)
    return SimpleNamespace(message=message)


class Journal:
    """The broker and the acks, as one ordered record of what the handler did."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, object]] = []

    async def send(self, messages: list[tuple[bytes | None, bytes]]) -> None:
        self.entries += [("sent", value) for _, value in messages]

    async def ack(self, event) -> None:
        self.entries.append(("acked", event.message.offset))

    def of(self, kind: str) -> list:
        return [what for k, what in self.entries if k == kind]


class NoRuleChanges:
    def poll(self):
        return None


async def nothing_on_topic(ids: list[str], since: float) -> set[str]:
    return set()


def run(coroutine):
    return asyncio.run(coroutine)


def test_parts_publishes_a_verdict_before_acking_the_frames_that_decided_it() -> None:
    journal = Journal()
    parts = PartsHandlers(lane_lines(), NoRuleChanges(), journal.send, journal.ack)
    xs = [0, 50, 100, 150, 200, 240]  # the part crosses the exit line in the last frame
    for i, x in enumerate(xs):
        run(parts.observe(event(i), observations("c", i, [observed(x)])))
    (verdict,) = [from_json(v, PartVerdict) for v in journal.of("sent")]
    assert verdict.camera_id == "c"
    kinds = [kind for kind, _ in journal.entries]
    assert kinds[0] == "sent" and set(kinds[1:]) == {"acked"}  # the part's frames held until
    acked = journal.of("acked")
    assert acked == list(range(len(acked))) and 0 < len(acked) < len(xs)  # less the lookback


def test_parts_flushes_silent_cameras_and_forgets_revoked_ones() -> None:
    journal = Journal()
    parts = PartsHandlers(lane_lines(), NoRuleChanges(), journal.send, journal.ack)
    run(parts.observe(event(0), observations("c", 0, [observed(0)])))
    run(parts.observe(event(0, topic="u"), observations("d", 0, [observed(0)])))
    run(parts.forget({TP("u", 0)}))
    assert set(parts.lines.cameras) == {"c"}
    run(parts.flush_silent_cameras(idle_flush_s=0.0, highwater=lambda tp: 0))
    assert len(journal.of("sent")) == 1 and journal.of("acked") == [0]
    assert parts.lines.cameras == {}


def test_drift_acks_a_camera_s_frames_only_when_its_bank_is_saved() -> None:
    store, journal = MemoryState(), Journal()
    drift = DriftHandlers(
        monitor(store, every=3), None, journal.send, DriftStates(), nothing_on_topic
    )
    acks = ManualAcks()
    acks.stream = journal  # the manual-ack stream, as Faust hands it to the agent
    r = random.Random(1)
    for i in range(2):
        run(drift.observe(acks, event(i), prediction("cam", i, r)))
    assert journal.of("acked") == [] and store.saves == 0
    run(drift.observe(acks, event(2), prediction("cam", 2, r)))
    assert journal.of("acked") == [0, 1, 2] and store.saves == 1
    run(drift.observe(acks, event(1), prediction("cam", 1, r)))  # redelivered: already saved
    assert journal.of("acked") == [0, 1, 2, 1] and store.saves == 1


def test_drift_on_revocation_saves_everything_and_acks_only_what_stays() -> None:
    store, journal = MemoryState(), Journal()
    drift = DriftHandlers(monitor(store), None, journal.send, DriftStates(), nothing_on_topic)
    acks = ManualAcks()
    acks.stream = journal
    r = random.Random(2)
    run(drift.observe(acks, event(0, partition=0), prediction("a", 0, r)))
    run(drift.observe(acks, event(0, partition=1), prediction("b", 0, r)))
    run(drift.forget({TP("t", 1)}))
    assert store.saves == 1 and set(store.rows) == {"a", "b"}
    assert journal.of("acked") == [0]  # partition 0's frame; partition 1's new owner replays


def test_inference_sends_one_result_per_frame_under_the_frame_s_key() -> None:
    async def scores(batch):
        return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True).astype(np.float32), "4"

    async def no_fallback(batch):
        raise AssertionError("Triton answered: no fallback")

    model = ResilientModel("m", scores, lambda: no_fallback, RetryPolicy(1, 0.0, 10.0))
    sent, used = [], []

    async def send(messages):
        sent.extend(messages)

    async def no_reject(event, rejected):
        raise AssertionError(f"rejected: {rejected.message}")

    pool = ModelPool("m", lambda name: model, lambda name: False)
    inference = InferenceHandlers(pool, send, lambda *refs: used.extend(refs), no_reject)
    tensors = [np.full((4, 4, 3), i, np.uint8).tobytes() for i in range(3)]
    keys = [f"cam-{i}".encode() for i in range(3)]
    batch = [(event(i, key=keys[i]), (frame(i=i), tensors[i])) for i in range(3)]
    run(inference.infer(batch))
    assert [ref.version for ref in used] == ["4"]
    assert [key for key, _ in sent] == keys
    decoded = [unpack_envelope(value, InferenceResult) for _, value in sent]
    assert [r.frame.frame_id for r, _ in decoded] == ["f0", "f1", "f2"]
    assert [np.frombuffer(p, np.float32).item() for _, p in decoded] == [0.0, 48.0, 96.0]


def test_inference_asks_each_frame_s_model_and_dead_letters_an_unknown_one() -> None:
    """Frames of two cameras with two classifiers and one naming no classifier: one request per
    model, each result names the model that answered, the unknown model's frame rejected."""
    asked: list[tuple[str, int]] = []

    def model(name: str) -> ResilientModel:
        async def answer(batch):
            asked.append((name, len(batch)))
            return np.zeros((len(batch), 2), np.float32), "3"

        return ResilientModel(name, answer, lambda: answer, RetryPolicy(1, 0.0, 10.0))

    sent, used, rejected = [], [], []

    async def send(messages):
        sent.extend(messages)

    async def reject(event, error):
        rejected.append((event.message.key, error.error_type, error.frame.frame_id))

    pool = ModelPool("default", model, lambda name: name == "mine")
    inference = InferenceHandlers(pool, send, lambda *refs: used.extend(refs), reject)
    names = [None, "mine", None, "gone", "mine"]
    batch = []
    for i, name in enumerate(names):
        f = frame(i=i)
        f = f.model_copy(update={"frame": f.frame.model_copy(update={"model": name})})
        batch.append((event(i, key=f"k{i}".encode()), (f, np.zeros((4, 4, 3), np.uint8).tobytes())))
    run(inference.infer(batch))
    assert asked == [("default", 2), ("mine", 2)]
    assert [r.name for r in used] == ["default", "mine"]
    decoded = {key: unpack_envelope(value, InferenceResult)[0] for key, value in sent}
    assert {k: r.model.name for k, r in decoded.items()} == {
        b"k0": "default",
        b"k2": "default",
        b"k1": "mine",
        b"k4": "mine",
    }
    assert rejected == [(b"k3", "unknown_model", "f3")]
