"""`visionline bench`: the whole pipeline against a bare single-process loop, same frames, same run.

Phases, all on one pool of pre-encoded 720p JPEGs (real photos, the chelsea cat among them):

1. **bare**: this process decodes, preprocesses, runs ONNX Runtime (as many threads as Triton's
   model instance uses) and applies the alert threshold, frame after frame; run once before the
   stack starts and once after it stops, so machine noise shows as a spread.
2. **saturation**: a fresh local stack; N cameras offer more frames than it can take, with at most
   ``in_flight`` frames between publish and prediction (a congested camera drops the rest), so the
   pipeline is kept saturated without building a backlog that would outlast the run. The figure is
   the completion rate: predictions whose postprocessed stamp falls in the measurement window.
3. **half load**: the same stack at half that rate; capture-to-prediction and capture-to-alert
   latency, per-stage latency and who served the model.
4. **idle**: the same stack with no frame coming, for its fixed cost (polling, heartbeats).

The stack is the one ``visionline stack up`` would start, tuned by the usual environment
(``VISIONLINE_INFERENCE_MAX_BATCH``, ``VISIONLINE_STACK_PREPROCESS_REPLICAS``, ...): the results
record the ``VISIONLINE_*`` variables that were set.

Triton's batch sizes come from its Prometheus counters (deltas over each window); CPU and peak
memory from sampling every process of each component (with its descendants) every 0.5 s.

The figure functions are pure and unit-tested; the targets are reported, never asserted.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from visionline.report import capture_to_alert, capture_to_prediction, percentiles, stage_latencies
from visionline.settings import REPO_ROOT

TARGET_RATIO = 0.8  # pipeline frames/s over bare frames/s, at least
TARGET_ALERT_P99_MS = 250.0  # capture-to-alert p99 at half the maximum throughput, at most
TARGET_WORKER_RSS_MB = 300.0  # peak resident memory of every worker process, below
CAMERA_PREFIX = "test-bench"  # test-* cameras alert on every cat frame (infra/rules.yaml)
SAMPLE_EVERY_S = 0.5
IDLE_S = 10.0  # the stack at rest, after the load phases: its fixed cost
NOISE_WARN_CORES = 0.25  # CPU others used during a window above which its figures are flagged
MB = 2**20

# Triton's cumulative per-model counters (Prometheus text on its metrics port).
TRITON_COUNTERS = (
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_request_duration_us",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_infer_duration_us",
)


# ================================ pure figures ===============================================


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """``(name, labels, value)`` for every sample line of a Prometheus text exposition."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        samples.append((name, dict(_LABEL.findall(labels or "")), number))
    return samples


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def model_counters(text: str, model: str) -> dict[str, float]:
    """Triton's counters of ``model``, summed over its versions (0 for a counter not shown)."""
    totals = dict.fromkeys(TRITON_COUNTERS, 0.0)
    for name, labels, value in parse_prometheus(text):
        if name in totals and labels.get("model") == model:
            totals[name] += value
    return totals


def counter_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}


def _ratio(numerator: float, denominator: float, digits: int = 2) -> float | None:
    return round(numerator / denominator, digits) if denominator else None


def triton_figures(delta: dict[str, float]) -> dict[str, Any]:
    """Batch sizes and per-request times from the counters' change over a window.

    A request is one gRPC call (the inference worker's micro-batch); an execution is one run of
    the model (what Triton's dynamic batcher assembled from one or more requests).
    """
    requests = delta.get("nv_inference_request_success", 0.0)
    images = delta.get("nv_inference_count", 0.0)
    executions = delta.get("nv_inference_exec_count", 0.0)
    return {
        "requests": int(requests),
        "failed_requests": int(delta.get("nv_inference_request_failure", 0.0)),
        "images": int(images),
        "executions": int(executions),
        "client_batch_avg": _ratio(images, requests),
        "execution_batch_avg": _ratio(images, executions),
        "requests_per_execution": _ratio(requests, executions),
        "request_ms_avg": _ratio(
            delta.get("nv_inference_request_duration_us", 0.0), requests * 1e3
        ),
        "queue_ms_avg": _ratio(delta.get("nv_inference_queue_duration_us", 0.0), requests * 1e3),
        "compute_ms_avg": _ratio(
            delta.get("nv_inference_compute_infer_duration_us", 0.0), requests * 1e3
        ),
    }


