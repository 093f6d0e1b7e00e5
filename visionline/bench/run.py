"""Running the benchmark: frame pool, bare loop, load generator, samplers, phases."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from visionline.bench.figures import (
    CAMERA_PREFIX,
    IDLE_S,
    SAMPLE_EVERY_S,
    Sample,
    Snapshot,
    completed_at,
    component_usage,
    counter_delta,
    evaluate_targets,
    half_load_camera_fps,
    in_window,
    latency_figures,
    model_counters,
    parse_triton_threads,
    peak_rss,
    rate_in_window,
    rule_hit,
    safe_ratio,
    triton_figures,
)
from visionline.camera.frames import encode_jpeg
from visionline.camera.publisher import FramePublisher, Pacer, epoch_ms
from visionline.camera.simulator import PHOTO_NAMES, PhotoSimulator, SceneSimulator, photos
from visionline.camera_registry import CameraSpec, upsert_cameras
from visionline.db import make_engine
from visionline.imaging import inspect_header, model_input
from visionline.kafka import topic_consumer
from visionline.messages import Topic
from visionline.models.scores import softmax, top_k
from visionline.rulesets import load_rules
from visionline.settings import REPO_ROOT, PostprocessSettings, RulesSettings, UploadSettings
from visionline.stack import LocalStack, StackSettings
from visionline.stack.config import free_port_settings
from visionline.stack.process import session_tree
from visionline.stack.state import fresh_stack_folder


def frame_pool(resolution: tuple[int, int] = (1280, 720), quality: int = 80) -> list[bytes]:
    """Distinct camera-sized JPEGs: every bundled photo twice, six more chelsea cats, four
    synthetic scenes (about a third are cats, so a good share of frames alert)."""
    assert PHOTO_NAMES[0] == "chelsea"  # frame i is chelsea when i % len(photos) == 0
    photo, scene = PhotoSimulator(resolution), SceneSimulator(resolution, seed=1)
    count = len(photos(resolution))
    indices = [*range(2 * count), *(k * count for k in range(2, 8))]
    frames = [photo.frame(i) for i in indices] + [scene.frame(i * 25) for i in range(4)]
    return [encode_jpeg(frame, quality) for frame in frames]


@dataclass
class BareRun:
    frames: int
    seconds: float
    decode_preprocess_s: float
    infer_s: float
    alerts: int
    cpu_s: float = 0.0  # this process, every thread

    def as_dict(self) -> dict[str, Any]:
        n = max(1, self.frames)
        return {
            "fps": round(self.frames / self.seconds, 2),
            "frames": self.frames,
            "seconds": round(self.seconds, 2),
            "decode_preprocess_ms": round(1000 * self.decode_preprocess_s / n, 2),
            "infer_threshold_ms": round(1000 * self.infer_s / n, 2),
            "alert_share": round(self.alerts / n, 3),
            "cpu_ms_per_frame": round(1000 * self.cpu_s / n, 2),
            "cores": round(self.cpu_s / self.seconds, 2),
        }


@dataclass(frozen=True)
class AlertRule:
    labels: tuple[str, ...]
    min_score: float
    top_k: int


def bench_rule(camera_id: str) -> AlertRule:
    """The alert rule the bench cameras fall under, and postprocess's top-k."""
    rules = [r for r in load_rules(RulesSettings().rules_file) if r.applies_to(camera_id)]
    if not rules:
        raise RuntimeError(f"no rule in the rules file applies to camera {camera_id}")
    rule = min(rules, key=lambda r: r.min_confidence)
    return AlertRule(tuple(rule.labels), rule.min_confidence, PostprocessSettings().top_k)


