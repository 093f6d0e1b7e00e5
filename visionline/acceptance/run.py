"""``visionline acceptance run``: many parts on three conveyor cameras through the real stack.

Each camera is a ``LineGenerator`` with its own seed and mix of nuisance factors. Frames go
to the raw-frames topic like any camera's (frame id ``<camera>-<index>``, capture time
``t0 + index / fps``); the verdicts and alerts that come back are joined to the generator's
ground truth: a verdict belongs to the true part whose box best overlaps its box in its best
frame. Scored per physical part, on parts that entered and left the view during the run:
recall and precision of defect alerts, and duplicate alerts per part.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from visionline.camera.publisher import FramePublisher
from visionline.inspection.metrics import MIN_IOU, binary_counts, iou
from visionline.kafka import read_messages, topic_consumer
from visionline.messages import Topic
from visionline.stack import LocalStack
from visionline.stack.config import free_port_settings
from visionline.stack.state import fresh_stack_folder
from visionline.synthetic.generator import LineGenerator
from visionline.synthetic.schedule import CAMERA_MIXES


@dataclass
class CameraRun:
    """What was sent for one camera, kept to join verdicts back to the truth."""

    camera: str
    generator: LineGenerator
    run_id: str = "run"  # in every frame id: a run never meets an earlier run's decisions
    frames: int = 0
    boxes: dict[int, list[tuple[int, tuple[int, int, int, int]]]] = field(default_factory=dict)

    def frame_id(self, index: int) -> str:
        return f"{self.camera}-{self.run_id}-{index:06d}"

    def index_of(self, frame_id: str) -> int | None:
        head, _, tail = frame_id.rpartition("-")
        mine = head == f"{self.camera}-{self.run_id}"
        return int(tail) if mine and tail.isdigit() else None

    def render(self, index: int) -> bytes:
        return self.render_with_truth(index)[0]

    def render_with_truth(self, index: int):
        """The encoded frame and its ``FrameTruth`` (its part boxes kept for joining)."""
        data, truth = self.generator.encode(index)
        self.boxes[index] = [(p.part_id, p.box) for p in truth.parts]
        self.frames = max(self.frames, index + 1)
        return data, truth

    def part_of(self, frame_id: str, box: Iterable[float]) -> int | None:
        index = self.index_of(frame_id)
        candidates = self.boxes.get(index, []) if index is not None else []
        scored = [(iou(tuple(box), b), part_id) for part_id, b in candidates]
        best = max(scored, default=(0.0, None))
        return best[1] if best[0] >= MIN_IOU else None


def plan(cameras: int, parts: int, fps: float, seed: int, run_id: str = "run") -> list[CameraRun]:
    """The lines of a run (``parts`` is for ``frames_needed``)."""
    names = list(CAMERA_MIXES)[:cameras] + [f"line-{k + 1}" for k in range(3, cameras)]
    runs = []
    for k, name in enumerate(names):
        mix = CAMERA_MIXES.get(name, {})
        generator = LineGenerator(seed=seed + k, fps=fps, camera=name, nuisances=mix)
        runs.append(CameraRun(name, generator, run_id))
    return runs


def frames_needed(generator: LineGenerator, parts_per_camera: int) -> int:
    """Frames until ``parts_per_camera`` parts have entered and left the view."""
    return int((parts_per_camera + 2) * generator.spacing + generator.frames_per_part) + 2


Key = tuple[str, int]  # (camera id, part id)


def match_verdicts(by_camera: dict, verdicts: list[dict]):
    """Each verdict on the true part it judged: (verdicts per part, unmatched per camera)."""
    decided: dict[Key, list[dict]] = defaultdict(list)
    unmatched: Counter[str] = Counter()
    for v in verdicts:
        run = by_camera.get(v["camera_id"])
        if run is None:
            continue
        part = run.part_of(v["best_frame_id"], v["box"])
        if part is None:
            unmatched[v["camera_id"]] += 1
        else:
            decided[(v["camera_id"], part)].append(v)
    return decided, unmatched


def _match_alerts(by_camera: dict, alerts: list[dict]):
    """Each part alert on its true part: (alert ids per part, alerts on no part per camera)."""
    alerted: dict[Key, set[str]] = defaultdict(set)
    false_alerts: Counter[str] = Counter()
    for a in alerts:
        run, detail = by_camera.get(a["camera_id"]), a.get("part")
        if run is None or detail is None:
            continue
        part = run.part_of(a["frame_id"], detail["box"])
        if part is None:
            false_alerts[a["camera_id"]] += 1
        else:
            alerted[(a["camera_id"], part)].add(a["alert_id"])
    return alerted, false_alerts


def _camera_score(
    run: CameraRun, decided: dict, alerted: dict, false_alerts: int, unmatched_verdicts: int
) -> tuple[dict, list[bool], list[bool]]:
    """One camera's figures, and its (predicted, actual) per part, false alerts included."""
    labels = [
        p
        for p in run.generator.part_truth(run.frames)
        if p.first_frame > 0 and p.last_frame < run.frames - 1
    ]
    predicted = [bool(alerted.get((run.camera, p.part_id))) for p in labels]
    actual = [p.defective for p in labels]
    missed = [
        _missed(p, decided.get((run.camera, p.part_id), []))
        for p, hit in zip(labels, predicted, strict=True)
        if p.defective and not hit
    ]
    predicted, actual = predicted + [True] * false_alerts, actual + [False] * false_alerts
    counts = binary_counts(predicted, actual)
    statuses = Counter(
        v["status"] for key, vs in decided.items() if key[0] == run.camera for v in vs
    )
    figures = {
        "frames": run.frames,
        "parts": len(labels),
        "defective": sum(p.defective for p in labels),
        "decided": sum(bool(decided.get((run.camera, p.part_id))) for p in labels),
        "alerted": sum(bool(alerted.get((run.camera, p.part_id))) for p in labels),
        "unmatched_alerts": false_alerts,
        "unmatched_verdicts": unmatched_verdicts,
        "duplicate_alerts": sum(
            max(0, len(alerted.get((run.camera, p.part_id), ())) - 1) for p in labels
        ),
        "nuisances": run.generator.schedule.strengths_at(0, run.camera),
        "statuses": dict(statuses),
        "missed": missed,
        **{k: round(v, 4) for k, v in counts.items()},
    }
    return figures, predicted, actual