def parse_triton_threads(config_text: str, cpu_count: int) -> int:
    """Total ONNX Runtime threads of a model: instances x intra-op threads (0 = one per core)."""
    config_text = re.sub(r"#[^\n]*", "", config_text)  # comments may show other configs
    intra = re.search(
        r'key:\s*"intra_op_thread_count"\s*value:\s*\{\s*string_value:\s*"(\d+)"', config_text
    )
    threads = int(intra.group(1)) if intra else 0
    group = re.search(r"instance_group\s*\[(.*?)\]", config_text, re.S)
    counts = re.findall(r"\bcount:\s*(\d+)", group.group(1)) if group else []
    instances = sum(int(n) for n in counts) or 1
    return instances * (threads or cpu_count)


def completed_at(prediction: dict) -> float:
    """When a prediction left the pipeline's last stage (epoch seconds)."""
    return prediction["stages"]["postprocessed"]


def in_window(items: Iterable[dict], start: float, end: float, key: Callable[[dict], float]):
    """The items whose ``key`` falls in ``[start, end)``."""
    return [item for item in items if start <= key(item) < end]


def rate_in_window(times: Iterable[float], start: float, end: float) -> float:
    """Events per second in ``[start, end)``."""
    if end <= start:
        return 0.0
    return sum(1 for t in times if start <= t < end) / (end - start)


def alert_stage_latencies(predictions: Sequence[dict], alerts: Sequence[dict]) -> list[float]:
    """Seconds from a frame's prediction (postprocessed) to its alert (rules)."""
    done = {p["frame_id"]: completed_at(p) for p in predictions}
    return [a["created_at"] - done[a["frame_id"]] for a in alerts if a["frame_id"] in done]


def latency_figures(predictions: Sequence[dict], alerts: Sequence[dict]) -> dict[str, Any]:
    """Capture-to-prediction, capture-to-alert and per-stage latency percentiles (ms)."""
    stages = stage_latencies(predictions)
    stages["alerted"] = alert_stage_latencies(predictions, alerts)
    return {
        "capture_to_prediction_ms": percentiles([capture_to_prediction(p) for p in predictions]),
        "capture_to_alert_ms": percentiles([capture_to_alert(a) for a in alerts]),
        "stage_ms": {stage: percentiles(values) for stage, values in stages.items()},
    }


def rule_hit(top: Sequence[tuple[str, float]], labels: Iterable[str], min_score: float) -> bool:
    """Whether a top-k list ``[(label, score)]`` holds one of ``labels`` at ``min_score``."""
    wanted = {label.casefold() for label in labels}
    return any(label.casefold() in wanted and score >= min_score for label, score in top)


# --- CPU and memory samples -------------------------------------------------------------------

# One sample: component -> pid -> (CPU seconds so far, resident bytes)
Snapshot = dict[str, dict[int, tuple[float, int]]]


@dataclass
class Sample:
    at: float  # monotonic seconds
    procs: Snapshot


def cpu_seconds(snapshots: Sequence[dict[int, tuple[float, int]]]) -> float:
    """CPU seconds a group of processes used between the first and the last snapshot.

    A process already there at the first snapshot counts from that value; one that appeared
    later (a restart, a new backend) counts from zero; one that ended counts until last seen.
    """
    if not snapshots:
        return 0.0
    first = snapshots[0]
    last: dict[int, float] = {}
    for snapshot in snapshots:
        last.update({pid: cpu for pid, (cpu, _) in snapshot.items()})
    return sum(cpu - (first[pid][0] if pid in first else 0.0) for pid, cpu in last.items())


def component_usage(samples: Sequence[Sample]) -> dict[str, dict[str, Any]]:
    """Per component: CPU seconds, average cores used, peak RSS of the whole tree and of its
    largest process (MiB), and how many processes it had at most."""
    if len(samples) < 2:
        return {}
    elapsed = samples[-1].at - samples[0].at
    names = sorted({name for s in samples for name in s.procs})
    usage = {}
    for name in names:
        snapshots = [s.procs.get(name, {}) for s in samples]
        cpu = cpu_seconds(snapshots)
        usage[name] = {
            "cpu_s": round(cpu, 2),
            "cores": round(cpu / elapsed, 3) if elapsed > 0 else None,
            "peak_rss_mb": round(max(sum(r for _, r in s.values()) for s in snapshots) / MB, 1),
            "peak_process_rss_mb": round(
                max((r for s in snapshots for _, r in s.values()), default=0) / MB, 1
            ),
            "processes": max(len(s) for s in snapshots),
        }
    return usage


