"""``visionline drift scenario``: drift on one camera, detected, retrained and recovered, through
the real stack.

Three conveyor cameras (``drift-line-1..3``, their nuisance mixes those of the inspection
acceptance lines) push frames at the rate of ``infra/rules.yaml``'s ``drift-line-defect`` entry,
on the wall clock; each frame's ground truth follows on the labels feedback topic after a delay,
as real labels do. After ``before`` frames, veiling glare (a lighting change the models never
saw) ramps up on one camera over ``ramp`` frames and stays. The stack's drift worker should
notice; its event makes the retrain worker fine-tune the defect detector on that camera's own
labelled frames, shadow-evaluate it, and promote it through Triton. Once frames are inspected by
the new version, ``after`` more frames are sent, then the run is scored:

- frames from the drift's onset to the drift event (when the alarm was raised, and confirmed);
- time from the event to the new version serving (promoted, and first frame inferred by it);
- per-part recall, precision and F1 of the drifting camera's decisions before the drift, during
  it (the old version), and after the promotion (the new one), and the same for the others;
- frames sent against frames inspected per camera, dead letters: no frame lost in the switch;
- drift events of the other cameras (there should be none).

The models are a copy of the repository's, in the stack's state folder: the scenario's
promotion never changes the models a developer serves.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visionline.acceptance.run import CameraRun
from visionline.camera.publisher import FramePublisher
from visionline.camera_registry import CameraSpec, upsert_cameras
from visionline.db import make_engine
from visionline.db.models import ModelVersionRow, RetrainJobRow
from visionline.inspection.metrics import binary_counts
from visionline.kafka import producer, read_messages, topic_consumer
from visionline.labels.delayed import DelayedLabels
from visionline.labels.truth import feedback_from_truth
from visionline.messages import Topic
from visionline.stack import LocalStack
from visionline.stack.config import free_port_settings
from visionline.stack.state import fresh_stack_folder
from visionline.synthetic.generator import LineGenerator
from visionline.synthetic.schedule import CAMERA_MIXES, Ramp, Schedule

CAMERAS = ("drift-line-1", "drift-line-2", "drift-line-3")
DEFECT_DETECTOR = "defect_detector"
# The retrain worker's settings for the run: a job trains on the drifting camera's first
# labelled frames and stays within minutes on two cores.
RETRAIN_ENV = {
    "VISIONLINE_RETRAIN_TRAFFIC_MIN_FRAMES": "300",
    "VISIONLINE_RETRAIN_TRAFFIC_MAX_FRAMES": "400",
    "VISIONLINE_RETRAIN_TRAFFIC_WAIT_S": "1200",
    "VISIONLINE_RETRAIN_FINE_TUNE_EPOCHS": "6",
    "VISIONLINE_RETRAIN_EVAL_FRAMES_PER_CONDITION": "6",
    "VISIONLINE_RETRAIN_THREADS": "1",  # leave a core to the pipeline
}


@dataclass
class ScenarioConfig:
    before: int = 200  # frames before the glare starts
    ramp: int = 100  # frames over which it rises to ``glare``
    after: int = 200  # frames once the new version inspects the drifting camera's frames
    glare: float = 1.0
    drift_camera: str = "drift-line-2"
    labels_delay_s: float = 10.0
    seed: int = 2026
    max_frames: int = 1500  # per camera: the run ends here even without a promotion
    settle_s: float = 20.0
    fps: float = 1.0  # frames per second per camera: the rules file's drift-line-defect fps


def plan(config: ScenarioConfig, run_id: str) -> list[CameraRun]:
    """The three lines; the drifting one's glare ramps from ``before`` to ``before + ramp``."""
    if config.drift_camera not in CAMERAS:
        raise ValueError(f"drift camera must be one of {CAMERAS}, not {config.drift_camera!r}")
    runs = []
    for k, camera in enumerate(CAMERAS):
        mix: dict[str, Any] = dict(CAMERA_MIXES[f"line-{k + 1}"])
        if camera == config.drift_camera:
            t0, t1 = config.before / config.fps, (config.before + config.ramp) / config.fps
            mix["glare"] = Ramp(0.0, config.glare, t0, t1)
        generator = LineGenerator(
            seed=config.seed + k,
            fps=config.fps,
            camera=camera,
            schedule=Schedule(cameras={camera: mix}),
        )
        runs.append(CameraRun(camera, generator, run_id))
    return runs