def score(runs: list[CameraRun], verdicts: list[dict], alerts: list[dict]) -> dict:
    """Per-part recall, precision and duplicates of defect alerts against the truth."""
    by_camera = {r.camera: r for r in runs}
    decided, unmatched_verdicts = match_verdicts(by_camera, verdicts)
    alerted, false_alerts = _match_alerts(by_camera, alerts)
    cameras: dict[str, dict] = {}
    predicted: list[bool] = []
    actual: list[bool] = []
    for run in runs:
        figures, p, a = _camera_score(
            run, decided, alerted, false_alerts[run.camera], unmatched_verdicts[run.camera]
        )
        cameras[run.camera] = figures
        predicted, actual = predicted + p, actual + a
    overall = binary_counts(predicted, actual)
    return {
        "parts": sum(c["parts"] for c in cameras.values()),
        "defective": sum(c["defective"] for c in cameras.values()),
        "recall": round(overall["recall"], 4),
        "precision": round(overall["precision"], 4),
        "f1": round(overall["f1"], 4),
        "duplicate_alerts": sum(c["duplicate_alerts"] for c in cameras.values()),
        "tp": overall["tp"],
        "fp": overall["fp"],
        "fn": overall["fn"],
        "cameras": cameras,
    }


def _missed(label, verdicts: list[dict]) -> dict:
    """A defective part without an alert, with what its verdict(s) saw: why it was missed."""
    seen = [
        {k: v.get(k) for k in ("status", "frames_seen", "defect_frames", "score", "defect_class")}
        for v in verdicts
    ]
    return {"part_id": label.part_id, "classes": label.classes, "verdicts": seen}


@dataclass
class RunConfig:
    parts: int = 500
    cameras: int = 3
    fps: float = 10.0  # per camera: the belt speed in infra/rules.yaml assumes 10
    seed: int = 4242
    settle_s: float = 30.0  # after the last frame: how long to wait for the last verdicts
    timeout_s: float = 1800.0