def peak_rss(phases: Iterable[dict[str, dict[str, Any]]], names: Iterable[str]) -> dict[str, float]:
    """The largest process RSS (MiB) of each named component over several phases."""
    peaks: dict[str, float] = {}
    for usage in phases:
        for name in names:
            if name in usage:
                peaks[name] = max(peaks.get(name, 0.0), usage[name]["peak_process_rss_mb"])
    return peaks


# --- targets ----------------------------------------------------------------------------------


def _target(name: str, limit: str, value: Any, passed: bool | None) -> dict[str, Any]:
    return {"target": name, "limit": limit, "value": value, "passed": passed}


def evaluate_targets(
    ratio: float | None, alert_p99_ms: float | None, worker_rss_mb: dict[str, float]
) -> list[dict[str, Any]]:
    """The issue's three targets, each with its measured value and pass/fail (None: unmeasured)."""
    heaviest = max(worker_rss_mb.items(), key=lambda kv: kv[1], default=None)
    over = sorted(n for n, mb in worker_rss_mb.items() if mb >= TARGET_WORKER_RSS_MB)
    rss_value = f"{heaviest[1]:.0f} MB ({heaviest[0]})" if heaviest else None
    if over:
        rss_value = f"{rss_value}; over: {', '.join(over)}"
    return [
        _target(
            "pipeline / bare frames/s",
            f">= {TARGET_RATIO}",
            ratio,
            None if ratio is None else ratio >= TARGET_RATIO,
        ),
        _target(
            "capture-to-alert p99 at half load",
            f"<= {TARGET_ALERT_P99_MS:.0f} ms",
            alert_p99_ms,
            None if alert_p99_ms is None else alert_p99_ms <= TARGET_ALERT_P99_MS,
        ),
        _target(
            "peak RSS of every worker",
            f"< {TARGET_WORKER_RSS_MB:.0f} MB",
            rss_value,
            None if heaviest is None else not over,
        ),
    ]


def half_load_camera_fps(pipeline_fps: float, cameras: int, override: float | None) -> float:
    """Per-camera rate of the latency phase: ``override``, else half the maximum, shared."""
    if override is not None:
        return override
    return max(0.1, 0.5 * pipeline_fps / cameras)


# ================================ frames and the bare loop ===================================


def frame_pool(resolution: tuple[int, int] = (1280, 720), quality: int = 80) -> list[bytes]:
    """Distinct camera-sized JPEGs: every bundled photo twice, six more chelsea cats, four
    synthetic scenes (about a third are cats, so a good share of frames alert)."""
    from visionline.camera.frames import encode_jpeg
    from visionline.camera.simulator import PHOTO_NAMES, PhotoSimulator, SceneSimulator, photos

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
    from services.rules.logic import load_rules
    from visionline.settings import PostprocessSettings, RulesSettings

    rules = [r for r in load_rules(RulesSettings().rules_file) if r.applies_to(camera_id)]
    if not rules:
        raise RuntimeError(f"no rule in the rules file applies to camera {camera_id}")
    rule = min(rules, key=lambda r: r.min_confidence)
    return AlertRule(tuple(rule.labels), rule.min_confidence, PostprocessSettings().top_k)


class BareLoop:
    """Decode, preprocess, ONNX Runtime (batch 1) and the alert threshold, in this process."""

    def __init__(self, repository: Path, model: str, threads: int, rule: AlertRule) -> None:
        from visionline.models.local import LocalModel, load_labels

        self.model = LocalModel(repository, model, None, threads)
        self.labels = load_labels(repository, model)
        self.rule = rule

    def frame(self, data: bytes) -> tuple[float, bool]:
        """(seconds decoding + preprocessing, whether the frame alerts)."""
        import numpy as np

        from services.postprocess.logic import softmax, top_k
        from visionline.imaging import inspect_header, model_input

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