def version_of(models: list[dict], name: str = DEFECT_DETECTOR) -> str | None:
    return next((m["version"] for m in models if m["name"] == name), None)


@dataclass
class Observed:
    """What came back from the stack while the run went on."""

    inspected: Counter = field(default_factory=Counter)
    verdicts: list[dict] = field(default_factory=list)
    drift_events: list[dict] = field(default_factory=list)
    dead_letters: Counter = field(default_factory=Counter)
    first_version: str | None = None  # of the defect detector, on the first inspected frame
    switch: dict[str, Any] | None = None  # the first frame of the drifting camera a new one saw
    versions_by_frame: dict[str, str | None] = field(default_factory=dict)


def phase_scores(run: CameraRun, verdicts: list[dict], onset: int, old: str | None) -> dict:
    """Per-part decisions of one camera scored in three phases:
    ``before`` (the part left the view before the onset), ``during`` (under the drift, decided
    by the version serving at the start) and ``after`` (decided by a newer version). A part is
    predicted defective when its verdict rejected it; a part with no verdict was accepted."""
    decided: dict[int, dict] = {}
    for v in verdicts:
        part = run.part_of(v["best_frame_id"], v["box"])
        if part is not None:
            decided[part] = v
    phases: dict[str, dict[str, list]] = defaultdict(lambda: {"p": [], "a": [], "wrong": []})
    for label in run.generator.part_truth(run.frames):
        if label.first_frame <= 0 or label.last_frame >= run.frames - 1:
            continue  # not seen whole
        verdict = decided.get(label.part_id)
        version = version_of(verdict["models"]) if verdict else None
        if label.last_frame < onset:
            phase = "before"
        elif label.first_frame < onset:
            continue  # straddles the onset
        elif version is not None and version != old:
            phase = "after"
        else:
            phase = "during"
        rejected = bool(verdict and verdict["status"] == "rejected")
        phases[phase]["p"].append(rejected)
        phases[phase]["a"].append(label.defective)
        if rejected != label.defective:  # what was wrong, to read the run's figures by
            seen = (
                {k: verdict.get(k) for k in ("status", "frames_seen", "evidence")}
                if verdict
                else {}
            )
            phases[phase]["wrong"].append(
                {"part_id": label.part_id, "classes": label.classes, "version": version, **seen}
            )
    out: dict[str, dict] = {}
    for phase in ("before", "during", "after"):
        p, a = phases[phase]["p"], phases[phase]["a"]
        counts = binary_counts(p, a) if p else {}
        out[phase] = {
            "parts": len(p),
            "defective": sum(a),
            **{k: round(float(counts[k]), 4) for k in ("recall", "precision", "f1") if k in counts},
            "wrong": phases[phase]["wrong"],
        }
    return out


def frames_to_event(run: CameraRun, events: list[dict], onset: int) -> dict | None:
    """The first event of the drifting camera after the onset: frames from the onset to its
    alarm and to its confirmation."""
    found = []
    for e in events:
        raised, confirmed = run.index_of(e["detected_frame_id"]), run.index_of(e["frame_id"])
        if raised is not None and confirmed is not None and confirmed >= onset:
            found.append((confirmed, raised, e))
    if not found:
        return None
    confirmed, raised, event = min(found, key=lambda f: f[0])
    return {
        "event_id": event["event_id"],
        "signal": event["signal"],
        "detector": event["detector"],
        "alarm_frames": raised - onset,
        "confirmed_frames": confirmed - onset,
        "created_at": event["created_at"],
    }


