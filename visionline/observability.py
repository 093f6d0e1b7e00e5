"""Every worker's Prometheus metrics, and the plain functions that compute what they show.

Each worker serves them on ``VISIONLINE_METRICS_PORT`` (``/metrics``); ``service`` is the
worker's name (``ingest``, ``inference``, ...), and Prometheus adds the replica as ``instance``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from visionline.messages import ModelRef

log = logging.getLogger(__name__)

MESSAGES_IN = Counter("visionline_messages_in_total", "Messages consumed", ["service"])
MESSAGES_OUT = Counter("visionline_messages_out_total", "Messages produced", ["service", "topic"])
DEAD_LETTERS = Counter(
    "visionline_dead_letters_total", "Messages sent to the dead-letter topic", ["service", "reason"]
)
DEPENDENCY_WAITS = Counter(
    "visionline_dependency_waits_total",
    "Retries of a message while a server the worker needs was down",
    ["service", "dependency"],
)
STAGE_SECONDS = Histogram(
    "visionline_stage_seconds",
    "Processing time of one message (or batch) in a stage",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BATCH_SIZE = Histogram(
    "visionline_batch_size",
    "Messages taken from a topic and handled together as one batch",
    ["service", "topic"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
CONSUMER_LAG = Gauge(
    "visionline_consumer_lag",
    "Messages in a partition assigned to this process not yet committed by its consumer group "
    "(highwater offset minus committed offset)",
    ["service", "topic", "partition"],
)
LAG_ERRORS = Counter(
    "visionline_consumer_lag_errors_total",
    "Consumer-lag refreshes that failed (the gauge keeps its last values)",
    ["service"],
)
MODEL_INFO = Gauge(
    "visionline_model_info",
    "1 for the model version that last answered this process, per model",
    ["service", "model", "version", "served_by"],
)


# ================================ consumer lag ===============================================


@dataclass(frozen=True)
class PartitionOffsets:
    topic: str
    partition: int
    highwater: int | None  # the offset the next message written will get
    committed: int | None  # the group's committed offset: the next message it will process
    earliest: int | None = None  # the partition's first offset, read when nothing is committed


def partition_lag(
    highwater: int | None, committed: int | None, earliest: int | None = None
) -> int | None:
    """Messages written to a partition that the group has not committed yet.

    Kafka's committed offset is the next one to process, and the highwater the next one to be
    written, so the lag is their difference. With no commit yet the group starts at the
    partition's earliest offset (``auto.offset.reset=earliest``), so that stands in. None while
    the highwater is not known (no fetch answered yet).
    """
    done = committed if committed is not None else earliest
    if highwater is None or done is None:
        return None
    return max(0, highwater - done)


def consumer_lags(
    offsets: Iterable[PartitionOffsets], internal_prefix: str | None = None
) -> dict[tuple[str, int], int]:
    """Lag per (topic, partition), for the partitions whose lag is known; topics starting with
    ``internal_prefix`` (Faust's own, named after the app) are left out."""
    lags = {}
    for o in offsets:
        if internal_prefix and o.topic.startswith(internal_prefix):
            continue
        lag = partition_lag(o.highwater, o.committed, o.earliest)
        if lag is not None:
            lags[(o.topic, o.partition)] = lag
    return lags


async def read_offsets(consumer) -> list[PartitionOffsets]:
    """The offsets of a Faust consumer's assigned partitions.

    Faust keeps the committed offsets it read from the broker at assignment and every one it
    committed since (a committed 0 reads as None there: the earliest offset then stands in,
    asked of the broker only for such partitions); the highwater is the last the fetcher saw.
    """
    committed_by_tp: Mapping = getattr(consumer, "_committed_offset", {})
    assigned = sorted(consumer.assignment())
    committed = {tp: committed_by_tp.get(tp) for tp in assigned}
    uncommitted = [tp for tp in assigned if committed[tp] is None]
    earliest = await consumer.earliest_offsets(*uncommitted) if uncommitted else {}
    return [
        PartitionOffsets(
            tp.topic, tp.partition, consumer.highwater(tp), committed[tp], earliest.get(tp)
        )
        for tp in assigned
    ]


class LagGauge:
    """Shows one process's lags; partitions no longer assigned to it (or of unknown lag) are
    removed, so after a rebalance only the new owner reports a partition."""

    def __init__(
        self, service: str, gauge: Gauge = CONSUMER_LAG, internal_prefix: str | None = None
    ) -> None:
        self.service = service
        self.gauge = gauge
        self.internal_prefix = internal_prefix  # Faust's own topics: not shown
        self.shown: set[tuple[str, int]] = set()
        LAG_ERRORS.labels(service)  # the series exists at 0: a dashboard shows 0, not no data

    def show(self, lags: Mapping[tuple[str, int], int]) -> None:
        for (topic, partition), lag in lags.items():
            self.gauge.labels(self.service, topic, str(partition)).set(lag)
        for topic, partition in self.shown - lags.keys():
            self.gauge.remove(self.service, topic, str(partition))
        self.shown = set(lags)

    async def refresh(self, consumer, timeout_s: float = 5.0) -> bool:
        """Read the consumer's offsets and show them; never raises (a metric must not stop the
        line): a failure is counted in ``visionline_consumer_lag_errors_total``."""
        try:
            offsets = await asyncio.wait_for(read_offsets(consumer), timeout_s)
            self.show(consumer_lags(offsets, self.internal_prefix))
        except Exception as exc:  # noqa: BLE001 - e.g. consumer not started, rebalancing
            LAG_ERRORS.labels(self.service).inc()
            log.debug("consumer lag not refreshed: %r", exc)
            return False
        return True


# ================================ model versions =============================================


class ModelVersions:
    """``visionline_model_info`` for one service: 1 on the (version, served_by) that answered
    last, per model; the previous one's series is removed when it changes."""

    def __init__(self, service: str, gauge: Gauge = MODEL_INFO) -> None:
        self.service = service
        self.gauge = gauge
        self.current: dict[str, tuple[str, str]] = {}

    def record(self, refs: Iterable[ModelRef]) -> None:
        for ref in refs:
            now = (ref.version, ref.served_by)
            before = self.current.get(ref.name)
            if before == now:
                continue
            if before is not None:
                self.gauge.remove(self.service, ref.name, *before)
            self.gauge.labels(self.service, ref.name, *now).set(1)
            self.current[ref.name] = now
            log.info("model %s: version %s served by %s", ref.name, *now)


# ================================ drift ======================================================

DETECTED_OBJECTS = Counter(
    "visionline_detected_objects_total",
    "Objects a detect camera's detector found (services/detect), per camera and class",
    ["camera", "class_name"],
)
OBJECT_EVENTS = Counter(
    "visionline_object_events_total",
    "Events of tracked objects against detect rules (services/objects), per camera, rule, kind "
    "and, for line rules, direction (empty for the other kinds)",
    ["camera", "rule", "kind", "direction"],
)


INSPECTION_FRAMES_SHED = Counter(
    "visionline_inspection_frames_shed_total",
    "Inspection frames the inspect worker did not inspect because it was behind (load "
    "shedding, visionline/inspection/shedding.py), per camera",
    ["camera"],
)
INSPECTION_WAIT_SECONDS = Gauge(
    "visionline_inspection_wait_seconds",
    "How long the camera's last inspection frame waited between ingest and the inspect worker",
    ["camera"],
)


DRIFT_STATE = Gauge(
    "visionline_drift_state",
    "Drift state of a camera's signal: 0 stable, 1 suspected (a detector raised an alarm that "
    "is being confirmed), 2 drift confirmed (until its cooldown ends)",
    ["camera", "signal"],
)


class DriftStates:
    """``visionline_drift_state`` of the cameras this process watches; a series is written only
    when it changes, and a camera's series are removed when another process takes it over."""

    def __init__(self, gauge: Gauge = DRIFT_STATE) -> None:
        self.gauge = gauge
        self.shown: dict[tuple[str, str], int] = {}

    def show(self, camera: str, states: Mapping[str, int]) -> None:
        for signal, state in states.items():
            if self.shown.get((camera, signal)) != state:
                self.gauge.labels(camera, signal).set(state)
                self.shown[(camera, signal)] = state

    def forget(self, cameras: Iterable[str]) -> None:
        gone = set(cameras)
        for camera, signal in [k for k in self.shown if k[0] in gone]:
            self.gauge.remove(camera, signal)
            del self.shown[(camera, signal)]


# ================================ labels and accuracy ========================================

LABELLED_PARTS = Counter(
    "visionline_labelled_parts",
    "Parts whose prediction was joined to true labels, by outcome (tp, fp, fn, tn): once per "
    "new outcome row, for each model that took part (services/labels)",
    ["camera", "model", "version", "kind", "outcome"],
)
MODEL_F1 = Gauge(
    "visionline_model_f1",
    "F1 of the defective decision against true labels, per camera, model version and kind "
    "(frame_part: a part in one frame; tracked_part: a tracked part's verdict; frame_object: a "
    "detect camera's objects in one frame), from PostgreSQL",
    ["camera", "model", "version", "kind"],
)


class ModelScores:
    """``visionline_model_f1`` as read from the database: series without a defined F1 (nothing
    positive yet) or no longer returned are removed."""

    def __init__(self, gauge: Gauge = MODEL_F1) -> None:
        self.gauge = gauge
        self.shown: set[tuple[str, str, str, str]] = set()

    def show(self, f1: Mapping[tuple[str, str, str, str], float | None]) -> None:
        now = {key: value for key, value in f1.items() if value is not None}
        for key, value in now.items():
            self.gauge.labels(*key).set(value)
        for key in self.shown - now.keys():
            self.gauge.remove(*key)
        self.shown = set(now)