class BareLoop:
    """Decode, preprocess, ONNX Runtime (batch 1) and the alert threshold, in this process."""

    def __init__(self, repository: Path, model: str, threads: int, rule: AlertRule) -> None:
        from visionline.models.local import LocalModel, load_labels  # ONNX Runtime: on use

        self.model = LocalModel(repository, model, None, threads)
        self.labels = load_labels(repository, model)
        self.rule = rule

    def frame(self, data: bytes) -> tuple[float, bool]:
        """(seconds decoding + preprocessing, whether the frame alerts)."""
        import numpy as np

        start = time.perf_counter()
        tensor, _ = model_input(data, inspect_header(data), self.model.input_shape[0] or 224)
        prepared = time.perf_counter()
        logits = self.model.infer(tensor[None])[0]
        top = top_k(softmax(logits.astype(np.float64)), self.rule.top_k, self.labels)
        hit = rule_hit([(t.label, t.score) for t in top], self.rule.labels, self.rule.min_score)
        return prepared - start, hit

    def run(self, pool: Sequence[bytes], seconds: float, warmup_frames: int = 5) -> BareRun:
        for data in pool[:warmup_frames]:
            self.frame(data)
        run = BareRun(0, 0.0, 0.0, 0.0, 0)
        start, cpu_start = time.perf_counter(), time.process_time()
        while run.frames < len(pool) or time.perf_counter() - start < seconds:
            began = time.perf_counter()
            prep, hit = self.frame(pool[run.frames % len(pool)])
            run.decode_preprocess_s += prep
            run.infer_s += time.perf_counter() - began - prep
            run.frames += 1
            run.alerts += hit
        run.seconds = time.perf_counter() - start
        run.cpu_s = time.process_time() - cpu_start
        return run


def triton_threads(repository: Path, model: str) -> int:
    text = (repository / model / "config.pbtxt").read_text()
    return parse_triton_threads(text, os.cpu_count() or 1)


# ================================ the stack side ============================================


class Collector(threading.Thread):
    """Reads predictions, alerts and dead letters from the start of their topics."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(name="bench-collector", daemon=True)

        self.topics = {
            str(Topic.PREDICTIONS): "predictions",
            str(Topic.ALERTS): "alerts",
            str(Topic.DEAD_LETTER): "dead_letters",
        }
        self.consumer = topic_consumer(bootstrap, list(self.topics), from_beginning=True)
        self.predictions: list[dict] = []
        self.alerts: list[dict] = []
        self.dead_letters: list[dict] = []
        self._halt = threading.Event()

    @property
    def completed(self) -> int:
        """Frames that left the pipeline, as a prediction or as a dead letter."""
        return len(self.predictions) + len(self.dead_letters)

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                for message in self.consumer.consume(500, 0.1):
                    if message.error() is None:  # a message: it has a topic and a value
                        kind = self.topics[cast(str, message.topic())]
                        getattr(self, kind).append(json.loads(cast(bytes, message.value())))
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


class LoadGenerator(threading.Thread):
    """Cameras pushing pool frames round-robin at ``rate_fps`` in total; a frame is dropped at
    the camera while ``in_flight`` frames are published and not yet out of the pipeline."""

    def __init__(
        self,
        publisher,
        cameras: Sequence[str],
        pool: Sequence[bytes],
        rate_fps: float,
        in_flight: int,
        completed: Callable[[], int],
    ) -> None:
        super().__init__(name="bench-load", daemon=True)
        self.publisher, self.cameras, self.pool = publisher, cameras, pool
        self.rate_fps, self.in_flight, self.completed = rate_fps, in_flight, completed
        self.base = completed()  # what came out before this load started
        self.published = self.dropped = self.late_ticks = 0
        self.started_at = self.stopped_at = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        pacer, index = Pacer(self.rate_fps), 0
        self.started_at = time.monotonic()
        while not self._halt.is_set():
            if self.published - (self.completed() - self.base) >= self.in_flight:
                self.dropped += 1
            else:
                camera = self.cameras[index % len(self.cameras)]
                frame = self.pool[index % len(self.pool)]
                try:
                    self.publisher.publish(camera, frame, captured_at=epoch_ms())
                    self.published += 1
                except BufferError:
                    self.dropped += 1
            index += 1
            self.late_ticks += pacer.wait(self._halt)
        self.stopped_at = time.monotonic()

    def outstanding(self) -> int:
        return self.published - (self.completed() - self.base)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def stats(self) -> dict[str, Any]:
        elapsed = max(1e-9, self.stopped_at - self.started_at)
        return {
            "target_fps": round(self.rate_fps, 2),
            "offered_fps": round((self.published + self.dropped) / elapsed, 2),
            "published_fps": round(self.published / elapsed, 2),
            "published": self.published,
            "dropped_at_camera": self.dropped,
            "late_ticks": self.late_ticks,
        }


@dataclass(frozen=True)
class Watched:
    name: str
    pid: int
    tree: bool  # with its descendants
    worker: bool


def watched_processes(status) -> list[Watched]:
    """Every started component (with descendants), the supervisor and this process (alone)."""
    out = [
        Watched(c.name, c.pid, True, c.kind == "worker")
        for c in status.components
        if c.pid is not None and not c.external
    ]
    out.append(Watched("supervisor", status.supervisor_pid, False, False))
    out.append(Watched("bench", os.getpid(), False, False))  # the cameras and the reader
    return out


class Sampler(threading.Thread):
    """CPU time and RSS of every watched process tree, every ``SAMPLE_EVERY_S``."""

    def __init__(self, stack, every_s: float = SAMPLE_EVERY_S) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self.stack, self.every_s = stack, every_s
        self.samples: list[Sample] = []
        self.workers: set[str] = set()
        self._procs: dict[int, Any] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while True:
            self.samples.append(Sample(time.monotonic(), self.snapshot()))
            if self._halt.wait(self.every_s):
                break
        self.samples.append(Sample(time.monotonic(), self.snapshot()))

    def stop(self) -> list[Sample]:
        self._halt.set()
        self.join(10)
        return self.samples

    def snapshot(self) -> Snapshot:
        status = self.stack.status()
        if status is None:
            return {}
        watched = watched_processes(status)
        self.workers |= {w.name for w in watched if w.worker}
        trees = session_tree(w.pid for w in watched if w.tree)
        return {
            w.name: self._measure((trees.get(w.pid) or [w.pid]) if w.tree else [w.pid])
            for w in watched
        }

    def _measure(self, pids: Iterable[int]) -> dict[int, tuple[float, int]]:
        import psutil

        out = {}
        for pid in pids:
            try:
                proc = self._procs.get(pid) or self._procs.setdefault(pid, psutil.Process(pid))
                with proc.oneshot():
                    times, rss = proc.cpu_times(), proc.memory_info().rss
            except psutil.Error:
                continue
            out[pid] = (times.user + times.system, rss)
        return out


def machine_cpu_s() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of all cores since boot; stolen: time the hypervisor gave
    this machine's cores to other guests."""
    import psutil

    times = psutil.cpu_times()._asdict()
    steal = times.get("steal", 0.0)
    # guest time is already counted in user time
    idle = sum(times.get(k, 0.0) for k in ("idle", "iowait", "steal", "guest", "guest_nice"))
    return sum(times.values()) - idle, steal