def job_timeline(database_url: str, model: str = DEFECT_DETECTOR) -> list[dict]:
    """Every retraining job of ``model``: trigger, states with times, versions, decision."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            jobs = session.scalars(
                select(RetrainJobRow).where(RetrainJobRow.model == model).order_by(RetrainJobRow.id)
            ).all()
            promoted = {r.job_id: r for r in session.scalars(select(ModelVersionRow))}
            out = []
            for j in jobs:
                version = promoted.get(j.id)
                out.append(
                    {
                        "job_id": j.id,
                        "trigger": j.trigger,
                        "trigger_ref": j.trigger_ref,
                        "state": j.state,
                        "reason": j.reason,
                        "parent_version": j.parent_version,
                        "candidate_version": j.candidate_version,
                        "states": {h["to"]: h["at"] for h in j.history or []},
                        "created_at": j.created_at.timestamp(),
                        "promoted_at": version.promoted_at.timestamp()
                        if version is not None and version.promoted_at
                        else None,
                        "dataset": {
                            k: v for k, v in (j.dataset or {}).items() if k not in ("conditions",)
                        },
                        "shadow": {
                            side: ((j.metrics or {}).get(side) or {}).get("shadow")
                            for side in ("candidate", "serving")
                        },
                    }
                )
            return out
    finally:
        engine.dispose()


class Sender:
    """Sends every camera's frames on the wall clock, and each frame's labels after a delay;
    stops ``after`` frames past the moment ``switched`` is set, or at ``max_frames``."""

    def __init__(self, bootstrap: str, runs: list[CameraRun], config: ScenarioConfig) -> None:
        self.runs, self.config = runs, config
        self.publisher = FramePublisher(bootstrap)
        self.label_producer = producer(bootstrap)
        self.labels = DelayedLabels(config.labels_delay_s)
        self.sent: Counter = Counter()
        self.switched = threading.Event()
        self.stop = threading.Event()
        self.done = threading.Event()
        self.last_index = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.publisher.start_polling()
            t0, stop_at = time.time(), self.config.max_frames
            for index in range(self.config.max_frames):
                if self.stop.is_set() or index >= stop_at:
                    break
                if self.switched.is_set() and stop_at == self.config.max_frames:
                    stop_at = min(stop_at, index + self.config.after)
                # Capture times are exact (the belt moves on them) even when sending runs late.
                captured = t0 + index / self.config.fps
                for run in self.runs:
                    data, truth = run.render_with_truth(index)
                    frame_id = run.frame_id(index)
                    self.publisher.publish(
                        run.camera, data, frame_id, captured_at=int(captured * 1000)
                    )
                    label = feedback_from_truth(run.camera, frame_id, captured, truth)
                    self.labels.add(label, time.time())
                    self.sent[run.camera] += 1
                self.labels.publish_due(self.label_producer, time.time())
                self.last_index = index
                time.sleep(max(0.0, t0 + (index + 1) / self.config.fps - time.time()))
            self.publisher.flush(60)
            self.labels.flush(self.label_producer, 30)
        except BaseException as exc:  # noqa: BLE001 - reported by the reader, which stops
            self.error = exc
        finally:
            self.done.set()

    def close(self) -> None:
        self.publisher.close()


def collect(
    bootstrap: str,
    runs: list[CameraRun],
    sender: Sender,
    config: ScenarioConfig,
    log: Callable[[str], None],
) -> Observed:
    """Read observations, verdicts, drift events and dead letters until every frame sent was
    inspected and nothing new came for ``settle_s``."""

    cameras = {r.camera for r in runs}
    consumer = topic_consumer(
        bootstrap,
        (Topic.PART_OBSERVATIONS, Topic.PART_DECISIONS, Topic.DRIFT_EVENTS, Topic.DEAD_LETTER),
        from_beginning=True,
    )
    seen = Observed()
    last_news, report = time.monotonic(), time.monotonic() + 15
    deadline = time.monotonic() + config.max_frames / config.fps + 1800
    for message in read_messages(consumer, until=deadline, idle_s=0.5):
        now = time.monotonic()
        if message is not None:
            item, topic = json.loads(message.value()), message.topic()
            if topic == str(Topic.PART_OBSERVATIONS):
                _observation(seen, item, cameras, config, sender)
            elif topic == str(Topic.PART_DECISIONS) and item.get("camera_id") in cameras:
                seen.verdicts.append(item)
            elif topic == str(Topic.DRIFT_EVENTS) and item.get("camera_id") in cameras:
                seen.drift_events.append(item)
                log(
                    f"drift event: {item['signal']} on {item['camera_id']} "
                    f"({item['detector']}, frame {item['frame_id']})"
                )
            elif topic == str(Topic.DEAD_LETTER) and item.get("camera_id") in cameras:
                seen.dead_letters[item["camera_id"]] += 1
            last_news = now
        if now >= report:
            log(
                f"sent {sum(sender.sent.values())} frames, inspected "
                f"{sum(seen.inspected.values())}, {len(seen.verdicts)} verdicts, "
                f"{len(seen.drift_events)} drift events, defect detector "
                f"{'switched' if seen.switch else 'not switched'}"
            )
            report = now + 15
        if sender.error is not None:
            break
        everything = sender.done.is_set() and sum(seen.inspected.values()) >= sum(
            sender.sent.values()
        )
        if everything and now - last_news > config.settle_s:
            break
    consumer.close()
    return seen


def _observation(
    seen: Observed, item: dict, cameras: set[str], config: ScenarioConfig, sender: Sender
) -> None:
    frame = item["frame"]
    if frame["camera_id"] not in cameras:
        return
    seen.inspected[frame["camera_id"]] += 1
    version = version_of(item["models"])
    seen.versions_by_frame[frame["frame_id"]] = version
    if seen.first_version is None:
        seen.first_version = version
    elif (
        version != seen.first_version
        and seen.switch is None
        and frame["camera_id"] == config.drift_camera
    ):
        seen.switch = {"frame_id": frame["frame_id"], "version": version, "at": time.time()}
        sender.switched.set()


def lost_frames(runs: list[CameraRun], sent: Counter, seen: Observed) -> dict:
    """Per camera: sent, inspected, and which frame ids never came back as an observation."""
    out = {}
    for run in runs:
        missing = [
            run.frame_id(i)
            for i in range(sent[run.camera])
            if run.frame_id(i) not in seen.versions_by_frame
        ]
        out[run.camera] = {
            "sent": sent[run.camera],
            "inspected": seen.inspected[run.camera],
            "missing": len(missing),
            "missing_ids": missing[:20],
            "dead_letters": seen.dead_letters[run.camera],
        }
    return out


def _timing(event: dict | None, job: dict | None, switch: dict | None) -> dict:
    """Seconds from the drift event to its job, the promotion and the first frame served by
    the new version."""
    timing = {}
    if event is not None and job is not None:
        timing["event_to_job_s"] = round(job["created_at"] - event["created_at"], 1)
        if job.get("promoted_at"):
            timing["event_to_promoted_s"] = round(job["promoted_at"] - event["created_at"], 1)
    if event is not None and switch is not None:
        timing["event_to_first_frame_s"] = round(switch["at"] - event["created_at"], 1)
    return timing


def score(
    runs: list[CameraRun], config: ScenarioConfig, seen: Observed, sent: Counter, jobs: list[dict]
) -> dict:
    by_camera = {r.camera: r for r in runs}
    drifting = by_camera[config.drift_camera]
    onset = config.before
    own = [e for e in seen.drift_events if e["camera_id"] == config.drift_camera]
    event = frames_to_event(drifting, own, onset)
    job = next((j for j in jobs if event and j["trigger_ref"] == event["event_id"]), None)
    if job is None and jobs:
        job = jobs[0]
    timing = _timing(event, job, seen.switch)
    phases = {
        r.camera: phase_scores(
            r, [v for v in seen.verdicts if v["camera_id"] == r.camera], onset, seen.first_version
        )
        for r in runs
    }
    before, after = phases[config.drift_camera]["before"], phases[config.drift_camera]["after"]
    recovered = None
    if "f1" in before and "f1" in after:
        recovered = round(after["f1"] - before["f1"], 4)
    lost = lost_frames(runs, sent, seen)
    others = [e for e in seen.drift_events if e["camera_id"] != config.drift_camera]
    early = [
        e
        for e in seen.drift_events
        if e["camera_id"] == config.drift_camera and (drifting.index_of(e["frame_id"]) or 0) < onset
    ]
    return {
        "drift_camera": config.drift_camera,
        "onset_frame": onset,
        "event": event,
        "frames_to_event": None if event is None else event["confirmed_frames"],
        "seconds_at_5fps": None if event is None else round(event["confirmed_frames"] / 5, 1),
        "timing": timing,
        "job": job,
        "jobs": len(jobs),
        "versions": {
            "before": seen.first_version,
            "after": seen.switch["version"] if seen.switch else None,
        },
        "phases": phases,
        "f1_after_minus_before": recovered,
        "frames": lost,
        "frames_lost": sum(c["missing"] for c in lost.values()),
        "other_camera_events": [
            {k: e[k] for k in ("camera_id", "signal", "frame_id")} for e in others
        ],
        "drifting_camera_events_before_onset": len(early),
        "drift_events": [
            {k: e[k] for k in ("camera_id", "signal", "detector", "frame_id")}
            for e in seen.drift_events
        ],
    }


def targets(figures: dict) -> dict[str, bool]:
    f = figures
    return {
        "frames_to_event <= 300": f["frames_to_event"] is not None and f["frames_to_event"] <= 300,
        "new version serving": f["versions"]["after"] is not None,
        "F1 after within 2 points of before": f["f1_after_minus_before"] is not None
        and f["f1_after_minus_before"] >= -0.02,
        "no frame lost": f["frames_lost"] == 0
        and all(c["dead_letters"] == 0 for c in f["frames"].values()),
        "no drift event on other cameras": not f["other_camera_events"],
    }


def copy_models(source: Path, target: Path) -> None:
    """The repository's inspection models (every version folder and config) for the run."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", ".export-*"))


