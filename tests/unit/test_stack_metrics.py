"""The local stack's Prometheus side: a metrics port per worker replica, the file_sd targets."""

from __future__ import annotations

import json
import socket

from visionline.stack.components import worker_components, write_prometheus_targets
from visionline.stack.config import (
    PIPELINE_SERVICES,
    PORT_FIELDS,
    PROMETHEUS_TARGETS_FILE,
    StackSettings,
    default_workers,
    free_port_settings,
    metrics_ports,
    prometheus_targets,
)
from visionline.stack.state import StatePaths


def test_each_metrics_replica_gets_its_own_port_from_the_base(tmp_path):
    s = StackSettings(state_dir=tmp_path, worker_metrics_port=20000, rules_replicas=2)
    ports = metrics_ports(s, default_workers(s))
    assert list(ports) == [
        "ingest",
        "preprocess",
        "inference",
        "postprocess",
        "rules-1",
        "rules-2",
        "inspect",
        "parts",
        "detect",
        "objects",
        "drift",
        "labels",
        "webhooks",
    ]
    assert list(ports.values()) == list(range(20000, 20013))


def test_no_metrics_for_api_upload_cameras_or_when_off(tmp_path):
    s = StackSettings(state_dir=tmp_path, cameras=1, with_retrain=True)
    assert set(metrics_ports(s, default_workers(s))) == {*PIPELINE_SERVICES, "retrain"}
    off = StackSettings(state_dir=tmp_path, worker_metrics_port=None)
    assert metrics_ports(off, default_workers(off)) == {}


def test_targets_carry_the_service_as_job_and_triton_its_metrics_port(tmp_path):
    s = StackSettings(state_dir=tmp_path, worker_metrics_port=20000, triton_metrics_port=20100)
    groups = prometheus_targets(s, default_workers(s))
    assert groups[0] == {
        "targets": ["127.0.0.1:20000"],
        "labels": {"job": "ingest", "replica": "ingest"},
    }
    assert groups[-1] == {
        "targets": ["127.0.0.1:20100"],
        "labels": {"job": "triton", "replica": "triton"},
    }
    given = StackSettings(
        state_dir=tmp_path, triton_http_url="http://t:8000", triton_grpc_url="t:8001"
    )
    assert "triton" not in {g["labels"]["job"] for g in prometheus_targets(given, [])}


def test_free_port_settings_gives_a_free_block_for_every_replica_and_retrain(tmp_path):
    s = free_port_settings(tmp_path, inference_replicas=3)
    block = range(s.worker_metrics_port, s.worker_metrics_port + 13)  # 10 + 2 inference, retrain
    assert not {getattr(s, field) for field in PORT_FIELDS} & set(block)
    for port in block:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
    assert free_port_settings(tmp_path, worker_metrics_port=None).worker_metrics_port is None


def test_components_get_their_metrics_port_and_the_targets_file_is_written(tmp_path):
    s = StackSettings(state_dir=tmp_path / "state", worker_metrics_port=20000, with_triton=False)
    specs = {c.name: c for c in worker_components(s, default_workers(s), {})}
    assert specs["ingest"].env["VISIONLINE_METRICS_PORT"] == "20000"
    assert specs["webhooks"].env["VISIONLINE_METRICS_PORT"] == "20011"
    assert 20000 in specs["ingest"].ports
    assert "VISIONLINE_METRICS_PORT" not in specs["api"].env
    assert specs["api"].ports == (s.api_port,)
    written = write_prometheus_targets(s, StatePaths(s.state_dir), default_workers(s))
    assert written == s.state_dir / PROMETHEUS_TARGETS_FILE
    written = json.loads(written.read_text())
    assert written == prometheus_targets(s, default_workers(s))