def scrape_triton(metrics_url: str, model: str) -> dict[str, float] | None:
    import httpx

    try:
        response = httpx.get(metrics_url, timeout=5.0)
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    return model_counters(response.text, model)


@dataclass
class BenchContext:
    stack: Any
    publisher: Any
    collector: Collector
    cameras: list[str]
    pool: list[bytes]
    in_flight: int
    metrics_url: str
    model: str


@dataclass
class PhaseResult:
    window: tuple[float, float]  # epoch seconds
    load: dict[str, Any]
    triton: dict[str, Any] | None
    usage: dict[str, dict[str, Any]]
    workers: set[str]
    machine_cores: float
    steal_cores: float
    drained: bool
    restarts: dict[str, int] = field(default_factory=dict)


def measure(ctx: BenchContext, seconds: float) -> dict[str, Any]:
    """Sample processes, machine CPU and Triton's counters for ``seconds`` from now."""
    triton_before = scrape_triton(ctx.metrics_url, ctx.model)
    sampler, cpu_before, start = Sampler(ctx.stack), machine_cpu_s(), time.time()
    sampler.start()
    time.sleep(seconds)
    end, cpu_after = time.time(), machine_cpu_s()
    triton_after = scrape_triton(ctx.metrics_url, ctx.model)
    samples = sampler.stop()
    triton = None
    if triton_before is not None and triton_after is not None:
        triton = triton_figures(counter_delta(triton_before, triton_after))
    return {
        "window": (start, end),
        "triton": triton,
        "usage": component_usage(samples),
        "workers": sampler.workers,
        "machine_cores": round((cpu_after[0] - cpu_before[0]) / (end - start), 2),
        "steal_cores": round((cpu_after[1] - cpu_before[1]) / (end - start), 2),
    }


