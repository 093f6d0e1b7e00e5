"""`visionline bench --path inspect`: the inspection path through the whole stack against a
bare single-process loop over the same frames, in one run.

The frames are the acceptance lines' (visionline/acceptance/run.py): conveyor parts with the
lines' nuisance mixes, rendered before each phase so that the cameras cost nothing while it
runs. A phase sends ``lines`` cameras at the lines' rate (10 frames/s each) for ``seconds``
and reads back what the stack made of them: frames inspected and shed, verdicts and alerts.

- decision latency: capture of a part's last frame to its verdict (the parts worker's
  ``decided_at``) and to its alert (``created_at`` in the rules worker);
- rated load: the most frames/s (one line at 5 frames/s, the ``half-rate-line-*`` rules
  entry, then 1, 2, ... lines at 10 frames/s) with p99 decision latency under 1 s,
  fewer than 2 % of parts ``insufficient`` and fewer than 5 % of frames shed; one more
  phase runs at twice that;
- pipeline / bare: frames inspected per second in the most loaded phase over the bare loop's.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from visionline.acceptance.run import CameraRun, PacedSender, plan, score
from visionline.bench.figures import component_usage
from visionline.bench.run import Sampler, _machine, upsert
from visionline.camera.publisher import FramePublisher
from visionline.inspection.vision import DEFECT_DETECTOR, PART_ANOMALY, PART_CROPS
from visionline.kafka import read_messages, topic_consumer
from visionline.messages import Topic
from visionline.report import percentiles
from visionline.settings import REPO_ROOT

Log = Callable[[str], None]
RATED_P99_S = 1.0  # decision latency a reject gate a metre or two downstream can wait
RATED_INSUFFICIENT = 0.02
RATED_SHED = 0.05
OVERLOAD_P99_S = 3.0


@dataclass(frozen=True)
class InspectBenchOptions:
    max_lines: int = 4
    seconds: float = 40.0  # each phase's sending
    fps: float = 10.0  # per line
    bare_frames: int = 90
    seed: int = 4242
    out: Path = Path("bench-results")
    state_dir: Path = REPO_ROOT / ".state" / "bench-inspect"


@dataclass
class Phase:
    """What one phase sends: each camera's frames, rendered."""

    runs: list[CameraRun]
    frames: dict[str, list[bytes]]
    fps: float

    @classmethod
    def render(cls, lines: int, seconds: float, fps: float, seed: int) -> Phase:
        runs = plan(lines, 0, fps, seed, run_id=uuid.uuid4().hex[:8])
        count = int(seconds * fps)
        return cls(runs, {r.camera: [r.render(i) for i in range(count)] for r in runs}, fps)

    @classmethod
    def renamed(cls, phase: Phase, prefix: str) -> Phase:
        """The same frames from cameras named ``prefix`` + their name (another rules entry)."""
        runs = [replace(r, camera=prefix + r.camera) for r in phase.runs]
        frames = {prefix + camera: f for camera, f in phase.frames.items()}
        return cls(runs, frames, phase.fps)


# ================================ the bare loop ==============================================


