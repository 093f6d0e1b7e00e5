"""Monitoring: JSON logs with the frame being handled, the metrics, consumer lag, and the
Prometheus/Grafana files that read them."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
from collections import namedtuple
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY
from pydantic import ValidationError

from tests.factories import frame_meta, model_ref, quality, source_ref
from visionline import logs
from visionline.bench.figures import TRITON_COUNTERS
from visionline.messages import (
    FrameMeta,
    PreprocessedFrame,
    TensorSpec,
    Topic,
    pack_envelope,
    to_json,
)
from visionline.observability import (
    BATCH_SIZE,
    CONSUMER_LAG,
    DEAD_LETTERS,
    DEPENDENCY_WAITS,
    LABELLED_PARTS,
    LAG_ERRORS,
    MESSAGES_IN,
    MESSAGES_OUT,
    MODEL_F1,
    MODEL_INFO,
    STAGE_SECONDS,
    LagGauge,
    ModelVersions,
    PartitionOffsets,
    consumer_lags,
    partition_lag,
    read_offsets,
)
from visionline.settings import REPO_ROOT, CommonSettings
from visionline.worker import decode_message

TP = namedtuple("TP", "topic partition")  # the shape of Faust's TP
OUR_METRICS = (
    MESSAGES_IN,
    MESSAGES_OUT,
    DEAD_LETTERS,
    DEPENDENCY_WAITS,
    STAGE_SECONDS,
    BATCH_SIZE,
    CONSUMER_LAG,
    LAG_ERRORS,
    MODEL_INFO,
    LABELLED_PARTS,  # services/labels
    MODEL_F1,
)
# Named on the dashboard, exported by something other than this code base:
DRIFT_METRIC = "visionline_drift_state"  # the drift service, still to be written
PROMETHEUS_OWN = {"up"}  # Prometheus writes it for every target it scrapes


@pytest.fixture(autouse=True)
def _no_frame():
    logs.clear_frame()
    yield
    logs.clear_frame()


def meta(frame_id: str = "f-42") -> FrameMeta:
    source = source_ref(9, Topic.RAW_FRAMES, partition=1)
    return frame_meta("cam-7", frame_id, captured_at=1700000000.5, size=(640, 480), source=source)


def record(message: str = "hello %s", args=("world",), exc_info=None) -> logging.LogRecord:
    return logging.LogRecord(
        "visionline.test", logging.WARNING, __file__, 1, message, args, exc_info
    )


def as_json(line: str) -> dict:
    assert "\n" not in line
    return json.loads(line)


# ================================ logs =======================================================


def test_json_line_without_a_frame_has_no_frame_fields():
    entry = as_json(logs.JsonFormatter("preprocess").format(record()))
    assert entry["message"] == "hello world"
    assert (entry["level"], entry["logger"], entry["service"]) == (
        "WARNING",
        "visionline.test",
        "preprocess",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["time"])
    assert "camera_id" not in entry and "frame_id" not in entry


def test_json_line_inside_a_frame_names_camera_and_frame():
    formatter = logs.JsonFormatter("ingest")
    with logs.frame_context("cam-7", "f-42"):
        entry = as_json(formatter.format(record()))
    assert (entry["camera_id"], entry["frame_id"]) == ("cam-7", "f-42")
    assert "camera_id" not in as_json(formatter.format(record()))  # restored after the block


def test_extra_fields_override_the_context_and_tracebacks_stay_on_one_line():
    formatter = logs.JsonFormatter("rules")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        rec = record("failed", (), exc_info=sys.exc_info())
    rec.camera_id = "cam-x"
    with logs.frame_context("cam-7", "f-42"):
        entry = as_json(formatter.format(rec))
    assert entry["camera_id"] == "cam-x" and entry["frame_id"] == "f-42"
    assert "RuntimeError: boom" in entry["exception"]


def test_service_comes_from_the_worker_when_not_given(monkeypatch):
    monkeypatch.setattr(logs, "_service", None)
    assert as_json(logs.JsonFormatter().format(record()))["service"] is None
    logs.set_service("parts")
    assert as_json(logs.JsonFormatter().format(record()))["service"] == "parts"


def test_frame_ids_of_the_messages_workers_decode():
    frame = meta()
    tensor = PreprocessedFrame(
        frame=frame, quality=quality(), tensor=TensorSpec(shape=(2, 2, 3), dtype="uint8")
    )
    assert logs.frame_ids(frame) == logs.FrameIds("cam-7", "f-42")
    assert logs.frame_ids(tensor) == logs.FrameIds("cam-7", "f-42")

    class Verdict:  # a message with a camera and no single frame
        camera_id = "cam-3"

    assert logs.frame_ids(Verdict()) == logs.FrameIds("cam-3", None)
    assert logs.frame_ids(object()) is None and logs.frame_ids(b"raw") is None


def test_decode_message_binds_the_frame_unless_told_not_to():
    value = pack_envelope(meta(frame_id="f-9"), b"jpeg")
    decode_message(value, FrameMeta, bind=False)
    assert logs.current_frame() is None
    decode_message(value, FrameMeta)
    assert logs.current_frame() == logs.FrameIds("cam-7", "f-9")


def test_each_task_has_its_own_frame():
    seen = {}

    async def agent():
        logs.set_frame("cam-1", "f-1")
        await asyncio.sleep(0.01)
        seen["agent"] = logs.current_frame()

    async def timer():
        await asyncio.sleep(0)
        seen["timer"] = logs.current_frame()

    async def both():
        await asyncio.gather(agent(), timer())

    asyncio.run(both())
    assert seen == {"agent": logs.FrameIds("cam-1", "f-1"), "timer": None}


def test_configure_writes_json_or_text_to_the_stream():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        out = io.StringIO()
        logs.configure("INFO", "json", "inspect", stream=out)
        with logs.frame_context("cam-7", "f-42"):
            logging.getLogger("visionline.inspect").info("kept %d", 3)
        logging.getLogger("x").debug("below the level")
        lines = out.getvalue().splitlines()
        assert len(lines) == 1
        assert as_json(lines[0]) | {"time": None} == {
            "time": None,
            "level": "INFO",
            "logger": "visionline.inspect",
            "message": "kept 3",
            "service": "inspect",
            "camera_id": "cam-7",
            "frame_id": "f-42",
        }
        out = io.StringIO()
        logs.configure("INFO", "text", stream=out)
        logging.getLogger("visionline.inspect").info("kept %d", 3)
        assert out.getvalue().rstrip().endswith("INFO visionline.inspect kept 3")
        assert not out.getvalue().startswith("{")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def test_log_format_setting(monkeypatch):
    monkeypatch.delenv("VISIONLINE_LOG_FORMAT", raising=False)
    assert CommonSettings().log_format == "json"
    monkeypatch.setenv("VISIONLINE_LOG_FORMAT", "text")
    assert CommonSettings().log_format == "text"
    monkeypatch.setenv("VISIONLINE_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError):
        CommonSettings()


# ================================ consumer lag ===============================================


def test_lag_is_highwater_minus_committed():
    assert partition_lag(highwater=120, committed=100) == 20
    assert partition_lag(highwater=100, committed=100) == 0
    # a highwater read before the last commit: never negative
    assert partition_lag(highwater=99, committed=100) == 0


def test_lag_before_the_first_commit_counts_from_the_earliest_offset():
    assert partition_lag(highwater=50, committed=None, earliest=10) == 40
    assert partition_lag(highwater=50, committed=30, earliest=0) == 20  # committed wins
    assert partition_lag(highwater=None, committed=30) is None
    assert partition_lag(highwater=50, committed=None, earliest=None) is None


def test_consumer_lags_keeps_known_partitions_of_our_topics_only():
    offsets = [
        PartitionOffsets("a", 0, 10, 4),
        PartitionOffsets("a", 1, None, 4),
        PartitionOffsets("b", 3, 7, None, 2),
        PartitionOffsets("visionline-x-__assignor-__leader", 0, 5, None, 0),
    ]
    assert consumer_lags(offsets, "visionline-x-") == {("a", 0): 6, ("b", 3): 5}
    assert len(consumer_lags(offsets)) == 3


class FakeConsumer:
    def __init__(self, highwaters, committed, earliest=None, fail=False):
        self.highwaters, self._committed_offset = highwaters, committed
        self.earliest, self.fail = earliest or {}, fail
        self.asked = []

    def assignment(self):
        if self.fail:
            raise RuntimeError("consumer not started")
        return set(self.highwaters)

    def highwater(self, tp):
        return self.highwaters[tp]

    async def earliest_offsets(self, *tps):
        self.asked.append(tps)
        return {tp: self.earliest[tp] for tp in tps}


def lag_sample(service, topic, partition):
    labels = {"service": service, "topic": topic, "partition": str(partition)}
    return REGISTRY.get_sample_value("visionline_consumer_lag", labels)


def test_read_offsets_from_a_faust_consumer():
    a0, a1 = TP("frames", 0), TP("frames", 1)
    consumer = FakeConsumer({a0: 30, a1: 12}, {a0: 25}, earliest={a0: 0, a1: 2})
    offsets = asyncio.run(read_offsets(consumer))
    assert offsets == [
        PartitionOffsets("frames", 0, 30, 25, None),
        PartitionOffsets("frames", 1, 12, None, 2),
    ]
    assert consumer.asked == [(a1,)]  # the broker is asked only about uncommitted partitions
    consumer = FakeConsumer({a0: 30}, {a0: 25})
    asyncio.run(read_offsets(consumer))
    assert consumer.asked == []


def test_lag_gauge_follows_the_assignment_and_survives_a_failing_consumer():
    gauge = LagGauge("lag-test")
    a0, a1 = TP("frames", 0), TP("frames", 1)
    assert asyncio.run(gauge.refresh(FakeConsumer({a0: 30, a1: 12}, {a0: 25, a1: 12})))
    assert (lag_sample("lag-test", "frames", 0), lag_sample("lag-test", "frames", 1)) == (5, 0)

    # rebalanced: partition 1 went to another replica, which reports it from now on
    assert asyncio.run(gauge.refresh(FakeConsumer({a0: 40}, {a0: 31})))
    assert lag_sample("lag-test", "frames", 0) == 9
    assert lag_sample("lag-test", "frames", 1) is None

    errors = REGISTRY.get_sample_value(
        "visionline_consumer_lag_errors_total", {"service": "lag-test"}
    )
    assert not asyncio.run(gauge.refresh(FakeConsumer({}, {}, fail=True)))
    after = REGISTRY.get_sample_value(
        "visionline_consumer_lag_errors_total", {"service": "lag-test"}
    )
    assert after == (errors or 0) + 1
    assert lag_sample("lag-test", "frames", 0) == 9  # the last values stay


# ================================ metrics ====================================================


def test_model_versions_show_only_the_version_that_answered_last():
    versions = ModelVersions("models-test")

    def info(version, served_by, model="efficientnet_lite0"):
        labels = {"service": "models-test", "model": model, "version": version}
        return REGISTRY.get_sample_value("visionline_model_info", labels | {"served_by": served_by})

    versions.record([model_ref("efficientnet_lite0", "1")])
    assert info("1", "triton") == 1
    versions.record([model_ref("efficientnet_lite0", "2")])
    assert (info("1", "triton"), info("2", "triton")) == (None, 1)
    versions.record(
        [
            model_ref("efficientnet_lite0", "2", "local-onnxruntime"),
            model_ref("part_detector", "3"),
        ]
    )
    assert info("2", "triton") is None and info("2", "local-onnxruntime") == 1
    assert info("3", "triton", model="part_detector") == 1


def test_metric_names_and_labels():
    expected = {
        "visionline_messages_in": ("counter", ("service",)),
        "visionline_messages_out": ("counter", ("service", "topic")),
        "visionline_dead_letters": ("counter", ("service", "reason")),
        "visionline_dependency_waits": ("counter", ("service", "dependency")),
        "visionline_stage_seconds": ("histogram", ("service",)),
        "visionline_batch_size": ("histogram", ("service", "topic")),
        "visionline_consumer_lag": ("gauge", ("service", "topic", "partition")),
        "visionline_consumer_lag_errors": ("counter", ("service",)),
        "visionline_model_info": ("gauge", ("service", "model", "version", "served_by")),
        "visionline_labelled_parts": (
            "counter",
            ("camera", "model", "version", "kind", "outcome"),
        ),
        "visionline_model_f1": ("gauge", ("camera", "model", "version", "kind")),
    }
    found = {m._name: (m._type, tuple(m._labelnames)) for m in OUR_METRICS}
    assert found == expected


def test_batch_size_buckets_count_batches():
    BATCH_SIZE.labels("batch-test", "visionline.preprocessed").observe(12)
    labels = {"service": "batch-test", "topic": "visionline.preprocessed"}

    def bucket(le: str) -> float | None:
        return REGISTRY.get_sample_value("visionline_batch_size_bucket", labels | {"le": le})

    assert (bucket("8.0"), bucket("16.0")) == (0, 1)
    assert REGISTRY.get_sample_value("visionline_batch_size_sum", labels) == 12


def test_worker_counts_batches_and_models():
    from visionline.worker import Worker

    worker = Worker("worker-test", CommonSettings())
    logs.set_frame("cam-1", "f-1")
    worker.batch_in(5, Topic.PREDICTIONS)
    assert logs.current_frame() is None  # a new batch: no frame until one is decoded
    labels = {"service": "worker-test"}
    assert REGISTRY.get_sample_value("visionline_messages_in_total", labels) == 5
    batch = labels | {"topic": str(Topic.PREDICTIONS)}
    assert REGISTRY.get_sample_value("visionline_batch_size_count", batch) == 1
    worker.model_in_use(model_ref("m", "4"))
    info = labels | {"model": "m", "version": "4", "served_by": "triton"}
    assert REGISTRY.get_sample_value("visionline_model_info", info) == 1
    # the lag timer is wired, and with no consumer running it counts a failure, never raises
    lag, ledger = worker.app._app_tasks  # the lag timer, the crash ledger's
    refresh = lag.__wrapped__.__wrapped__  # Faust's task and timer wrappers, then ours
    errors = REGISTRY.get_sample_value("visionline_consumer_lag_errors_total", labels) or 0
    assert asyncio.run(refresh()) is None
    assert REGISTRY.get_sample_value("visionline_consumer_lag_errors_total", labels) == errors + 1


# ================================ Prometheus, Grafana, compose ===============================


def compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def prometheus() -> dict:
    return yaml.safe_load((REPO_ROOT / "infra" / "prometheus" / "prometheus.yml").read_text())


def metrics_ports(services: dict) -> dict[str, int]:
    ports = {}
    for name, service in services.items():
        port = (service.get("environment") or {}).get("VISIONLINE_METRICS_PORT", "0")
        if int(port):
            ports[name] = int(port)
    return ports


def test_prometheus_scrapes_every_compose_service_with_a_metrics_port():
    services = compose()["services"]
    ports = metrics_ports(services)
    assert {"ingest", "preprocess", "inference", "postprocess", "rules", "inspect", "parts"} <= set(
        ports
    )
    assert "setup" not in ports and "upload" not in ports
    scraped = {}
    for job in prometheus()["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                assert name in services, f"job {job['job_name']} scrapes unknown service {name}"
                scraped[name] = sd["port"]
    assert {name: scraped.get(name) for name in ports} == ports


def test_prometheus_scrapes_triton_on_its_metrics_port():
    triton = compose()["services"]["triton"]
    port = next(a.split("=")[1] for a in triton["command"] if a.startswith("--metrics-port="))
    jobs = {job["job_name"]: job for job in prometheus()["scrape_configs"]}
    assert jobs["triton"]["metrics_path"] == "/metrics"
    assert jobs["triton"]["static_configs"][0]["targets"] == [f"triton:{port}"]


def test_prometheus_and_grafana_run_pinned_healthy_and_configured():
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        image = services[name]["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image), image
        assert services[name]["healthcheck"]["test"]
    mounts = [v.split(":") for n in ("prometheus", "grafana") for v in services[n]["volumes"]]
    for source, *_ in mounts:
        if source.startswith("./"):
            assert (REPO_ROOT / source).exists(), source
    assert ["./infra/prometheus/prometheus.yml", "/etc/prometheus/prometheus.yml", "ro"] in mounts
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def grafana_dir() -> Path:
    return REPO_ROOT / "infra" / "grafana"


def dashboard() -> dict:
    return json.loads((grafana_dir() / "dashboards" / "visionline.json").read_text())


def all_panels(panels: list) -> list:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(all_panels(panel.get("panels", [])))
    return out


def metric_names(expr: str) -> set[str]:
    names = set(re.findall(r"\b(?:visionline|nv|process)_[a-z0-9_]+", expr))
    if re.search(r"\(\s*up\s*[){]", expr):
        names.add("up")
    return names


def exposed_names() -> set[str]:
    """The sample names this process's registry exports (metrics without samples yet too)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names = set()
    for family in REGISTRY.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def test_metric_name_extraction():
    assert metric_names(
        'sum by (s) (rate(visionline_messages_in_total{service=~"$service"}[5m])) / sum (up)'
    ) == {"visionline_messages_in_total", "up"}