def reader(bootstrap: str, topics: list[str]):
    """A consumer of every partition of ``topics`` from their start, committing nothing.

    Its fetches wait at most 100 ms: a broker that answers a waiting fetch only at its timeout
    (Tansu) would otherwise show completions up to librdkafka's default 500 ms late, and the
    load generator counts frames in flight by them.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "visionline-bench",  # required by librdkafka; never committed
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        }
    )
    metadata = consumer.list_topics(timeout=10).topics
    consumer.assign(
        [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in metadata[t].partitions]
    )
    return consumer


class Collector(threading.Thread):
    """Reads predictions, alerts and dead letters from the start of their topics."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(name="bench-collector", daemon=True)
        from visionline.messages import Topic

        self.topics = {
            str(Topic.PREDICTIONS): "predictions",
            str(Topic.ALERTS): "alerts",
            str(Topic.DEAD_LETTER): "dead_letters",
        }
        self.consumer = reader(bootstrap, list(self.topics))
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
                    if message.error() is None:
                        kind = self.topics[message.topic()]
                        getattr(self, kind).append(json.loads(message.value()))
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
        from visionline.camera.publisher import Pacer, epoch_ms

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

    def __init__(self, stack) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self.stack = stack
        self.samples: list[Sample] = []
        self.workers: set[str] = set()
        self._procs: dict[int, Any] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while True:
            self.samples.append(Sample(time.monotonic(), self.snapshot()))
            if self._halt.wait(SAMPLE_EVERY_S):
                break
        self.samples.append(Sample(time.monotonic(), self.snapshot()))

    def stop(self) -> list[Sample]:
        self._halt.set()
        self.join(10)
        return self.samples

    def snapshot(self) -> Snapshot:
        from visionline.stack.process import session_tree

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
    from visionline.cameras import CameraSpec, upsert_cameras
    from visionline.db import make_engine
    from visionline.settings import UploadSettings

    cameras = [f"{CAMERA_PREFIX}-{i:02d}" for i in range(1, count + 1)]
    specs = [CameraSpec(camera_id=c, name="bench camera", max_fps=10_000) for c in cameras]
    engine = make_engine(database_url)
    try:
        upsert_cameras(engine, specs, UploadSettings().key_pepper)
    finally:
        engine.dispose()
    return cameras


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
        "alert_share": _ratio(len(alerts), len(predictions), 3),
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
        from visionline.stack import StackSettings

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
    from visionline.camera.publisher import FramePublisher
    from visionline.stack import LocalStack
    from visionline.stack.config import free_port_settings

    settings = free_port_settings(options.state_dir.absolute())
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
    ratio = _ratio(saturation["fps"], bare["fps"], 3)
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


def _pcts(p: dict) -> str:
    return "  ".join(f"{k} {'-' if v is None else f'{v:.0f}'}" for k, v in p.items())


def summary_table(f: dict):
    from rich.table import Table

    sat, half = f["saturation"], f["half_load"]
    table = Table("measure", "value", title="visionline bench")
    runs = ", ".join(str(r["fps"]) for r in f["bare"]["runs"])
    table.add_row("bare loop frames/s", f"{f['bare']['fps']} (runs: {runs})")
    table.add_row("pipeline frames/s (saturated)", str(sat["fps"]))
    table.add_row("ratio pipeline / bare", str(f["ratio"]))
    bare_cpu = ", ".join(str(r["cpu_ms_per_frame"]) for r in f["bare"]["runs"])
    table.add_row(
        "CPU ms / frame: bare, pipeline",
        f"{bare_cpu}; {sat['cpu_ms_per_frame'].get('total')}",
    )
    table.add_row("half load frames/s", f"{half['fps']} ({half['camera_fps']} per camera)")
    table.add_row("capture-to-prediction ms", _pcts(half["capture_to_prediction_ms"]))
    table.add_row("capture-to-alert ms", _pcts(half["capture_to_alert_ms"]))
    table.add_row("alerts / predictions", f"{half['alerts']} / {half['predictions']}")
    table.add_row("served by", json.dumps(half["served_by"]))
    for name, phase in (("saturated", sat), ("half load", half)):
        t = phase["triton"] or {}
        table.add_row(
            f"Triton batch ({name})",
            f"client {t.get('client_batch_avg')}  execution {t.get('execution_batch_avg')}  "
            f"queue {t.get('queue_ms_avg')} ms  compute {t.get('compute_ms_avg')} ms",
        )
    table.add_row("dead letters (saturated)", json.dumps(sat["dead_letters"]))
    table.add_row("other load on the machine (cores)", str(sat["usage"]["other_load_cores"]))
    return table


def stage_table(half: dict):
    from rich.table import Table

    table = Table("stage (from the one before)", "p50 ms", "p95 ms", "p99 ms", title="Stages")
    for stage, p in half["stage_ms"].items():
        table.add_row(stage, *("-" if v is None else f"{v:.1f}" for v in p.values()))
    return table