def bare_inspection(
    frames: list[bytes], repository: Path, threads: int = 1, shared_backbone: bool = True
) -> dict[str, Any]:
    """Decode and the inspect worker's own ``Inspector`` on local ONNX models (``threads``
    each), frame after frame in this process: frames/s, parts, and each model's share.
    ``shared_backbone``: with ``part_crops`` when it is built, as the inspect worker runs."""
    import asyncio
    import resource

    import cv2

    from visionline.inspection.local import local_inspector
    from visionline.training.evaluate import load_models

    models, versions = load_models(repository, threads=threads)
    if shared_backbone:
        models.update(crop_models(repository, versions, threads))
    spent: Counter[str] = Counter()
    timed = {name: _Timed(model, name, spent) for name, model in models.items()}
    inspector = local_inspector(timed, versions)  # type: ignore[arg-type]

    def one(data: bytes) -> int:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert bgr is not None  # the generator's own JPEG
        parts, _ = asyncio.run(inspector.inspect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
        return len(parts)

    for data in frames[:3]:  # warm-up: sessions allocate on first use
        one(data)
    spent.clear()
    cpu0, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    parts = sum(one(data) for data in frames)
    seconds = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    n = len(frames)
    return {
        "frames": n,
        "seconds": round(seconds, 2),
        "fps": round(n / seconds, 2),
        "parts_per_frame": round(parts / n, 2),
        "parts_per_s": round(parts / seconds, 2),
        "model_ms_per_frame": {k: round(1000 * v / n, 1) for k, v in sorted(spent.items())},
        "other_ms_per_frame": round(1000 * (seconds - sum(spent.values())) / n, 1),
        "cpu_ms_per_frame": round(1000 * cpu / n, 1),
        "threads_per_model": threads,
        "models": sorted(models),
    }


def crop_models(repository: Path, versions: dict[str, int], threads: int) -> dict[str, Any]:
    """``part_crops`` built from the loaded pair, when one is: {name: model}, else {}."""
    from visionline.inspection.crop_pair import built_from
    from visionline.training.serving import OnnxModel

    pair = (versions[PART_ANOMALY], versions[DEFECT_DETECTOR])
    version = built_from(repository, pair)
    if version is None:
        return {}
    return {PART_CROPS: OnnxModel(repository / PART_CROPS / str(version) / "model.onnx", threads)}


@dataclass
class _Timed:
    model: Any
    name: str
    spent: Counter[str]

    def run(self, x):
        start = time.perf_counter()
        try:
            return self.model.run(x)
        finally:
            self.spent[self.name] += time.perf_counter() - start


# ================================ a phase through the stack ==================================


@dataclass
class Collected:
    inspected: Counter[str] = field(default_factory=Counter)
    inspected_at: list[float] = field(default_factory=list)
    verdicts: list[dict] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)


def collect(consumer, phase: Phase, done: threading.Event, settle_s: float) -> Collected:
    """Observations, verdicts and alerts of the phase's cameras, until the sending is done and
    nothing new came for ``settle_s``."""
    cameras = {r.camera: r for r in phase.runs}
    got, last_news = Collected(), time.monotonic()
    for message in read_messages(consumer, until=time.monotonic() + 600, idle_s=0.5):
        now = time.monotonic()
        if message is not None:
            item, topic = json.loads(message.value()), message.topic()
            if topic == str(Topic.PART_OBSERVATIONS):
                camera = item["frame"]["camera_id"]
                if (
                    camera in cameras
                    and cameras[camera].index_of(item["frame"]["frame_id"]) is not None
                ):
                    got.inspected[camera] += 1
                    got.inspected_at.append(time.time())
                    last_news = now
            elif item.get("camera_id") in cameras:
                (got.verdicts if topic == str(Topic.PART_DECISIONS) else got.alerts).append(item)
                last_news = now
        if done.is_set() and now - last_news > settle_s:
            return got
    return got


def last_frame_capture(phase: Phase, t0: float, verdict: dict) -> float | None:
    run = next(r for r in phase.runs if r.camera == verdict["camera_id"])
    index = run.index_of(verdict["last_frame_id"])
    return None if index is None else t0 + index / phase.fps


def latency_of(phase: Phase, t0: float, got: Collected) -> dict[str, Any]:
    """Capture of each part's last frame to its verdict and to its alert (ms percentiles).
    Parts still in view in the phase's last second are left out: the line stopped under them,
    and the parts worker decides them only after ``idle_flush_s`` of silence."""
    end = t0 + max(len(f) for f in phase.frames.values()) / phase.fps - 1.0
    last = {v["decision_id"]: last_frame_capture(phase, t0, v) for v in got.verdicts}
    last = {k: v for k, v in last.items() if v is not None and v < end}
    to_verdict = [
        v["decided_at"] - last[v["decision_id"]] for v in got.verdicts if v["decision_id"] in last
    ]
    to_alert = []
    for alert in got.alerts:
        captured = last.get((alert.get("part") or {}).get("decision_id"))
        if captured is not None:
            to_alert.append(alert["created_at"] - captured)
    return {
        "decision_ms": {**percentiles(to_verdict), "max": _max_ms(to_verdict)},
        "alert_ms": {**percentiles(to_alert), "max": _max_ms(to_alert)},
    }


def _max_ms(values: list[float]) -> float | None:
    return round(1000 * max(values), 1) if values else None