def test_dashboard_queries_name_metrics_that_exist():
    panels = [p for p in all_panels(dashboard()["panels"]) if p["type"] != "row"]
    assert len(panels) >= 10
    exposed = exposed_names()
    named = set()
    for panel in panels:
        exprs = [t["expr"] for t in panel["targets"]]
        names = set().union(*map(metric_names, exprs))
        assert names, f"panel {panel['title']!r} names no metric"
        for name in names:
            known = (
                name in exposed
                or name in TRITON_COUNTERS
                or name in PROMETHEUS_OWN
                or name == DRIFT_METRIC
            )
            assert known, f"panel {panel['title']!r} reads {name}, which nothing exports"
        named |= names
    for variable in dashboard()["templating"]["list"]:
        assert metric_names(variable["definition"]) <= exposed
    # every metric of ours is on the dashboard, and so is the drift state
    ours = {m._name for m in OUR_METRICS}
    assert {n for n in ours if not any(x.startswith(n) for x in named)} == set()
    assert DRIFT_METRIC in named


def test_dashboard_has_the_required_rows_and_a_drift_panel():
    panels = all_panels(dashboard()["panels"])
    rows = {p["title"] for p in panels if p["type"] == "row"}
    assert {"Throughput", "Latency", "Consumer lag", "Errors and dead letters", "Models"} <= rows
    drift = [p for p in panels if any(DRIFT_METRIC in t["expr"] for t in p.get("targets", []))]
    assert len(drift) == 1 and "camera" in drift[0]["targets"][0]["expr"]
    assert "signal" in drift[0]["targets"][0]["expr"]