def run_scenario(config: ScenarioConfig, state_dir: Path, repository: Path, console) -> dict:
    """Start a stack with the retrain worker on a copy of the models, run, score."""
    run_id = uuid.uuid4().hex[:8]
    runs = plan(config, run_id)
    fresh_stack_folder(state_dir).mkdir(parents=True, exist_ok=True)
    models = state_dir / "models"
    copy_models(repository, models)
    saved = {k: os.environ.get(k) for k in RETRAIN_ENV}
    os.environ.update(RETRAIN_ENV)  # the workers inherit the environment
    started = time.monotonic()
    try:
        settings = free_port_settings(state_dir, cameras=0).model_copy(
            update={"with_retrain": True, "model_repository": models}
        )
        console.print("[bold]Starting the local stack[/] with the retrain worker")
        with LocalStack(settings) as stack:
            stack.start()
            console.print(f"stack ready in {time.monotonic() - started:.0f} s")
            engine = make_engine(stack.database_url)
            specs = [
                CameraSpec(
                    camera_id=c,
                    name=f"drift scenario {c}",
                    pipeline="inspect",
                    max_fps=config.fps * 2 + 1,
                )
                for c in CAMERAS
            ]
            upsert_cameras(engine, specs, pepper="")
            engine.dispose()
            sender = Sender(stack.kafka_bootstrap, runs, config)
            thread = threading.Thread(target=sender.run, name="drift-lines", daemon=True)
            thread.start()
            try:
                seen = collect(stack.kafka_bootstrap, runs, sender, config, console.print)
            finally:
                sender.stop.set()
                thread.join(120)
                sender.close()
            if sender.error is not None:
                raise RuntimeError(f"sending frames failed: {sender.error}") from sender.error
            jobs = job_timeline(stack.database_url)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    figures = score(runs, config, seen, sender.sent, jobs)
    figures.update(
        run_id=run_id, config=config.__dict__, wall_s=round(time.monotonic() - started, 1)
    )
    figures["targets"] = targets(figures)
    return figures