def run_phase(ctx: BenchContext, rate_fps: float, warmup_s: float, seconds: float) -> PhaseResult:
    """Offer ``rate_fps`` for ``warmup_s + seconds``; measure the last ``seconds``; drain."""
    load = LoadGenerator(
        ctx.publisher,
        ctx.cameras,
        ctx.pool,
        rate_fps,
        ctx.in_flight,
        completed=lambda: ctx.collector.completed,
    )
    restarts_before = _restarts(ctx.stack)
    load.start()
    time.sleep(warmup_s)
    measured = measure(ctx, seconds)
    load.stop()
    drained = wait_drained(load, ctx.collector, timeout_s=max(30.0, seconds))
    restarts = counter_delta(restarts_before, _restarts(ctx.stack))
    return PhaseResult(
        **measured,
        load=load.stats(),
        drained=drained,
        restarts={k: int(v) for k, v in restarts.items() if v},
    )


def idle_figures(ctx: BenchContext, seconds: float) -> dict[str, Any]:
    """What the stack costs with no frame coming: polling, heartbeats, commits."""
    measured = measure(ctx, seconds)
    result = PhaseResult(**measured, load={}, drained=True)
    return {"window_s": round(seconds, 1), "usage": usage_dict(result)}


def _restarts(stack) -> dict[str, float]:
    status = stack.status()
    return {c.name: float(c.restarts) for c in status.components} if status else {}


def wait_drained(load: LoadGenerator, collector: Collector, timeout_s: float) -> bool:
    """Wait until every published frame came out (then a moment for the alerts after them)."""
    deadline = time.monotonic() + timeout_s
    while load.outstanding() > 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    alerts = -1
    while alerts != len(collector.alerts) and time.monotonic() < deadline:
        alerts = len(collector.alerts)
        time.sleep(1.0)
    return True


def register_cameras(database_url: str, count: int) -> list[str]:
    cameras = [f"{CAMERA_PREFIX}-{i:02d}" for i in range(1, count + 1)]
    upsert(
        database_url,
        [CameraSpec(camera_id=c, name="bench camera", max_fps=10_000) for c in cameras],
    )
    return cameras


def upsert(database_url: str, specs: list[CameraSpec]) -> None:
    """The bench's cameras in the stack's registry (ingest rejects unknown ones)."""
    engine = make_engine(database_url)
    try:
        upsert_cameras(engine, specs, UploadSettings().key_pepper)
    finally:
        engine.dispose()


# ================================ figures of a phase ========================================


def usage_dict(result: PhaseResult) -> dict[str, Any]:
    ours = sum(u["cores"] or 0.0 for u in result.usage.values())
    return {
        "components": result.usage,
        "stack_cores": round(ours, 2),
        "machine_busy_cores": result.machine_cores,
        "other_load_cores": round(max(0.0, result.machine_cores - ours), 2),
        "steal_cores": result.steal_cores,
    }


def cpu_per_frame(usage: dict[str, dict[str, Any]], fps: float) -> dict[str, float]:
    """CPU milliseconds each component spends per frame out of the pipeline, and the total."""
    if fps <= 0:
        return {}
    per = {name: round(1000 * (u["cores"] or 0.0) / fps, 2) for name, u in usage.items()}
    return {
        **dict(sorted(per.items(), key=lambda kv: -kv[1])),
        "total": round(sum(per.values()), 2),
    }


def saturation_figures(result: PhaseResult, collector: Collector) -> dict[str, Any]:
    start, end = result.window
    done = [completed_at(p) for p in collector.predictions]
    rejected = in_window(collector.dead_letters, start, end, lambda d: d["failed_at"])
    fps = rate_in_window(done, start, end)
    return {
        "window_s": round(end - start, 2),
        "fps": round(fps, 2),
        "cpu_ms_per_frame": cpu_per_frame(result.usage, fps),
        "predictions": sum(1 for t in done if start <= t < end),
        "dead_letters": dict(Counter(d["error_type"] for d in rejected)),
        "load": result.load,
        "drained": result.drained,
        "restarts": result.restarts,
        "triton": result.triton,
        "usage": usage_dict(result),
    }


