"""A real stack for integration tests: containers where a Docker engine answers, else local.

``pipeline_stack(state_dir)`` yields a started ``LocalStack`` (URLs, ``common_env()``, ``pids()``).
With a Docker engine, the servers (Kafka, PostgreSQL, Redis, Triton) run as testcontainers and the
local supervisor runs only the workers against them; without one, the supervisor runs everything.
Set ``VISIONLINE_TEST_STACK=local`` or ``=docker`` to choose instead of detecting.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from visionline.settings import REPO_ROOT
from visionline.stack.api import LocalStack
from visionline.stack.config import free_port_settings

KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
POSTGRES_IMAGE = "postgres:16"
REDIS_IMAGE = "redis:7"
# Production's image. It has the ONNX Runtime backend but not onnxruntime for Python: to serve
# this repository's Python-backend model, point this at an image that adds it.
TRITON_IMAGE = os.environ.get(
    "VISIONLINE_TEST_TRITON_IMAGE", "nvcr.io/nvidia/tritonserver:24.08-py3"
)


def docker_available() -> bool:
    """True when a Docker engine answers (DOCKER_HOST or the default socket)."""
    forced = os.environ.get("VISIONLINE_TEST_STACK", "").strip().lower()
    if forced in ("local", "docker"):
        return forced == "docker"
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no client library, no socket, engine down: all mean "use local"
        return False


@contextmanager
def pipeline_stack(state_dir: Path, **overrides: Any) -> Iterator[LocalStack]:
    """The whole pipeline on free ports of its own; stopped (nothing left) on exit."""
    with ExitStack() as stack:
        if docker_available():
            overrides = {**stack.enter_context(docker_servers()), **overrides}
        settings = free_port_settings(Path(state_dir), **overrides)
        yield stack.enter_context(LocalStack(settings, attached=True))


@contextmanager
def docker_servers(
    model_repository: Path = REPO_ROOT / "triton_models", model_name: str = "efficientnet_lite0"
) -> Iterator[dict[str, str]]:
    """Kafka, PostgreSQL, Redis and Triton containers; yields StackSettings address overrides."""
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.community.redis import RedisContainer

    with ExitStack() as stack:
        kafka = stack.enter_context(KafkaContainer(KAFKA_IMAGE).with_kraft())
        postgres = stack.enter_context(PostgresContainer(POSTGRES_IMAGE, dbname="visionline"))
        redis = stack.enter_context(RedisContainer(REDIS_IMAGE))
        triton = stack.enter_context(_triton_container(model_repository, model_name))
        redis_host, triton_host = redis.get_container_host_ip(), triton.get_container_host_ip()
        yield {
            "kafka_bootstrap": kafka.get_bootstrap_server(),
            "database_url": postgres.get_connection_url(),  # postgresql+psycopg2://
            "redis_url": f"redis://{redis_host}:{redis.get_exposed_port(6379)}/0",
            "triton_http_url": f"http://{triton_host}:{triton.get_exposed_port(8000)}",
            "triton_grpc_url": f"{triton_host}:{triton.get_exposed_port(8001)}",
        }


def _triton_container(model_repository: Path, model_name: str):
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import HttpWaitStrategy

    from visionline.stack.config import StackSettings
    from visionline.stack.triton import served_models

    # Readiness of the whole server: with --strict-readiness, every loaded model is ready.
    ready = HttpWaitStrategy(8000, "/v2/health/ready").for_status_code(200)
    settings = StackSettings(model_repository=model_repository, model_name=model_name)
    loads = " ".join(f"--load-model={m}" for m in served_models(settings))
    command = "tritonserver --model-repository=/models --model-control-mode=explicit"
    return (
        DockerContainer(TRITON_IMAGE)
        .with_volume_mapping(str(model_repository), "/models", "ro")
        .with_exposed_ports(8000, 8001, 8002)
        .with_command(f"{command} --strict-readiness=true {loads}")
        .waiting_for(ready.with_startup_timeout(300))
    )
