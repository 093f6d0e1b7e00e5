"""``visionline chaos``: frames flow from simulated cameras (classify and inspect) through a
running local stack while faults strike one after another; then what came out is counted
against what was sent (``visionline.chaos.check``) and the run is printed as a table and kept
as JSON.

The classify cameras (``chaos-cam-<run>-<k>``) send the bench's real photographs, a third of
them cats, which the ``chaos-cat-every-frame`` rule alerts on at every frame; the lines
(``chaos-line-<run>-<k>``) send the conveyor generator's frames, each part a verdict. Frame ids
hold the run id, so a run never meets an earlier run's rows.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

from visionline.bench.run import Sampler
from visionline.chaos.check import (
    Outcome,
    SentFrame,
    alert_counts,
    frame_counts,
    in_flight,
    memory_curve,
    part_counts,
    passed,
)
from visionline.chaos.faults import Fault, Struck, strike, wait_restarted
from visionline.stack.api import LocalStack

CAT = ("tabby", "tiger cat", "egyptian cat")
CAT_MIN_SCORE = 0.05  # infra/rules.yaml, chaos-cat-every-frame
LINE_FPS = 10.0  # the capture rate the chaos-line-defect entry tracks parts at


@dataclass
class ChaosConfig:
    classify_cameras: int = 2
    lines: int = 1
    fps: float = 3.0  # per camera, sent
    settle_s: float = 10.0  # steady flow before each fault and after the last
    frames: int | None = None  # a soak: stop once this many frames (all cameras) are sent
    memory_every_s: float = 5.0  # resident memory of every process, sampled
    restart_timeout_s: float = 180.0
    drain_timeout_s: float = 300.0
    seed: int = 11


@dataclass
class Cameras:
    """The run's cameras and what was sent to them."""

    run_id: str
    classify: list[str]
    lines: list[Any]  # visionline.acceptance.run.CameraRun
    sent: list[SentFrame] = field(default_factory=list)
    line_frames: int = 0


def register(engine: Engine, config: ChaosConfig) -> Cameras:
    from visionline.acceptance.run import CameraRun
    from visionline.camera_registry import CameraSpec, upsert_cameras
    from visionline.settings import UploadSettings
    from visionline.synthetic.generator import LineGenerator

    run_id = uuid.uuid4().hex[:6]
    classify = [f"chaos-cam-{run_id}-{k}" for k in range(1, config.classify_cameras + 1)]
    names = [f"chaos-line-{run_id}-{k}" for k in range(1, config.lines + 1)]
    specs = [CameraSpec(camera_id=c, max_fps=1000) for c in classify]
    specs += [CameraSpec(camera_id=c, pipeline="inspect", max_fps=1000) for c in names]
    upsert_cameras(engine, specs, UploadSettings().key_pepper)
    lines = [
        CameraRun(name, LineGenerator(seed=config.seed + k, fps=LINE_FPS, camera=name), run_id)
        for k, name in enumerate(names)
    ]
    return Cameras(run_id, classify, lines)


class Sender(threading.Thread):
    """Every camera sends a frame each 1/fps s until stopped (captured at the send time; a
    line's frames at its own 10 fps capture clock, as the tracker expects)."""

    def __init__(
        self, bootstrap: str, cameras: Cameras, fps: float, limit: int | None = None
    ) -> None:
        from visionline.bench.run import frame_pool
        from visionline.camera.publisher import FramePublisher

        super().__init__(name="chaos-sender", daemon=True)
        self.publisher, self.cameras, self.fps = FramePublisher(bootstrap), cameras, fps
        self.pool = frame_pool((640, 360))
        self.halt, self.done = threading.Event(), threading.Event()
        self.t0, self.limit, self.count = time.time(), limit, 0

    def run(self) -> None:
        index, cams = 0, self.cameras
        while not self.halt.is_set():
            now = time.time()
            for k, camera in enumerate(cams.classify):
                frame_id = f"{camera}-{index:06d}"
                image = self.pool[(index + k) % len(self.pool)]
                self.publisher.publish(camera, image, frame_id, captured_at=int(now * 1000))
                cams.sent.append(SentFrame(camera, frame_id, now))
            for line in cams.lines:
                captured = int((self.t0 + index / LINE_FPS) * 1000)
                self.publisher.publish(
                    line.camera, line.render(index), line.frame_id(index), captured
                )
            cams.line_frames = index + 1
            index += 1
            self.count += len(cams.classify) + len(cams.lines)
            if self.limit is not None and self.count >= self.limit:
                break
            self.halt.wait(max(0.0, self.t0 + index / self.fps - time.time()))
        self.done.set()

    def stop(self) -> None:
        self.halt.set()
        self.join(30)
        self.publisher.flush(30)


