"""take_batches: a batch waits at most its window after its first event, and an idle stream
does not wake every window (Faust's take_events did, 100 times a second for a 10 ms window)."""

from __future__ import annotations

import asyncio
import time

import faust
import pytest

from visionline.stream_batches import take_batches

WINDOW_S = 0.2


def _agent(app: faust.App, max_: int, window_s: float, got: list, waits: list):
    @app.agent()
    async def agent(stream):
        wait_for_stopped = stream.wait_for_stopped

        async def counted(*args, **kwargs):
            waits.append(time.monotonic())
            return await wait_for_stopped(*args, **kwargs)

        stream.wait_for_stopped = counted
        async for batch in take_batches(stream, max_, window_s):
            got.append((time.monotonic(), [event.value for event in batch]))

    return agent


def _app() -> faust.App:
    # An agent's test context runs on an in-memory channel: nothing connects to this broker.
    return faust.App("stream-batches-test", broker="kafka://127.0.0.1:1", store="memory://")


def test_a_batch_is_full_at_once_or_waits_its_window_from_its_first_event():
    got: list = []

    async def scenario():
        async with _agent(_app(), 3, WINDOW_S, got, []).test_context() as agent:
            t0 = time.monotonic()
            await agent.put(1)
            await asyncio.sleep(0.5)
            for value in (2, 3, 4, 5):
                await agent.put(value)
            t1 = time.monotonic()
            await asyncio.sleep(0.5)
        return t0, t1

    t0, t1 = asyncio.run(scenario())
    assert [values for _, values in got] == [[1], [2, 3, 4], [5]]
    lone, full, rest = (at for at, _ in got)
    assert lone - t0 == pytest.approx(WINDOW_S, abs=0.1)  # not earlier: the window starts at 1
    assert full - t1 < WINDOW_S / 2  # full: handed over without waiting the window
    assert rest - full == pytest.approx(WINDOW_S, abs=0.1)


def test_an_idle_stream_sleeps_until_an_event_comes():
    got: list = []
    waits: list = []

    async def scenario():
        async with _agent(_app(), 16, 0.01, got, waits).test_context() as agent:
            await asyncio.sleep(0.5)  # 50 windows of 10 ms, no event
            idle_waits = len(waits)
            await agent.put("x")
            await asyncio.sleep(0.1)
        return idle_waits

    idle_waits = asyncio.run(scenario())
    assert idle_waits <= 2  # Faust's take_events: one per window, about 50
    assert [values for _, values in got] == [["x"]]


def test_every_event_of_a_batch_is_acked_once_the_batch_is_handled():
    acked: list = []
    handled: list = []

    app = _app()

    @app.agent()
    async def agent(stream):
        ack = stream.ack

        async def recorded(event):
            acked.append((event.value, list(handled)))
            return await ack(event)

        stream.ack = recorded
        async for batch in take_batches(stream, 2, WINDOW_S):
            handled.extend(event.value for event in batch)

    async def scenario():
        async with agent.test_context() as tested:
            for value in ("a", "b", "c"):
                await tested.put(value)
            await asyncio.sleep(0.5)

    asyncio.run(scenario())
    assert [value for value, _ in acked] == ["a", "b", "c"]
    # Each event was acked only after the batch that carried it was handled.
    assert all(value in before for value, before in acked)


def test_a_worker_with_frames_in_flight_overlaps_their_handlers_and_keeps_their_order(
    monkeypatch,
):
    """Worker.routed(in_flight=3): the handlers of waiting events run at once, start in the
    events' order, and their results are sent in that order even when a later one is done
    first; a rejected event is dead-lettered in its place."""
    from visionline.imaging import FrameRejected
    from visionline.messages import Topic
    from visionline.settings import CommonSettings
    from visionline.worker import Worker

    monkeypatch.setattr("visionline.worker.CrashLedger.refresh", lambda self: None)
    worker = Worker("in-flight-test", CommonSettings(redis_url="redis://127.0.0.1:9/0"))
    started, running, most_at_once, sent, rejected = [], set(), [0], [], []

    async def handle(event):
        value = event.message.value
        started.append(value)
        running.add(value)
        most_at_once[0] = max(most_at_once[0], len(running))
        await asyncio.sleep(0.3 if value == b"slow" else 0.05)  # the first waits longest
        running.discard(value)
        if value == b"bad":
            raise FrameRejected("undecodable_image", "not an image")
        return Topic.PART_OBSERVATIONS, b"k", value.upper()

    async def send(topic, key, value):
        sent.append(value)

    async def reject(event, error):
        rejected.append((event.message.value, error.error_type, list(sent)))

    worker.send, worker.reject = send, reject
    worker.routed(Topic.INSPECTION_FRAMES, (Topic.PART_OBSERVATIONS,), handle, in_flight=3)
    agent = next(iter(worker.app.agents.values()))

    async def scenario():
        async with agent.test_context() as tested:
            for value in (b"slow", b"bad", b"fast", b"last"):
                await tested.put(value)
            await asyncio.sleep(1.5)

    asyncio.run(scenario())
    assert started == [b"slow", b"bad", b"fast", b"last"]
    assert most_at_once[0] == 3  # three in flight, the fourth once the first is sent
    assert sent == [b"SLOW", b"FAST", b"LAST"]
    # Dead-lettered after the slow one before it was sent, not as soon as it failed.
    assert rejected == [(b"bad", "undecodable_image", [b"SLOW"])]
