"""The drift worker through the real stack: one event for the camera that drifts, none for the
other, and its detectors' state kept across a SIGKILL and restart.

Predictions go straight onto ``visionline.predictions`` (no camera, model or Triton involved)
for two cameras of this test's own: ``drift-a-*`` whose brightness steps from 120 to 160, and
``drift-b-*`` that stays at 120. The drift worker runs with its default settings
(``DriftSettings``, ``infra/drift.yaml``).
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid

from tests.factories import model_ref, prediction
from tests.integration.pipeline import TopicReader, rows, wait_rows
from visionline.kafka import producer
from visionline.messages import Prediction, Quality, Topic, to_json

MODEL = model_ref("efficientnet_lite0", "1")
EVENTS = "SELECT * FROM drift_events WHERE camera_id IN (:a, :b) ORDER BY captured_at"
PUBLISHED = "SELECT * FROM drift_events WHERE camera_id IN (:a, :b) AND published"
STATE = "SELECT camera_id, frames FROM drift_state WHERE camera_id IN (:a, :b)"


def frames(camera: str, start: int, n: int, brightness: float, r: random.Random) -> list:
    out, t0 = [], time.time() - 600
    for i in range(start, start + n):
        quality = Quality(
            brightness=r.gauss(brightness, 3),
            contrast=r.gauss(50, 2),
            blur=r.gauss(300, 20),
            saturation=r.gauss(70, 3),
        )
        score = min(0.95, max(0.05, r.gauss(0.6, 0.08)))
        top_k = [("drift-probe", score), ("drift-other", (1 - score) / 2)]
        captured_at = t0 + i / 10
        out.append(
            prediction(
                camera, f"f{i:05d}", top_k, captured_at=captured_at, model=MODEL, quality=quality
            )
        )
    return out


def publish(bootstrap: str, *streams: list[Prediction]) -> None:
    out = producer(bootstrap)
    for batch in zip(*streams, strict=True):  # the cameras' frames interleaved, each in order
        for p in batch:
            out.produce(str(Topic.PREDICTIONS), key=p.camera_id.encode(), value=to_json(p))
        out.poll(0)
    assert out.flush(30) == 0


def by_camera(state_rows: list[dict]) -> dict[str, int]:
    """Frames each camera's saved detector bank reflects."""
    return {r["camera_id"]: r["frames"] for r in state_rows}


def restart(stack, component: str, timeout: float = 90) -> None:
    (pid,) = stack.pids(component)
    os.kill(pid, signal.SIGKILL)
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        pids = [p for p in stack.pids(component) if p != pid]
        if pids:
            return
        time.sleep(0.5)
    raise AssertionError(f"{component} was not restarted within {timeout}s")


def drain(reader: TopicReader, seconds: float) -> None:
    """Read on for a while: anything wrongly published would arrive by then."""
    try:
        reader.wait_for(lambda seen: False, timeout=seconds)
    except AssertionError:
        pass


def test_drift_event_for_the_drifting_camera_only_and_state_survives_a_restart(stack, engine):
    tag = uuid.uuid4().hex[:8]
    a, b = f"drift-a-{tag}", f"drift-b-{tag}"
    ra, rb = random.Random(1), random.Random(2)
    reader = TopicReader(stack.kafka_bootstrap, Topic.DRIFT_EVENTS)
    try:
        # Phase 1: 750 frames each; camera a's brightness steps from 120 to 160 at frame 300.
        drifting = frames(a, 0, 300, 120, ra) + frames(a, 300, 450, 160, ra)
        publish(stack.kafka_bootstrap, drifting, frames(b, 0, 750, 120, rb))
        wait_rows(engine, PUBLISHED, lambda found: len(found) >= 1, timeout=180, a=a, b=b)
        # SIGKILL at once, frames still flowing: what was not checkpointed yet is replayed.
        restart(stack, "drift")
        wait_rows(engine, STATE, lambda f: by_camera(f) == {a: 750, b: 750}, timeout=120, a=a, b=b)

        (event,) = rows(engine, EVENTS, a=a, b=b)
        assert (event["camera_id"], event["signal"]) == (a, "brightness")
        assert event["detector"] == "adwin" and event["published"]
        assert event["event_id"] == f"{a}:brightness:{event['frame_id']}"
        assert 300 < int(event["frame_id"][1:]) <= 300 + 150
        assert abs(event["before"]["mean"] - 120) < 2 and abs(event["after"]["mean"] - 160) < 3
        assert event["before"]["frames"] == 100 and event["after"]["frames"] == 50
        reader.wait_for(lambda seen: any(e["event_id"] == event["event_id"] for e in seen), 60)

        # Phase 2, after the restart: camera a's brightness goes back to 120. Only detectors that
        # kept their state see it: a cold bank would take 120 as its reference and raise nothing.
        publish(stack.kafka_bootstrap, frames(a, 750, 250, 120, ra), frames(b, 750, 250, 120, rb))
        found = wait_rows(engine, EVENTS, lambda f: len(f) >= 2, timeout=120, a=a, b=b)
        wait_rows(engine, STATE, lambda f: by_camera(f) == {a: 1000, b: 1000}, timeout=60, a=a, b=b)
        drain(reader, 5)
        found = rows(engine, EVENTS, a=a, b=b)
        assert [(e["camera_id"], e["signal"]) for e in found] == [(a, "brightness")] * 2
        assert found[0]["event_id"] == event["event_id"]  # the first drift once, not again
        second = found[1]
        assert 750 < int(second["frame_id"][1:]) <= 750 + 150
        assert abs(second["before"]["mean"] - 160) < 3 and abs(second["after"]["mean"] - 120) < 3
        assert by_camera(rows(engine, STATE, a=a, b=b)) == {a: 1000, b: 1000}  # not restarted

        published = [e for e in reader.seen if e["camera_id"] in (a, b)]
        assert sorted(e["event_id"] for e in published) == sorted(e["event_id"] for e in found)
        assert all(e["camera_id"] == a and e["schema_version"] == 1 for e in published)
    finally:
        reader.close()