def test_grafana_provisioning_matches_the_dashboard_and_compose():
    datasources = yaml.safe_load(
        (grafana_dir() / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    assert [d["url"] for d in datasources] == ["http://prometheus:9090"]
    uid = datasources[0]["uid"]
    for panel in all_panels(dashboard()["panels"]):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid, panel["title"]
    provider = yaml.safe_load(
        (grafana_dir() / "provisioning" / "dashboards" / "visionline.yml").read_text()
    )["providers"][0]
    grafana = compose()["services"]["grafana"]
    assert f"./infra/grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]
    assert "./infra/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]


def test_decoded_dead_letters_and_acks_malformed_messages_and_yields_the_rest():
    from types import SimpleNamespace

    from visionline.messages import RetrainRequest
    from visionline.worker import Worker

    worker = Worker("decoded-test", CommonSettings())
    good = RetrainRequest(job_id=7, model="defect_detector", trigger="operator")
    events = [
        SimpleNamespace(message=SimpleNamespace(value=v, topic="t", partition=0, offset=i))
        for i, v in enumerate((b"{", to_json(good)))
    ]
    rejected, acked = [], []

    async def reject(event, error):
        rejected.append((event, error.error_type))

    async def ack(event):
        acked.append(event)

    async def stream():
        for event in events:
            yield event

    async def collect():
        return [(e, m) async for e, m, _ in worker.decoded(stream(), RetrainRequest, ack=ack)]

    worker.reject = reject
    out = asyncio.run(collect())
    assert out == [(events[1], good)]
    assert rejected == [(events[0], "malformed_message")] and acked == [events[0]]
    labels = {"service": "decoded-test"}
    assert REGISTRY.get_sample_value("visionline_messages_in_total", labels) == 2