def publish_and_collect(
    bootstrap: str, runs: list[CameraRun], config: RunConfig, log: Callable[[str], None]
) -> tuple[list[dict], list[dict], dict]:
    """Send every camera's frames, paced at ``fps`` each, and read verdicts and alerts back."""
    per_camera = -(-config.parts // len(runs))
    total = {r.camera: frames_needed(r.generator, per_camera) for r in runs}
    topics = (Topic.PART_DECISIONS, Topic.ALERTS, Topic.PART_OBSERVATIONS)
    consumer = topic_consumer(bootstrap, topics, from_beginning=True)
    publisher = FramePublisher(bootstrap)
    publisher.start_polling()
    sender = PacedSender(publisher, runs, total, config.fps)
    threading.Thread(target=sender.send_all, name="line-cameras", daemon=True).start()
    collected = _collect(consumer, sender, {r.camera for r in runs}, config, log)
    consumer.close()
    publisher.close()
    seconds = round(time.time() - sender.t0, 1)
    verdicts, alerts, observed = collected
    return verdicts, alerts, {"sent": dict(sender.sent), "inspected": observed, "seconds": seconds}


@dataclass
class PacedSender:
    """Each camera's frames at ``fps``, stamped with the time they are due; rendered as they
    are sent, or taken from ``frames`` (rendered before, so the cameras cost nothing then)."""

    publisher: FramePublisher
    runs: list[CameraRun]
    total: dict[str, int]  # frames per camera
    fps: float
    t0: float = field(default_factory=time.time)
    sent: Counter[str] = field(default_factory=Counter)
    done: threading.Event = field(default_factory=threading.Event)
    frames: dict[str, list[bytes]] | None = None

    def send_all(self) -> None:
        for index in range(max(self.total.values())):
            due = self.t0 + index / self.fps
            for run in self.runs:
                if index < self.total[run.camera]:
                    data = self.frames[run.camera][index] if self.frames else run.render(index)
                    frame_id = run.frame_id(index)
                    self.publisher.publish(run.camera, data, frame_id, captured_at=int(due * 1000))
                    self.sent[run.camera] += 1
            time.sleep(max(0.0, self.t0 + (index + 1) / self.fps - time.time()))
        self.publisher.flush(60)
        self.done.set()


def _collect(consumer, sender: PacedSender, cameras: set[str], config: RunConfig, log):
    """Verdicts, alerts and inspected frames per camera, until every frame was sent and
    nothing new came for ``settle_s`` (or the timeout). Frames the inspect worker shed
    (visionline/inspection/shedding.py) are sent and never inspected."""
    verdicts, alerts, observed = list[dict](), list[dict](), Counter[str]()
    last_news = report = time.monotonic()
    deadline = time.monotonic() + config.timeout_s
    for message in read_messages(consumer, until=deadline, idle_s=0.5):
        now = time.monotonic()
        if message is not None:
            item, topic = json.loads(message.value()), message.topic()
            if topic == str(Topic.PART_OBSERVATIONS):
                observed[item["frame"]["camera_id"]] += item["frame"]["camera_id"] in cameras
            elif item.get("camera_id") in cameras:
                (verdicts if topic == str(Topic.PART_DECISIONS) else alerts).append(item)
            last_news = now
        if now >= report + 10:
            log(
                f"sent {sum(sender.sent.values())}/{sum(sender.total.values())} frames, inspected "
                f"{sum(observed.values())}, {len(verdicts)} verdicts, {len(alerts)} alerts"
            )
            report = now
        if sender.done.is_set() and now - last_news > config.settle_s:
            break
    return verdicts, alerts, dict(observed)


def run_acceptance(config: RunConfig, state_dir, console, bootstrap: str | None = None) -> dict:
    """Start a local stack on free ports (or use ``bootstrap``), run, score, write JSON."""
    from pathlib import Path

    # Frame ids, hence decision and alert ids, are the run's own: a stack that kept an earlier
    # run's PostgreSQL would otherwise take this run's parts for replays and stay silent.
    run_id = uuid.uuid4().hex[:8]
    runs = plan(config.cameras, config.parts, config.fps, config.seed, run_id)
    started = time.monotonic()
    if bootstrap is None:
        settings = free_port_settings(fresh_stack_folder(Path(state_dir)), cameras=0)
        console.print("[bold]Starting the local stack[/] (inspection cameras only)")
        with LocalStack(settings) as stack:
            stack.start()
            console.print(f"stack ready in {time.monotonic() - started:.0f} s")
            verdicts, alerts, traffic = publish_and_collect(
                stack.kafka_bootstrap, runs, config, console.print
            )
    else:
        verdicts, alerts, traffic = publish_and_collect(bootstrap, runs, config, console.print)
    figures = score(runs, verdicts, alerts)
    figures.update(
        run_id=run_id,
        traffic=traffic,
        config=config.__dict__,
        verdicts=len(verdicts),
        alerts=len(alerts),
        wall_s=round(time.monotonic() - started, 1),
    )
    return figures


def figures_table(figures: dict):
    from rich.table import Table

    table = Table(
        "camera",
        "parts",
        "bad",
        "alerted",
        "recall",
        "precision",
        "dup",
        "stray",
        title="Per-part defect alerts vs truth (dup: extra alerts for one part; stray: alerts "
        "matching no part)",
    )
    for camera, row in figures["cameras"].items():
        table.add_row(
            camera,
            str(row["parts"]),
            str(row["defective"]),
            str(row["alerted"]),
            f"{row['recall']:.3f}",
            f"{row['precision']:.3f}",
            str(row["duplicate_alerts"]),
            str(row["unmatched_alerts"]),
        )
    table.add_row(
        "all",
        str(figures["parts"]),
        str(figures["defective"]),
        str(figures["tp"] + figures["fp"]),
        f"{figures['recall']:.3f}",
        f"{figures['precision']:.3f}",
        str(figures["duplicate_alerts"]),
        "",
    )
    return table
