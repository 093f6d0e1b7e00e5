"""The local stack's pure logic: ports, env, worker table, start order, backoff, status."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from visionline.settings import REPO_ROOT
from visionline.stack.components import _triton_options
from visionline.stack.config import (
    PIPELINE_SERVICES,
    PORT_FIELDS,
    RestartPolicy,
    StackSettings,
    WorkerSpec,
    common_env,
    default_workers,
    free_port_settings,
    free_ports,
    masked_url,
    replica_names,
    start_stages,
    stop_order,
)
from visionline.stack.process import tail
from visionline.stack.state import ComponentStatus, StackStatus, StatePaths, summarize
from visionline.stack.triton import TritonTree


def test_defaults_are_the_documented_ports(monkeypatch):
    for name in list(os.environ):
        if name.startswith("VISIONLINE_STACK_"):
            monkeypatch.delenv(name)
    s = StackSettings()
    ports = (s.broker_port, s.triton_http_port, s.triton_grpc_port, s.triton_metrics_port)
    assert ports == (19092, 18000, 18001, 18002)
    assert (s.postgres_port, s.redis_port, s.upload_port) == (15432, 16379, 18080)
    assert s.state_dir == REPO_ROOT / ".state"
    assert s.topic_partitions == 4 and s.cameras == 0 and s.with_workers


def test_env_prefix(monkeypatch):
    monkeypatch.setenv("VISIONLINE_STACK_CAMERAS", "3")
    monkeypatch.setenv("VISIONLINE_STACK_INGEST_REPLICAS", "2")
    s = StackSettings()
    assert s.cameras == 3 and s.ingest_replicas == 2


def test_unknown_setting_is_refused():
    with pytest.raises(ValidationError):
        StackSettings(brokr_port=1)


def test_free_ports_are_distinct_and_bindable():
    ports = free_ports(7)
    assert len(set(ports)) == 7
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_free_port_settings_gives_every_server_its_own_port(tmp_path):
    s = free_port_settings(tmp_path, cameras=2)
    ports = [getattr(s, field) for field in PORT_FIELDS]
    assert len(set(ports)) == len(PORT_FIELDS)
    assert 19092 not in ports  # not the `make up` defaults (almost surely)
    assert s.state_dir == tmp_path and s.cameras == 2


def test_free_port_settings_overrides_win(tmp_path):
    assert free_port_settings(tmp_path, redis_port=6390).redis_port == 6390


def test_common_env_points_workers_at_the_stack(tmp_path):
    s = free_port_settings(tmp_path)
    env = common_env(s)
    assert env["VISIONLINE_KAFKA_BOOTSTRAP"] == f"127.0.0.1:{s.broker_port}"
    assert env["VISIONLINE_DATABASE_URL"] == (
        f"postgresql+psycopg2://postgres@127.0.0.1:{s.postgres_port}/visionline"
    )
    assert env["VISIONLINE_REDIS_URL"] == f"redis://127.0.0.1:{s.redis_port}/0"
    assert env["VISIONLINE_TRITON_GRPC_URL"] == f"127.0.0.1:{s.triton_grpc_port}"
    assert env["VISIONLINE_UPLOAD_PORT"] == str(s.upload_port)
    assert env["VISIONLINE_UPLOAD_HOST"] == "127.0.0.1"
    assert env["VISIONLINE_TOPIC_PARTITIONS"] == "4"
    assert env["VISIONLINE_MODEL_REPOSITORY"] == str(REPO_ROOT / "triton_models")
    assert env["PYTHONUNBUFFERED"] == "1"


def test_given_servers_are_used_and_urls_normalised(tmp_path):
    s = StackSettings(
        state_dir=tmp_path,
        kafka_bootstrap="kafka:9092",
        database_url="postgres://u:secret@db:5432/vl",
        redis_url="redis://cache:6379/1",
        triton_http_url="http://triton:8000",
        triton_grpc_url="triton:8001",
    )
    env = common_env(s)
    assert env["VISIONLINE_DATABASE_URL"] == "postgresql+psycopg2://u:secret@db:5432/vl"
    assert env["VISIONLINE_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["VISIONLINE_REDIS_URL"] == "redis://cache:6379/1"
    assert env["VISIONLINE_TRITON_GRPC_URL"] == "triton:8001"


def test_triton_urls_come_in_pairs(tmp_path):
    with pytest.raises(ValidationError):
        StackSettings(state_dir=tmp_path, triton_http_url="http://triton:8000")


def test_masked_url_hides_passwords():
    assert masked_url("postgresql+psycopg2://u:secret@db/vl") == "postgresql+psycopg2://u:***@db/vl"
    assert "secret" not in masked_url("redis://:secret@cache:6379/0")


def test_default_workers_are_the_pipeline(tmp_path):
    s = free_port_settings(tmp_path, rules_replicas=2)
    workers = {w.name: w for w in default_workers(s)}
    assert set(workers) == {*PIPELINE_SERVICES, "upload", "api"}
    assert workers["ingest"].argv == (sys.executable, "-m", "services.ingest")
    assert workers["rules"].replicas == 2
    assert workers["upload"].health_url == f"http://127.0.0.1:{s.upload_port}/healthz"


def test_the_retrain_worker_runs_only_when_asked(tmp_path):
    assert "retrain" not in {w.name for w in default_workers(free_port_settings(tmp_path))}
    s = free_port_settings(tmp_path, with_retrain=True)
    retrain = {w.name: w for w in default_workers(s)}["retrain"]
    assert retrain.argv == (sys.executable, "-m", "services.retrain") and retrain.replicas == 1


def test_cameras_start_last_and_only_when_asked(tmp_path):
    s = free_port_settings(tmp_path, cameras=3, camera_fps=1.5)
    camera = {w.name: w for w in default_workers(s)}["camera"]
    assert camera.argv[1:] == (
        "-m",
        "visionline.camera",
        "simulate",
        "--count",
        "3",
        "--fps",
        "1.5",
    )
    assert camera.stage == 1
    assert default_workers(free_port_settings(tmp_path, with_workers=False, cameras=3)) == []


def test_replica_names():
    assert replica_names(WorkerSpec(name="ingest", argv=("x",))) == ["ingest"]
    assert replica_names(WorkerSpec(name="ingest", argv=("x",), replicas=2)) == [
        "ingest-1",
        "ingest-2",
    ]


def test_start_order_servers_then_triton_then_workers_then_cameras(tmp_path):
    s = free_port_settings(tmp_path, cameras=1)
    stages = start_stages(s, default_workers(s))
    assert sorted(stages[0]) == ["broker", "postgres", "redis"]
    assert stages[1] == ["triton"]
    assert set(stages[2]) == {*PIPELINE_SERVICES, "upload", "api"}
    assert stages[3] == ["camera"]
    assert stop_order(stages) == stages[::-1]


def test_start_order_without_triton_or_workers(tmp_path):
    s = free_port_settings(tmp_path, with_triton=False, with_workers=False)
    assert start_stages(s, default_workers(s)) == [["broker", "redis", "postgres"]]


def test_backoff_doubles_up_to_a_cap():
    policy = RestartPolicy(initial_s=0.5, factor=2, max_s=30)
    assert [policy.delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 16, 30]
    assert policy.delay(0) == 0


def test_backoff_starts_over_after_a_long_run():
    policy = RestartPolicy(reset_after_s=30)
    assert policy.failures_after_crash(failures=4, uptime_s=2) == 5
    assert policy.failures_after_crash(failures=4, uptime_s=31) == 1


def _component(name: str, kind: str, state: str) -> ComponentStatus:
    return ComponentStatus(name=name, group=name, kind=kind, state=state)


def test_summary_of_a_running_stack():
    healthy = [_component("broker", "infra", "healthy"), _component("ingest", "worker", "healthy")]
    assert summarize(healthy) == "ready"
    worker_down = [healthy[0], _component("ingest", "worker", "unhealthy")]
    assert summarize(worker_down) == "degraded"
    server_down = [_component("broker", "infra", "unhealthy"), healthy[1]]
    assert summarize(server_down) == "unhealthy"


def test_status_members_by_name_or_service():
    status = StackStatus(
        run_id="r",
        state="ready",
        supervisor_pid=1,
        started_at=0,
        components=[
            ComponentStatus(name="ingest-1", group="ingest", kind="worker", pid=10),
            ComponentStatus(name="ingest-2", group="ingest", kind="worker", pid=11),
            ComponentStatus(name="rules", group="rules", kind="worker", pid=12),
        ],
    )
    assert [c.pid for c in status.members("ingest")] == [10, 11]
    assert [c.pid for c in status.members("ingest-2")] == [11]
    assert status.members("nope") == []


def test_triton_options_for_a_cpu_only_machine(tmp_path):
    s = free_port_settings(tmp_path)
    options = _triton_options(s, StatePaths(tmp_path))
    assert "--model-control-mode=explicit" in options
    assert f"--load-model={s.model_name}" in options
    assert f"--grpc-port={s.triton_grpc_port}" in options
    assert f"--backend-directory={tmp_path / 'triton' / 'backends'}" in options
    assert "--cuda-memory-pool-byte-size=0:0" in options
    assert "--exit-on-error=true" in options


def test_triton_env_puts_its_venv_first(tmp_path):
    tree = TritonTree(tmp_path / "venv", tmp_path / "venv/lib/python3.11/site-packages")
    env = tree.env({"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/lib"})
    assert env["PATH"].split(":")[0] == str(tmp_path / "venv" / "bin")
    assert env["LD_LIBRARY_PATH"].split(":") == [str(tree.libs), "/opt/lib"]
    assert tree.python_version == "3.11"
    assert tree.stub.parts[-2:] == ("3.11", "triton_python_backend_stub")


def test_tail_reads_the_last_lines(tmp_path: Path):
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    assert tail(log, 3) == "line 997\nline 998\nline 999"
    assert tail(tmp_path / "missing.log") == ""