def figures_tables(figures: dict):
    from rich.table import Table

    drift = Table("measure", "value", title="Drift on " + figures["drift_camera"])
    event = figures["event"] or {}
    drift.add_row("frames from onset to drift event (confirmed)", str(figures["frames_to_event"]))
    drift.add_row("frames from onset to alarm", str(event.get("alarm_frames")))
    drift.add_row("signal / detector", f"{event.get('signal')} / {event.get('detector')}")
    for k, v in figures["timing"].items():
        drift.add_row(k.replace("_", " "), f"{v} s")
    drift.add_row(
        "defect detector version",
        f"{figures['versions']['before']} -> {figures['versions']['after']}",
    )
    drift.add_row("frames lost", str(figures["frames_lost"]))
    drift.add_row("drift events on other cameras", str(len(figures["other_camera_events"])))
    phases = Table(
        "camera",
        "phase",
        "parts",
        "bad",
        "recall",
        "precision",
        "F1",
        title="Per-part decisions against the truth",
    )
    for camera, rows in figures["phases"].items():
        for phase, row in rows.items():
            phases.add_row(
                camera,
                phase,
                str(row["parts"]),
                str(row["defective"]),
                *(f"{row[k]:.3f}" if k in row else "-" for k in ("recall", "precision", "f1")),
            )
    return drift, phases
