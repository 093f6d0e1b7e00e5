"""The local stack on free ports in a temporary state folder: real broker, PostgreSQL, Redis and
Triton, a stand-in worker (the supervision is under test, not the pipeline), crash restart, and
a stop that leaves no process behind, even when the supervisor is killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from confluent_kafka.admin import AdminClient
from sqlalchemy import text

from visionline.camera_registry import load_cameras
from visionline.db import make_engine
from visionline.messages import Topic
from visionline.settings import REPO_ROOT
from visionline.stack import LocalStack, StackAlreadyRunning, WorkerSpec, free_port_settings
from visionline.stack.cleanup import find_leftovers
from visionline.stack.health import http_ok
from visionline.stack.process import session_tree

pytestmark = pytest.mark.integration

MODEL_ONNX = REPO_ROOT / "triton_models" / "efficientnet_lite0" / "1" / "model.onnx"
# Records the env it was given, starts a helper of its own (a descendant to clean up), idles.
STANDIN = """
import json, os, subprocess, sys, time
env = {k: v for k, v in os.environ.items() if k.startswith(("VISIONLINE_", "PYTHON"))}
with open(os.path.join(sys.argv[1], f"env-{os.getpid()}.json"), "w") as out:
    json.dump(env, out)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
while True:
    time.sleep(1)
"""


def standin(state_dir: Path, replicas: int = 2) -> WorkerSpec:
    argv = (sys.executable, "-c", STANDIN, str(state_dir))
    return WorkerSpec(name="standin", argv=argv, replicas=replicas)


@pytest.fixture(scope="module")
def state_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: its parent is 0700 and PostgreSQL runs as another user under root.
    path = Path(tempfile.mkdtemp(prefix="visionline-stack-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def local_stack(state_dir: Path) -> Iterator[LocalStack]:
    settings = free_port_settings(state_dir, with_triton=MODEL_ONNX.exists(), worker_settle_s=0.5)
    stack = LocalStack(settings, workers=[standin(state_dir)], attached=True)
    stack.start(timeout=240)
    yield stack
    stack.stop()
    assert find_leftovers(stack.paths) == []


def test_every_component_is_healthy(local_stack: LocalStack):
    status = local_stack.status()
    assert status is not None and status.ready, status
    names = {c.name for c in status.components}
    assert {"broker", "postgres", "redis", "standin-1", "standin-2"} <= names
    for component in status.components:
        assert component.state == "healthy" and component.pid, component
        assert Path(component.log).exists()


def test_broker_answers_with_every_topic(local_stack: LocalStack):
    admin = AdminClient({"bootstrap.servers": local_stack.kafka_bootstrap})
    topics = admin.list_topics(timeout=10).topics
    for topic in Topic:
        assert len(topics[str(topic)].partitions) == local_stack.settings.topic_partitions


def test_postgres_is_migrated_and_seeded(local_stack: LocalStack):
    engine = make_engine(local_stack.database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            ids = set(conn.execute(text("SELECT camera_id FROM cameras")).scalars())
    finally:
        engine.dispose()
    assert {c.camera_id for c in load_cameras(REPO_ROOT / "infra" / "cameras.yaml")} <= ids


def test_redis_answers_ping(local_stack: LocalStack):
    client = redis.Redis.from_url(local_stack.redis_url)
    try:
        assert client.ping()
    finally:
        client.close()


def test_triton_serves_the_model(local_stack: LocalStack):
    if not MODEL_ONNX.exists():
        pytest.fail(f"{MODEL_ONNX} is missing: run `make models` (Triton was not tested)")
    from tritonclient import grpc as triton

    http_ok(f"{local_stack.triton_http_url}/v2/models/efficientnet_lite0/ready")
    client = triton.InferenceServerClient(local_stack.triton_grpc_url)
    image = triton.InferInput("image", [1, 224, 224, 3], "UINT8")
    image.set_data_from_numpy(np.zeros((1, 224, 224, 3), np.uint8))
    result = client.infer("efficientnet_lite0", [image])
    assert result.as_numpy("logits").shape == (1, 1000)


def test_workers_get_the_common_env(local_stack: LocalStack, state_dir: Path):
    for pid in local_stack.pids("standin"):
        given = json.loads((state_dir / f"env-{pid}.json").read_text())
        assert {k: given.get(k) for k in local_stack.common_env()} == local_stack.common_env()


def test_a_killed_worker_is_restarted_with_its_helpers_gone(local_stack: LocalStack):
    [old] = local_stack.pids("standin-1")
    helpers = [p for p in session_tree([old])[old] if p != old]
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while local_stack.pids("standin-1") in ([], [old]):
        assert time.monotonic() < deadline, "standin-1 was not restarted"
        time.sleep(0.1)
    status = local_stack.wait_ready(timeout=30)
    assert status.component("standin-1").restarts == 1
    assert status.component("standin-2").restarts == 0
    assert helpers and not any(session_tree([old])[old])


def test_a_second_start_in_the_same_folder_is_refused(local_stack: LocalStack):
    with pytest.raises(StackAlreadyRunning):
        LocalStack(local_stack.settings, workers=[]).start(timeout=30)


def test_cli_status_exits_zero_when_healthy(local_stack: LocalStack):
    cli = [sys.executable, "-m", "visionline.stack.cli", "status", "--state-dir"]
    result = subprocess.run([*cli, str(local_stack.paths.root)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ready" in result.stdout


def test_stop_leaves_no_process(local_stack: LocalStack):
    pids = find_leftovers(local_stack.paths)
    assert len(pids) >= 5
    local_stack.stop()
    assert find_leftovers(local_stack.paths) == []
    assert not any(_alive(pid) for pid in pids)
    assert local_stack.status().state == "stopped"
    assert local_stack.stop() == []  # stopping a stopped stack is fine


def test_a_killed_supervisor_takes_everything_with_it():
    state_dir = Path(tempfile.mkdtemp(prefix="visionline-stack-test-"))
    try:
        settings = free_port_settings(state_dir, with_triton=False, worker_settle_s=0.5)
        stack = LocalStack(settings, workers=[standin(state_dir, replicas=1)], attached=True)
        status = stack.start(timeout=120)
        pids = find_leftovers(stack.paths)
        os.kill(status.supervisor_pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in pids):
            assert time.monotonic() < deadline, [p for p in pids if _alive(p)]
            time.sleep(0.1)
        assert stack.status().state == "failed"  # the status says the supervisor is gone
        assert stack.stop() == []  # nothing was left for `down` to kill
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"