def register_lines(database_url: str, phase: Phase) -> None:
    """The phase's cameras as inspection cameras."""
    from visionline.camera_registry import CameraSpec

    upsert(
        database_url,
        [
            CameraSpec(camera_id=r.camera, name="bench line", max_fps=100, pipeline="inspect")
            for r in phase.runs
        ],
    )


def run_phase(stack, phase: Phase, log: Log, settle_s: float = 8.0) -> dict[str, Any]:
    """Send the phase through ``stack``; its figures."""
    register_lines(stack.database_url, phase)
    bootstrap = stack.kafka_bootstrap
    topics = (Topic.PART_OBSERVATIONS, Topic.PART_DECISIONS, Topic.ALERTS)
    consumer = topic_consumer(bootstrap, topics, from_beginning=False)
    publisher = FramePublisher(bootstrap)
    publisher.start_polling()
    total = {camera: len(frames) for camera, frames in phase.frames.items()}
    t0 = time.time() + 1.0
    sender = PacedSender(publisher, phase.runs, total, phase.fps, t0, frames=phase.frames)
    sampler = Sampler(stack)
    sampler.start()
    threading.Thread(target=sender.send_all, name="bench-lines", daemon=True).start()
    got = collect(consumer, phase, sender.done, settle_s)
    samples = sampler.stop()
    consumer.close()
    publisher.close()
    figures = phase_figures(phase, t0, got, component_usage(samples))
    log(
        f"{len(phase.runs)} lines: {figures['inspected_fps']} frames/s inspected, "
        f"{figures['shed_share']:.0%} shed, decision p99 {figures['decision_ms']['p99']} ms, "
        f"{figures['insufficient_share']:.1%} insufficient"
    )
    return figures


def phase_figures(phase: Phase, t0: float, got: Collected, usage: dict) -> dict[str, Any]:
    sent = sum(len(f) for f in phase.frames.values())
    inspected = sum(got.inspected.values())
    span = (max(got.inspected_at) - t0) if got.inspected_at else 0.0
    statuses = Counter(v["status"] for v in got.verdicts)
    accuracy = score(phase.runs, got.verdicts, got.alerts)
    per_frame = {
        name: round(1000 * u["cpu_s"] / max(1, inspected), 1)
        for name, u in sorted(usage.items())
        if u["cpu_s"] > 0.05
    }
    return {
        "lines": len(phase.runs),
        "fps_per_line": phase.fps,
        "offered_fps": round(len(phase.runs) * phase.fps, 1),
        "sent": sent,
        "inspected": inspected,
        "shed_share": round(1 - inspected / sent, 3) if sent else 0.0,
        "inspected_fps": round(inspected / span, 2) if span else 0.0,
        "parts_per_s": round(len(got.verdicts) / span, 2) if span else 0.0,
        "verdicts": len(got.verdicts),
        "statuses": dict(statuses),
        "insufficient_share": round(statuses["insufficient"] / max(1, len(got.verdicts)), 4),
        **latency_of(phase, t0, got),
        "recall": accuracy["recall"],
        "precision": accuracy["precision"],
        "duplicate_alerts": accuracy["duplicate_alerts"],
        "cpu_ms_per_inspected_frame": per_frame,
    }


# ================================ the run ====================================================


def sustains(phase: dict[str, Any]) -> bool:
    """A load the stack keeps up with: decisions in time, few parts insufficient, and (almost)
    every frame inspected. Shedding keeps decisions timely past that, on fewer frames per part:
    a load that needs it is an overload, however well it is handled."""
    p99 = phase["decision_ms"]["p99"]
    ok = p99 is not None and p99 < 1000 * RATED_P99_S
    ok = ok and phase["shed_share"] < RATED_SHED
    return ok and phase["insufficient_share"] < RATED_INSUFFICIENT


def ends_the_ladder(phase: dict[str, Any], fps: float, options: InspectBenchOptions) -> bool:
    """A full-rate load not sustained ends the phases; the half-rate one is a reference only
    (one insufficient part in its ~50 would otherwise end the bench before any full rate)."""
    return fps == options.fps and not sustains(phase)


