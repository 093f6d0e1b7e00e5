"""Pure figures of the benchmark: parsing, windows, latencies, CPU and memory, targets."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from visionline.report import capture_to_alert, capture_to_prediction, percentiles, stage_latencies

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


def safe_ratio(numerator: float, denominator: float, digits: int = 2) -> float | None:
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
        "client_batch_avg": safe_ratio(images, requests),
        "execution_batch_avg": safe_ratio(images, executions),
        "requests_per_execution": safe_ratio(requests, executions),
        "request_ms_avg": safe_ratio(
            delta.get("nv_inference_request_duration_us", 0.0), requests * 1e3
        ),
        "queue_ms_avg": safe_ratio(
            delta.get("nv_inference_queue_duration_us", 0.0), requests * 1e3
        ),
        "compute_ms_avg": safe_ratio(
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