def half_load_figures(result: PhaseResult, collector: Collector) -> dict[str, Any]:
    start, end = result.window
    predictions = in_window(collector.predictions, start, end, lambda p: p["captured_at"])
    alerts = in_window(collector.alerts, start, end, lambda a: a["captured_at"])
    rejected = in_window(collector.dead_letters, start, end, lambda d: d["failed_at"])
    served_by = Counter(p["model"]["served_by"] for p in predictions)
    return {
        "window_s": round(end - start, 2),
        "fps": round(len(predictions) / (end - start), 2),
        "predictions": len(predictions),
        "alerts": len(alerts),
        "alert_share": safe_ratio(len(alerts), len(predictions), 3),
        "dead_letters": dict(Counter(d["error_type"] for d in rejected)),
        "served_by": dict(served_by),
        "all_served_by_triton": bool(predictions) and set(served_by) == {"triton"},
        **latency_figures(predictions, alerts),
        "load": result.load,
        "drained": result.drained,
        "restarts": result.restarts,
        "triton": result.triton,
        "usage": usage_dict(result),
    }


# ================================ the whole run =============================================


@dataclass(frozen=True)
class BenchOptions:
    cameras: int = 4
    seconds: float = 30.0
    warmup: float = 10.0
    fps: float | None = None  # per camera, latency phase; None: half the measured maximum
    out: Path = Path("bench-results")
    state_dir: Path = REPO_ROOT / ".state" / "bench"
    in_flight: int = 64
    bare_seconds: float = 8.0
    bare_threads: int | None = None  # None: as many as Triton's model instances use
    overload: float = 1.5  # saturation phase: offered load = overload x bare frames/s


def tuning_env() -> dict[str, str]:
    """The ``VISIONLINE_*`` knobs set for this run (addresses and secrets left out)."""
    hidden = ("URL", "BOOTSTRAP", "PEPPER", "PASSWORD", "SECRET", "KEY", "TOKEN")
    return {
        k: v
        for k, v in sorted(os.environ.items())
        if k.startswith("VISIONLINE_") and not any(h in k for h in hidden)
    }


@dataclass(frozen=True)
class BareSetup:
    repository: Path
    model: str
    threads: int
    rule: AlertRule

    @classmethod
    def of(cls, state_dir: Path, threads: int | None = None) -> BareSetup:
        """The model the stack will serve, by default with as many threads as Triton gives it."""
        stack = StackSettings(state_dir=state_dir)
        threads = threads or triton_threads(stack.model_repository, stack.model_name)
        rule = bench_rule(f"{CAMERA_PREFIX}-01")
        return cls(stack.model_repository, stack.model_name, threads, rule)

    def run(self, pool: list[bytes], seconds: float) -> dict[str, Any]:
        loop = BareLoop(self.repository, self.model, self.threads, self.rule)
        return loop.run(pool, seconds).as_dict()


def bare_summary(runs: list[dict]) -> dict[str, Any]:
    fps = [r["fps"] for r in runs]
    return {
        "fps": round(sum(fps) / len(fps), 2),
        "spread_pct": round(100 * (max(fps) - min(fps)) / max(fps), 1) if max(fps) else None,
        "runs": runs,
    }


def run_pipeline(options: BenchOptions, pool: list[bytes], bare_fps: float, log) -> dict:
    """Start a fresh stack on free ports; saturation, half load and idle; stop it."""
    # Fresh: a stack folder kept from the last run brought back its topics, with the frames
    # it left unread, and each run after the first measured that backlog (half-load p50 of
    # 8-19 s against 80 ms, with 7 GB of Kafka logs after five runs).
    settings = free_port_settings(fresh_stack_folder(options.state_dir.absolute()))
    log(f"starting the local stack in {settings.state_dir}")
    with LocalStack(settings, attached=True) as stack:
        cameras = register_cameras(stack.database_url, options.cameras)
        collector = Collector(stack.kafka_bootstrap)
        collector.start()
        publisher = FramePublisher(stack.kafka_bootstrap)
        ctx = BenchContext(
            stack=stack,
            publisher=publisher,
            collector=collector,
            cameras=cameras,
            pool=pool,
            in_flight=options.in_flight,
            metrics_url=f"http://{settings.host}:{settings.triton_metrics_port}/metrics",
            model=settings.model_name,
        )
        try:
            figures = _both_phases(ctx, options, bare_fps, log)
        finally:
            publisher.close(5.0)
            collector.stop()
        figures["stack"] = {
            **{
                f"{name}_replicas": getattr(settings, f"{name}_replicas")
                for name in ("ingest", "preprocess", "inference", "postprocess", "rules")
            },
            "model_repository": str(settings.model_repository),
        }
        log("stopping the local stack")
    return figures


