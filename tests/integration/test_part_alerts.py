"""Part verdicts through the real rules worker: rows, one alert per rejected part, line counts.

Verdicts go straight onto ``visionline.inspection.decisions`` (no inspect or parts worker
involved), for test cameras ``test-line-*`` (rule ``test-line-defect`` in infra/rules.yaml).
"""

from __future__ import annotations

import json
import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import text

from services.rules.store import line_counts
from tests.factories import (
    frame_meta,
    model_ref,
    observed_part,
    part_observations,
    part_verdict,
    source_ref,
)
from tests.integration.pipeline import rows, wait_rows
from visionline.kafka import producer
from visionline.messages import (
    DefectFinding,
    LineCounts,
    PartVerdict,
    Topic,
    to_json,
)
from visionline.synthetic import LineGenerator

MODELS = [model_ref("part_detector"), model_ref("part_anomaly"), model_ref("defect_detector")]


def verdict(camera: str, frame: int, status: str, crossed: bool = True, **update) -> PartVerdict:
    rejected = status == "rejected"
    scratch = DefectFinding(defect_class="scratch", box=(50, 60, 90, 70), score=0.9, area=120.0)
    values = dict(
        track_id=frame,
        defect_class="scratch" if rejected else None,
        score=0.9 if rejected else 0.1,
        defect_frames=3 if rejected else 0,
        first_frame_id=f"f{frame - 6:04d}",
        last_frame_id=f"f{frame:04d}",
        best_frame_id=f"f{frame - 2:04d}",
        captured_at=time.time() - 1,
        decided_at=time.time(),
        crossed_line=crossed,
        box=(10.0, 20.0, 300.0, 260.0),
        defects=[scratch] if rejected else [],
        snapshot=f"snapshot://{camera}/{frame}" if rejected else None,
        models=MODELS,
    )
    return part_verdict(camera, f"{camera}:f{frame:04d}", status, **(values | update))


def publish(bootstrap: str, verdicts: list[PartVerdict]) -> None:
    out = producer(bootstrap)
    for v in verdicts:
        out.produce(str(Topic.PART_DECISIONS), key=v.camera_id.encode(), value=to_json(v))
    assert out.flush(30) == 0


def test_one_alert_per_rejected_part_and_none_on_replay(stack, engine, alerts):
    camera = f"test-line-{uuid.uuid4().hex[:8]}"
    sent = [
        verdict(camera, 10, "accepted"),
        verdict(camera, 13, "rejected"),
        verdict(camera, 16, "insufficient"),
        verdict(camera, 19, "rejected"),
        verdict(camera, 22, "accepted", crossed=False),  # lost before the exit line
    ]
    publish(stack.kafka_bootstrap, sent)
    decisions = wait_rows(
        engine,
        "SELECT * FROM part_decisions WHERE camera_id = :c",
        lambda found: len(found) == 5,
        timeout=60,
        c=camera,
    )
    assert {d["decision_id"]: d["status"] for d in decisions} == {
        v.decision_id: v.status for v in sent
    }
    stored = wait_rows(
        engine,
        "SELECT * FROM alerts WHERE camera_id = :c AND published",
        lambda found: len(found) == 2,
        timeout=30,
        c=camera,
    )
    expected = {f"{camera}:f0013:test-line-defect", f"{camera}:f0019:test-line-defect"}
    assert {a["alert_id"] for a in stored} == expected
    first = next(a for a in stored if a["alert_id"].startswith(f"{camera}:f0013"))
    assert (first["frame_id"], first["label"], first["severity"]) == ("f0011", "scratch", "warning")
    assert first["model_name"] == "defect_detector" and first["confidence"] == 0.9
    assert first["part"]["decision_id"] == f"{camera}:f0013"
    assert first["part"]["snapshot"] == f"snapshot://{camera}/13"

    on_topic = alerts.wait_for(lambda seen: {a["alert_id"] for a in seen} >= expected, timeout=30)
    mine = [a for a in on_topic if a["camera_id"] == camera]
    assert sorted(a["alert_id"] for a in mine) == sorted(expected)
    assert all(a["part"]["defects"][0]["defect_class"] == "scratch" for a in mine)

    # A replay: the same decision ids, one of them now disagreeing, and one new rejected part.
    replay = [
        verdict(camera, 13, "accepted"),
        verdict(camera, 19, "rejected", score=0.99),
        verdict(camera, 10, "rejected"),  # was accepted: no alert now either
        verdict(camera, 25, "rejected"),
    ]
    publish(stack.kafka_bootstrap, replay)
    expected_now = expected | {f"{camera}:f0025:test-line-defect"}
    wait_rows(
        engine,
        "SELECT 1 FROM alerts WHERE camera_id = :c AND published",
        lambda found: len(found) == 3,
        timeout=60,
        c=camera,
    )
    alerts.wait_for(lambda seen: {a["alert_id"] for a in seen} >= expected_now, timeout=30)
    try:  # read on for a while: anything the replay wrongly raised would arrive by then
        alerts.wait_for(lambda seen: False, timeout=3)
    except AssertionError:
        pass
    mine = [a["alert_id"] for a in alerts.seen if a["camera_id"] == camera]
    assert sorted(mine) == sorted(expected_now)
    assert len(rows(engine, "SELECT 1 FROM alerts WHERE camera_id = :c", c=camera)) == 3
    kept = rows(
        engine,
        "SELECT status, score FROM part_decisions WHERE decision_id = :d",
        d=f"{camera}:f0013",
    )
    assert kept == [{"status": "rejected", "score": 0.9}]  # the first verdict stays

    # Line counts: parts that crossed the exit line, each decision once.
    counts = line_counts(engine, camera)[camera]
    assert counts == LineCounts(crossed=5, passed=2, rejected=3, insufficient=1)
    with engine.connect() as conn:
        view = conn.execute(
            text("SELECT * FROM part_line_counts WHERE camera_id = :c"), {"c": camera}
        ).one()
    assert (view.crossed, view.passed, view.rejected, view.insufficient) == (5, 2, 3, 1)
    assert view.decided == 6
    assert camera in line_counts(engine) and json.dumps(counts.model_dump())