def inject(stack: LocalStack, faults: list[Fault], config: ChaosConfig, log) -> list[Struck]:
    """Each fault after ``settle_s`` of steady flow, once the one before has recovered."""
    struck = []
    for fault in faults:
        time.sleep(config.settle_s)
        hit = strike(stack, fault)
        log(f"{fault.name} (pid {hit.pid})")
        wait_restarted(stack, hit, config.restart_timeout_s)
        log(f"  {fault.component} healthy again after {hit.restarted_s} s")
        if hit.consumers:
            log(f"  {fault.component} consuming again after {hit.consuming_s} s")
        struck.append(hit)
    time.sleep(config.settle_s)
    return struck


def outcomes(engine: Engine, cameras: list[str]) -> list[Outcome]:
    query = text(
        "SELECT camera_id, frame_id, created_at, top_k FROM predictions WHERE camera_id = ANY(:c)"
    )
    with engine.connect() as conn:
        rows = conn.execute(query, {"c": cameras}).all()
    return [
        Outcome(
            camera,
            frame,
            stored_at.timestamp(),  # the end of the path: its row in PostgreSQL
            any(e["label"].casefold() in CAT and e["score"] >= CAT_MIN_SCORE for e in top_k),
        )
        for camera, frame, stored_at, top_k in rows
    ]


def stored_alerts(engine: Engine, cameras: list[str]) -> list[tuple[str, str, str]]:
    query = text("SELECT alert_id, camera_id, frame_id FROM alerts WHERE camera_id = ANY(:c)")
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query, {"c": cameras}).all()]  # type: ignore[misc]


def drain(engine: Engine, cams: Cameras, timeout_s: float) -> float:
    """Wait until every classify frame has a prediction row; seconds it took."""
    start = time.monotonic()
    wanted = {(f.camera_id, f.frame_id) for f in cams.sent}
    while time.monotonic() - start < timeout_s:
        done = {(o.camera_id, o.frame_id) for o in outcomes(engine, cams.classify)}
        if wanted <= done:
            break
        time.sleep(2)
    return round(time.monotonic() - start, 1)


def topic_values(bootstrap: str, topic: str, since_ms: int) -> list[dict]:
    from visionline.replay import json_messages

    return list(json_messages(bootstrap, topic, since_ms))


Span = tuple[int, int]  # a part's first and last frame


def decided_parts(engine: Engine, cams: Cameras) -> tuple[dict[tuple[str, int], Span], dict, list]:
    """The lines' parts that entered and left the view (with their frames), verdicts per part,
    and the verdicts of each part decided more than once (to tell why)."""
    from visionline.acceptance.run import match_verdicts

    by_camera = {line.camera: line for line in cams.lines}
    query = text(
        "SELECT camera_id, best_frame_id, box, decision_id, status, first_frame_id,"
        " last_frame_id, frames_seen FROM part_decisions WHERE camera_id = ANY(:c)"
    )
    with engine.connect() as conn:
        rows = conn.execute(query, {"c": list(by_camera)}).mappings().all()
    verdicts = [dict(r) for r in rows]
    decided, _ = match_verdicts(by_camera, verdicts)
    parts = {
        (line.camera, p.part_id): (p.first_frame, p.last_frame)
        for line in cams.lines
        for p in line.generator.part_truth(line.frames)
        if p.first_frame > 0 and p.last_frame < line.frames - 1
    }
    keep = ("decision_id", "status", "first_frame_id", "last_frame_id", "frames_seen")
    twice = [
        {"part": list(key), "verdicts": [{k: v[k] for k in keep} for v in found]}
        for key, found in decided.items()
        if len(found) > 1
    ]
    return parts, dict(decided), twice


def lost_parts(parts: dict[tuple[str, int], Span], decided: dict) -> list[dict]:
    return [
        {"camera": c, "part": k, "frames": list(span)}
        for (c, k), span in parts.items()
        if not decided.get((c, k))
    ]