def _both_phases(ctx: BenchContext, options: BenchOptions, bare_fps: float, log) -> dict:
    offered = options.overload * bare_fps
    log(
        f"saturation: {options.cameras} cameras offering {offered:.0f} frames/s in total "
        f"(at most {options.in_flight} in flight), {options.warmup:.0f} s warm-up + "
        f"{options.seconds:.0f} s"
    )
    result = run_phase(ctx, offered, options.warmup, options.seconds)
    saturation = saturation_figures(result, ctx.collector)
    log(f"saturation: {saturation['fps']} frames/s out of the pipeline")
    per_camera = half_load_camera_fps(saturation["fps"], options.cameras, options.fps)
    half_warmup = min(options.warmup, 5.0)
    log(
        f"half load: {options.cameras} cameras at {per_camera:.2f} frames/s each, "
        f"{half_warmup:.0f} s warm-up + {options.seconds:.0f} s"
    )
    result = run_phase(ctx, per_camera * options.cameras, half_warmup, options.seconds)
    half = half_load_figures(result, ctx.collector)
    half["camera_fps"] = round(per_camera, 3)
    log(f"idle: {IDLE_S:.0f} s with no frame coming")
    idle = idle_figures(ctx, IDLE_S)
    return {
        "saturation": saturation,
        "half_load": half,
        "idle": idle,
        "workers": sorted(result.workers),
    }


def run_bench(options: BenchOptions, log: Callable[[str], None]) -> dict[str, Any]:
    started = datetime.now(UTC)
    log("encoding the frame pool")
    pool = frame_pool()
    bare = BareSetup.of(options.state_dir.absolute(), options.bare_threads)
    origin = "given" if options.bare_threads else "as Triton's model"
    log(f"bare loop, {bare.threads} ONNX Runtime threads ({origin}), {options.bare_seconds:.0f} s")
    runs = [bare.run(pool, options.bare_seconds)]
    pipeline = run_pipeline(options, pool, runs[0]["fps"], log)
    log("bare loop again, on the machine the stack left")
    runs.append(bare.run(pool, options.bare_seconds))
    return assemble(options, started, pool, bare.threads, bare_summary(runs), pipeline)


def assemble(
    options: BenchOptions, started: datetime, pool: list[bytes], threads: int, bare, pipeline
) -> dict[str, Any]:
    saturation, half = pipeline["saturation"], pipeline["half_load"]
    ratio = safe_ratio(saturation["fps"], bare["fps"], 3)
    workers = pipeline["workers"]
    usages = [saturation["usage"]["components"], half["usage"]["components"]]
    worker_rss = peak_rss(usages, workers)
    return {
        "started_at": started.isoformat(timespec="seconds"),
        "seconds_total": round((datetime.now(UTC) - started).total_seconds(), 1),
        "machine": _machine(),
        "config": {
            "cameras": options.cameras,
            "seconds": options.seconds,
            "warmup_s": options.warmup,
            "in_flight": options.in_flight,
            "overload": options.overload,
            "pool_frames": len(pool),
            "pool_mean_kb": round(sum(map(len, pool)) / len(pool) / 1024, 1),
            "resolution": "1280x720",
            "jpeg_quality": 80,
            "bare_ort_threads": threads,
            "stack": pipeline["stack"],
            "env": tuning_env(),
        },
        "bare": bare,
        "saturation": saturation,
        "half_load": half,
        "idle": pipeline["idle"],
        "ratio": ratio,
        "worker_peak_rss_mb": worker_rss,
        "targets": evaluate_targets(ratio, half["capture_to_alert_ms"]["p99"], worker_rss),
    }


def _machine() -> dict[str, Any]:
    import platform

    import psutil

    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def write_results(figures: dict, out: Path) -> Path:
    """``out/bench-<UTC timestamp>.json`` and ``out/latest.json``; returns the first."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(figures, indent=2)
    path = out / f"bench-{stamp}.json"
    path.write_text(text)
    (out / "latest.json").write_text(text)
    return path


# ================================ printing ==================================================