def observations_of_line(camera: str, frames: int, seed: int = 5) -> tuple[list, list]:
    """The synthetic line's ground truth as perfect observations, 10 frames/s of capture time;
    and per part its centres (x), whether it is defective and the frames it is in."""
    gen = LineGenerator(seed=seed, resolution=(1280, 720), defect_rate=0.4, camera=camera)
    start, out, parts = time.time() - frames / 10, [], {}
    for i in range(frames):
        truth = gen.frame(i)[1]
        observed = []
        for p in truth.parts:
            defects = [
                DefectFinding(defect_class=d.defect_class, box=d.box, score=0.95, area=400.0)
                for d in p.defects
            ]
            score = 0.95 if p.defective else 0.05
            observed.append(observed_part(p.box, score, defects=defects))
            xs, _, seen = parts.setdefault(p.part_id, ([], p.defective, []))
            xs.append((p.box[0] + p.box[2]) / 2)
            seen.append(i)
        source = source_ref(i, Topic.RAW_FRAMES)
        frame = frame_meta(camera, f"f{i:04d}", captured_at=start + i / 10, source=source)
        out.append(part_observations(frame, observed, MODELS))
    return out, list(parts.values())


def committed(bootstrap: str, group: str, topic: Topic, partition: int) -> int:
    """The group's committed offset of one partition (negative when none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        (tp,) = consumer.committed([TopicPartition(str(topic), partition)], timeout=10)
        return tp.offset
    finally:
        consumer.close()


def test_parts_worker_decides_each_part_once_and_commits_after(stack, engine):
    camera = f"test-line-{uuid.uuid4().hex[:8]}"
    frames, parts = observations_of_line(camera, 60)
    out, delivered = producer(stack.kafka_bootstrap), []
    for obs in frames:
        out.produce(
            str(Topic.PART_OBSERVATIONS),
            key=camera.encode(),
            value=to_json(obs),
            on_delivery=lambda err, msg: delivered.append((msg.partition(), msg.offset())),
        )
    assert out.flush(30) == 0 and len(delivered) == len(frames)
    # ByteTrack names a part on its second frame, and its first is taken back then: a part seen
    # twice or more crosses from its first frame on.
    line_x = 0.8 * 1280
    crossing = [d for xs, d, _ in parts if len(xs) > 1 and xs[0] < line_x <= xs[-1]]
    partition, last = delivered[-1]

    def committed_now() -> int:
        group, topic = "visionline-parts", Topic.PART_OBSERVATIONS
        return committed(stack.kafka_bootstrap, group, topic, partition)

    samples, until = [], time.monotonic() + 3
    while time.monotonic() < until:
        samples.append((time.time(), committed_now()))
        time.sleep(0.3)
    # The parts still on the belt at the end are decided by the idle flush (5 s of silence).
    decided = wait_rows(
        engine,
        "SELECT * FROM part_decisions WHERE camera_id = :c",
        lambda found: any(d["last_frame_id"] == "f0059" for d in found),
        timeout=60,
        c=camera,
    )
    crossed = [d for d in decided if d["crossed_line"]]
    assert len(crossed) == len(crossing) > 10
    assert sum(d["defective"] for d in crossed) == sum(crossing) > 0
    assert len({d["decision_id"] for d in decided}) == len(decided)
    rejected = [d for d in decided if d["status"] == "rejected"]
    # Until the idle flush decided the parts still on the belt, nothing from the first frame of
    # their tracks on may be committed (a committed offset is the next to read). That first
    # frame is the one ByteTrack spawned the track in: a replay from it tracks the part again.
    flushed = [d for d in decided if d["last_frame_id"] == "f0059"]
    flushed_at = min(d["decided_at"].timestamp() for d in flushed)
    held = delivered[min(int(d["first_frame_id"][1:]) for d in flushed)][1]
    before = [offset for at, offset in samples if at < flushed_at - 0.2]
    assert before and max(before) <= held, (held, samples, flushed_at)
    wait_rows(
        engine,
        "SELECT 1 FROM alerts WHERE camera_id = :c AND published",
        lambda found: len(found) == len(rejected),
        timeout=30,
        c=camera,
    )
    # Every observation is acked once its parts are decided: the group commits to the end.
    until = time.monotonic() + 20
    while committed_now() <= last:
        assert time.monotonic() < until, "the parts worker did not commit its observations"
        time.sleep(0.5)