def run_inspect_bench(options: InspectBenchOptions, log: Log) -> dict[str, Any]:
    from visionline.stack import LocalStack
    from visionline.stack.config import free_port_settings
    from visionline.stack.state import fresh_stack_folder

    first = Phase.render(3, options.bare_frames / 3 / options.fps, options.fps, options.seed)
    bare_frames = [f for frames in first.frames.values() for f in frames]
    log(f"bare loop over {len(bare_frames)} frames of {len(first.runs)} lines")
    repository = REPO_ROOT / "triton_models"
    baseline = bare_inspection(bare_frames, repository, shared_backbone=False)
    log(f"bare, the crop models apart: {baseline['fps']} frames/s")
    bare = bare_inspection(bare_frames, repository)
    bare["over_crop_models_apart"] = round(bare["fps"] / baseline["fps"], 3)
    bare["crop_models_apart"] = baseline
    log(f"bare: {bare['fps']} frames/s, {bare['parts_per_frame']} parts per frame")
    settings = free_port_settings(fresh_stack_folder(options.state_dir), cameras=0)
    phases: list[dict[str, Any]] = []
    with LocalStack(settings) as stack:
        stack.start()
        log("warm-up: one line for 10 s, not measured (Triton's first requests, the groups)")
        _phase(stack, 1, options.fps, replace(options, seconds=10), log)
        for lines, fps in loads(options):
            phases.append(_phase(stack, lines, fps, options, log))
            if ends_the_ladder(phases[-1], fps, options):
                break
        rated = max((p["offered_fps"] for p in phases if sustains(p)), default=0.0)
        if rated and not any(p["offered_fps"] == 2 * rated for p in phases):
            phases.append(_phase(stack, round(2 * rated / options.fps), options.fps, options, log))
    return assemble(options, bare, phases, rated)


def loads(options: InspectBenchOptions) -> list[tuple[int, float]]:
    """(lines, frames/s each) in the order tried: one line at half its rate, then 1, 2, ...
    lines at their rate."""
    return [(1, options.fps / 2)] + [(n, options.fps) for n in range(1, options.max_lines + 1)]


def _phase(stack, lines: int, fps: float, options: InspectBenchOptions, log: Log) -> dict:
    log(f"rendering {lines} lines at {fps:g} frames/s x {options.seconds:.0f} s")
    phase = Phase.render(lines, options.seconds, fps, options.seed + 100 * lines + int(fps))
    if fps != options.fps:  # a line's belt speed is in its rules entry: this one is at 5/s
        phase = Phase.renamed(phase, "half-rate-")
    return run_phase(stack, phase, log)


def _inspect_settings() -> dict[str, Any]:
    """The inspect worker's settings that shape these figures (from the environment the
    stack's workers inherit): frames in flight, the crop model, load shedding."""
    from visionline.settings import InspectSettings

    settings = InspectSettings()
    shedding = ("shed_late_after_s", "shed_gap_per_late_s", "shed_max_gap_s")
    return {name: getattr(settings, name) for name in ("frames_in_flight", "crop_model", *shedding)}


def assemble(
    options: InspectBenchOptions, bare: dict, phases: list[dict], rated_fps: float
) -> dict[str, Any]:
    saturated = max(phases, key=lambda p: p["inspected_fps"], default=None)
    ratio = None
    if saturated and bare["fps"]:
        ratio = round(saturated["inspected_fps"] / bare["fps"], 3)
    overload = next((p for p in phases if rated_fps and p["offered_fps"] == 2 * rated_fps), None)
    return {
        "path": "inspect",
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": _machine(),
        "options": {k: str(v) for k, v in options.__dict__.items()},
        "inspect_worker": _inspect_settings(),
        "bare": bare,
        "phases": phases,
        "rated_fps": rated_fps,
        "rated_lines": round(rated_fps / options.fps, 2),
        "pipeline_over_bare": ratio,
        "saturated_inspected_fps": saturated["inspected_fps"] if saturated else None,
        "overload_p99_under_3s": (
            None
            if overload is None or overload["decision_ms"]["p99"] is None
            else overload["decision_ms"]["p99"] < 1000 * OVERLOAD_P99_S
        ),
    }


def write_inspect_results(figures: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"inspect-{figures['at'].replace(':', '')}.json"
    text = json.dumps(figures, indent=1)
    path.write_text(text)
    (out / "inspect-latest.json").write_text(text)
    return path