def group_lag(bootstrap: str) -> dict[str, int] | None:
    """Messages each worker consumer group (named with ``CONSUMER_GROUP_PREFIX``) has not
    committed; None when the broker does not say."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    from visionline.kafka import CONSUMER_GROUP_PREFIX, admin_client, reader

    admin, consumer = admin_client(bootstrap), reader(bootstrap)
    try:
        listed = admin.list_consumer_groups().result(timeout=10)
        groups = [g.group_id for g in listed.valid if g.group_id.startswith(CONSUMER_GROUP_PREFIX)]
        lags = {}
        for group in groups:
            request = [ConsumerGroupTopicPartitions(group)]
            answer = admin.list_consumer_group_offsets(request)[group].result(timeout=10)
            lag = 0
            for tp in answer.topic_partitions or []:
                if tp.offset < 0 or tp.topic.startswith(group):  # Faust's own topics
                    continue
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), timeout=10
                )
                lag += max(0, high - tp.offset)
            lags[group] = lag
        return lags
    except Exception:  # noqa: BLE001 - a broker without the admin APIs: reported as unknown
        return None
    finally:
        consumer.close()


def wait_no_lag(bootstrap: str, timeout_s: float) -> dict[str, int] | None:
    deadline = time.monotonic() + timeout_s
    lags = group_lag(bootstrap)
    while lags and sum(lags.values()) and time.monotonic() < deadline:
        time.sleep(2)
        lags = group_lag(bootstrap)
    return lags


def recovered(struck: Struck) -> bool:
    """Back, and consuming again if it consumed before."""
    return struck.restarted_s is not None and (
        not struck.consumers or struck.consuming_s is not None
    )


def fault_rows(struck: list[Struck], cams: Cameras, seen: list[Outcome]) -> list[dict]:
    return [
        {
            "fault": s.fault.name,
            "kind": s.fault.kind,
            "pid": s.pid,
            "restarted_s": s.restarted_s,
            "consuming_s": s.consuming_s,
            **in_flight(s.at, cams.sent, seen),
        }
        for s in struck
    ]


def totals(
    bootstrap: str, engine: Engine, cams: Cameras, started_ms: int, lags: dict[str, int] | None
) -> dict[str, Any]:
    from visionline.messages import Topic

    cameras = cams.classify + [line.camera for line in cams.lines]
    seen = outcomes(engine, cams.classify)
    stored = stored_alerts(engine, cameras)
    alerts = topic_values(bootstrap, str(Topic.ALERTS), started_ms)
    on_topic = [a["alert_id"] for a in alerts if a.get("camera_id") in cameras]
    letters = topic_values(bootstrap, str(Topic.DEAD_LETTER), started_ms)
    parts, decided, twice = decided_parts(engine, cams)
    counts = {
        **frame_counts(cams.sent, seen),
        **alert_counts(seen, stored, on_topic),
        **part_counts(parts, decided),
        "dead_letters": len(ours := [d for d in letters if d.get("camera_id") in cameras]),
        "lag": sum(lags.values()) if lags is not None else 0,
        "lag_known": lags is not None,
        "lag_per_group": {g: n for g, n in (lags or {}).items() if n},
        "line_frames": cams.line_frames,
        "parts_decided_twice_detail": twice,
        # Parts with no verdict, by their frames: where to look in the decisions topic.
        "parts_lost_detail": lost_parts(parts, decided),
        "dead_letter_detail": [
            {k: d.get(k) for k in ("error_type", "error_message", "stage", "frame_id")}
            for d in ours
        ],
    }
    return counts


def soak(sender: Sender, config: ChaosConfig, log) -> None:
    """Wait for the sender to send ``config.frames``, saying how far it is now and then."""
    while not sender.done.wait(60):
        log(f"{sender.count} of {config.frames} frames sent")
    time.sleep(config.settle_s)


def rss_of(snapshot: dict[str, dict[int, tuple[float, int]]]) -> dict[str, int]:
    """Resident bytes of each component's process tree."""
    return {name: sum(rss for _, rss in procs.values()) for name, procs in snapshot.items()}


def run_chaos(stack: LocalStack, faults: list[Fault], config: ChaosConfig, log) -> dict[str, Any]:
    from visionline.db import make_engine

    engine = make_engine(stack.database_url)
    bootstrap = stack.kafka_bootstrap
    try:
        cams = register(engine, config)
        started_ms = int(time.time() * 1000) - 1000
        sampler = Sampler(stack, every_s=config.memory_every_s)
        sender = Sender(bootstrap, cams, config.fps, config.frames)
        sampler.start()
        sender.start()
        log(f"run {cams.run_id}: {len(cams.classify)} classify cameras, {len(cams.lines)} lines")
        struck = inject(stack, faults, config, log)
        if config.frames is not None:
            soak(sender, config, log)
        sender.stop()
        drain_s = drain(engine, cams, config.drain_timeout_s)
        lag = wait_no_lag(bootstrap, config.drain_timeout_s)
        found = totals(bootstrap, engine, cams, started_ms, lag)
        rows = fault_rows(struck, cams, outcomes(engine, cams.classify))
        memory = memory_curve([(x.at, rss_of(x.procs)) for x in sampler.stop()])
        return {
            "run_id": cams.run_id,
            "config": config.__dict__,
            "faults": rows,
            "totals": found,
            "drained_s": drain_s,
            "frames_sent": sender.count,
            "memory_mb": memory,
            "passed": passed(found) and all(recovered(s) for s in struck),
        }
    finally:
        engine.dispose()