def usage_table(f: dict):
    from rich.table import Table

    sat = f["saturation"]["usage"]["components"]
    half = f["half_load"]["usage"]["components"]
    idle = f["idle"]["usage"]["components"]
    per_frame = f["saturation"]["cpu_ms_per_frame"]
    table = Table(
        "process",
        "cores saturated",
        "CPU ms / frame",
        "cores half load",
        "cores idle",
        "peak RSS MB",
        title="Processes (with their children)",
    )
    for name in sorted(set(sat) | set(half)):
        peak = max(u[name]["peak_rss_mb"] for u in (sat, half) if name in u)
        over = name in f["worker_peak_rss_mb"] and peak >= TARGET_WORKER_RSS_MB
        table.add_row(
            name,
            _cores(sat.get(name)),
            str(per_frame.get(name, "-")),
            _cores(half.get(name)),
            _cores(idle.get(name)),
            f"[red]{peak:.0f}[/]" if over else f"{peak:.0f}",
        )
    return table


def _cores(usage: dict | None) -> str:
    return "-" if not usage or usage["cores"] is None else f"{usage['cores']:.2f}"


def targets_table(targets: list[dict]):
    from rich.table import Table

    table = Table("target", "limit", "measured", "", title="Targets (informational)")
    marks = {True: "[green]pass[/]", False: "[red]miss[/]", None: "[yellow]n/a[/]"}
    for t in targets:
        table.add_row(t["target"], t["limit"], str(t["value"]), marks[t["passed"]])
    return table


def print_report(figures: dict, console) -> None:
    console.print(summary_table(figures))
    console.print(stage_table(figures["half_load"]))
    console.print(usage_table(figures))
    console.print(targets_table(figures["targets"]))
    if not figures["half_load"]["all_served_by_triton"]:
        console.print("[yellow]not every prediction was served by Triton[/]")
    dropped = figures["half_load"]["load"]["dropped_at_camera"]
    if dropped:
        console.print(
            f"[yellow]half load: {dropped} frames dropped at the cameras: the pipeline did not "
            "keep up with that rate, so its latency includes queueing[/]"
        )
    for phase in ("saturation", "half_load"):
        usage = figures[phase]["usage"]
        noise = usage["other_load_cores"] + usage["steal_cores"]
        if noise > NOISE_WARN_CORES:
            console.print(
                f"[yellow]{phase}: other processes (or the hypervisor) took {noise:.2f} cores of "
                f"{figures['machine']['cpus']} during the window: its figures are pessimistic[/]"
            )


# ================================ command ===================================================


def bench_command(
    cameras: Annotated[int, typer.Option(min=1, max=32, help="Simulated 720p cameras.")] = 4,
    seconds: Annotated[float, typer.Option(min=5, help="Measured seconds of each phase.")] = 30,
    warmup: Annotated[
        float, typer.Option(min=0, help="Seconds of load before the saturation window.")
    ] = 10,
    fps: Annotated[
        float | None,
        typer.Option(
            min=0.1, help="Frames/s per camera in the latency phase (default: half the maximum)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the JSON results.")] = Path("bench-results"),
    state_dir: Annotated[Path, typer.Option(help="State folder of the bench's stack.")] = (
        REPO_ROOT / ".state" / "bench"
    ),
    in_flight: Annotated[
        int, typer.Option(min=1, help="Most frames between publish and prediction.")
    ] = 64,
    bare_seconds: Annotated[float, typer.Option(min=1, help="Seconds of each bare loop.")] = 8,
    bare_threads: Annotated[
        int | None,
        typer.Option(min=1, help="ONNX Runtime threads of the bare loop (default: Triton's)."),
    ] = None,
) -> None:
    """Full pipeline vs a bare single-process loop on the same frames: throughput, latency,
    Triton batch sizes, CPU and memory per process. Results in <out>/latest.json."""
    from rich.console import Console

    from visionline.stack import StackError

    console = Console()
    options = BenchOptions(
        cameras, seconds, warmup, fps, out, state_dir, in_flight, bare_seconds, bare_threads
    )
    started = time.monotonic()

    def log(text: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:6.1f} s[/] {text}", highlight=False)

    try:
        figures = run_bench(options, log)
    except StackError as exc:
        console.print("[red]the bench's stack failed[/]")
        console.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(1) from None
    print_report(figures, console)
    console.print(f"written to {write_results(figures, out)} and {out / 'latest.json'}")
    if not figures["saturation"]["predictions"]:
        console.print("[red]no frame made it through the pipeline[/]")
        raise typer.Exit(1)
