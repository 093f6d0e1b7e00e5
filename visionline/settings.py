"""Typed settings. Built in each process's ``main()``, never at import.

Common settings read ``VISIONLINE_*``; each service reads its own prefix as well
(``VISIONLINE_INGEST_*``, ...). The local stack sets these for every process it starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
_DEV_SECRETS = {"", "changeme", "dev"}


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid", frozen=True)


# Kafka's security.protocol, as librdkafka and aiokafka name it.
KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]

# The largest Kafka record any hop produces, fetches or a topic accepts: a frame at the ingest
# cap (8 MiB) in its envelope, with room to spare. Every limit on the way derives from this one:
# a frame the cap admits must never be refused by a producer, a consumer or the broker.
KAFKA_MAX_MESSAGE_BYTES = 16 << 20
ENVELOPE_ROOM_BYTES = 1 << 20  # frame metadata around the image bytes, at most


class CommonSettings(_Settings):
    model_config = SettingsConfigDict(env_prefix="VISIONLINE_")

    environment: str = "development"
    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_session_timeout_s: float = Field(6.0, gt=0)
    # How long a fetch may wait on the broker for data. Kafka answers as soon as a record
    # arrives, so this is not latency: it is how often an idle consumer asks again (each ask
    # costs the broker CPU) and how long a seek or rebalance may wait on a parked fetch.
    # Faust hard-codes 1500 ms; Kafka's consumers default to 500.
    kafka_fetch_max_wait_ms: int = Field(500, ge=0, le=1500)
    topic_partitions: int = Field(4, ge=1)
    # How every Kafka client of the process authenticates (visionline.kafka.security_config):
    # SASL_SSL with SCRAM-SHA-512 and the service's own principal in production (docs/
    # operations.md, "Broker security"); the CA file verifies the broker's certificate.
    kafka_security_protocol: KafkaProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_username: str = ""
    kafka_password: SecretStr = SecretStr("")
    kafka_ca_file: Path | None = None  # None: the system's trusted CAs
    redis_url: str = "redis://127.0.0.1:16379/0"
    database_url: str = "postgresql+psycopg2://postgres@127.0.0.1:15432/visionline"
    triton_grpc_url: str = "127.0.0.1:18001"
    model_repository: Path = REPO_ROOT / "triton_models"
    model_name: str = "efficientnet_lite0"
    log_level: str = "INFO"
    # json: one object per line with service, camera_id and frame_id (visionline/logs.py).
    log_format: Literal["json", "text"] = "json"
    metrics_port: int = Field(0, ge=0)  # 0: no Prometheus endpoint
    lag_refresh_s: float = Field(5.0, gt=0)  # how often visionline_consumer_lag is read
    # A message that crashed a worker this many times is dead-lettered (poison_message).
    poison_after_crashes: int = Field(3, ge=1)
    crash_ledger_refresh_s: float = Field(2.0, gt=0)
    # Fault injection for tests and drills, never in production: the worker named here crashes
    # on any message whose bytes hold the marker, as a bug would.
    fault_crash_marker: str = ""
    fault_crash_service: str = ""

    @model_validator(mode="after")
    def _no_faults_in_production(self) -> CommonSettings:
        if self.fault_crash_marker and self.is_production:
            raise ValueError("VISIONLINE_FAULT_CRASH_MARKER is for tests and drills only")
        return self

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> CommonSettings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and not (self.kafka_username and self.kafka_password.get_secret_value()):
            raise ValueError(
                f"VISIONLINE_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "VISIONLINE_KAFKA_USERNAME and VISIONLINE_KAFKA_PASSWORD"
            )
        return self

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def is_development(self) -> bool:
        return self.environment == "development"


class IngestSettings(_Settings):
    model_config = SettingsConfigDict(env_prefix="VISIONLINE_INGEST_")

    # At most KAFKA_MAX_MESSAGE_BYTES - ENVELOPE_ROOM_BYTES: the envelope must fit a record.
    max_bytes: int = Field(8 << 20, gt=0, le=KAFKA_MAX_MESSAGE_BYTES - ENVELOPE_ROOM_BYTES)
    max_pixels: int = Field(40_000_000, gt=0)
    dedup_ttl_s: int = Field(3600, gt=0)
    registry_refresh_s: float = Field(5.0, gt=0)


class PreprocessSettings(_Settings):
    model_config = SettingsConfigDict(env_prefix="VISIONLINE_PREPROCESS_")

    input_size: int = Field(224, ge=16)
    reduced_decode: bool = True  # let libjpeg decode at 1/2, 1/4 or 1/8 scale when it can


class InferenceSettings(_Settings):
    model_config = SettingsConfigDict(env_prefix="VISIONLINE_INFERENCE_")

    max_batch: int = Field(16, ge=1)
    max_wait_ms: float = Field(10.0, ge=0)  # after a batch's first frame (stream_batches)
    model_version: str = ""  # empty: the version Triton serves as latest
    triton_timeout_s: float = Field(10.0, gt=0)
    retry_attempts: int = Field(3, ge=0)
    retry_backoff_s: float = Field(0.2, ge=0)
    # Once Triton failed, how long to serve from the in-process model before trying it again.
    fallback_probe_s: float = Field(10.0, gt=0)
    local_threads: int = Field(1, ge=1)


class PostprocessSettings(_Settings):
    model_config = SettingsConfigDict(env_prefix="VISIONLINE_POSTPROCESS_")

    top_k: int = Field(5, ge=1)
    min_confidence: float = Field(0.1, ge=0, le=1)


class InspectSettings(_Settings):
    """The inspect worker (inspection cameras): part detector, anomaly and defect models."""

    model_config = SettingsConfigDict(env_prefix="VISIONLINE_INSPECT_")

    min_part_score: float = Field(0.3, ge=0, le=1)
    max_parts: int = Field(20, ge=1)  # per frame, best first
    max_crop_batch: int = Field(16, ge=1)  # crops per request to the crop models
    model_version: str = ""  # empty: the version Triton serves as latest (all three models)
    # Both crop models on one backbone pass (visionline/training/crop_models.py), used while it
    # was built from the versions served; empty: always the two models apart.
    crop_model: str = "part_crops"
    # A frame with a part at least this likely defective gets an annotated snapshot.
    snapshot_threshold: float = Field(0.5, ge=0, le=1)
    # The local stack points this into its state folder (<state>/snapshots).
    snapshot_dir: Path = REPO_ROOT / ".state" / "snapshots"
    snapshot_max_age_s: float = Field(7 * 24 * 3600.0, gt=0)
    snapshot_max_bytes: int = Field(2 << 30, gt=0)
    snapshot_prune_s: float = Field(60.0, gt=0)  # how often old snapshots are pruned
    snapshot_jpeg_quality: int = Field(85, ge=1, le=100)
    # Frames worth labelling (uncertain, models disagreeing, looks defective), kept with their
    # predictions for `visionline annotations export --samples`; 0 per minute keeps none.
    sample_dir: Path = REPO_ROOT / ".state" / "samples"
    samples_per_camera_per_minute: int = Field(30, ge=0)
    sample_max_age_s: float = Field(30 * 24 * 3600.0, gt=0)
    sample_max_bytes: int = Field(2 << 30, gt=0)
    triton_timeout_s: float = Field(10.0, gt=0)
    # Retries after the first try, backoff doubled each time (0.2 + 0.4 + ... = 6.2 s at 5);
    # then the worker exits and the frame comes back after the restart.
    retry_attempts: int = Field(5, ge=0)
    retry_backoff_s: float = Field(0.2, ge=0)
    # Load shedding (visionline/inspection/shedding.py): a frame that waited longer than this
    # between ingest and inspection is inspected only when it lies at least gap_per_late_s x
    # its wait (in capture time) after its camera's last inspected frame. 0 turns it off.
    shed_late_after_s: float = Field(0.25, ge=0)
    shed_gap_per_late_s: float = Field(0.4, gt=0)
    shed_max_gap_s: float = Field(0.3, gt=0)  # so that every part keeps frames (0.7 s in view)
    # Frames inspected at once (visionline.worker.Worker.routed): while one waits on Triton,
    # the next is decoded and sent; results keep the frames' order. 1: one after the other.
    # Eight: with three, past the rated load the machine was a seventh idle while frames
    # waited, and Triton's dynamic batcher had few frames or crops to join in one batch
    # (docs/inspection.md#real-time-on-two-cores).
    frames_in_flight: int = Field(8, ge=1, le=16)


class RulesSettings(_Settings):
    model_config = SettingsConfigDict(env_prefix="VISIONLINE_RULES_")

    rules_file: Path = REPO_ROOT / "infra" / "rules.yaml"  # while no version is in rule_sets
    refresh_s: float = Field(2.0, gt=0)  # how often rule_sets is asked for a new version
    max_batch: int = Field(64, ge=1)
    max_wait_ms: float = Field(20.0, ge=0)  # after a batch's first message


class PartsSettings(_Settings):
    """The parts worker (inspection cameras): tracking, one verdict per physical part."""

    model_config = SettingsConfigDict(env_prefix="VISIONLINE_PARTS_")

    rules_file: Path = REPO_ROOT / "infra" / "rules.yaml"  # its ``inspection:`` list
    refresh_s: float = Field(2.0, gt=0)  # how often rule_sets is asked for a new version
    # A camera silent this long has its open tracks decided (and its held offsets released).
    idle_flush_s: float = Field(5.0, gt=0)
    flush_check_s: float = Field(1.0, gt=0)  # how often silent cameras are looked for
    # Each camera's line counts and lately decided parts, kept in Redis after every verdict, so
    # that a restarted worker replaying a part it decided before its crash knows it. The parts
    # are trusted this long after they were saved; the counts for ``memory_ttl_s``.
    recall_decided_s: float = Field(120.0, ge=0)
    memory_ttl_s: float = Field(24 * 3600.0, gt=0)


class DetectSettings(_Settings):
    """The detect worker (detect cameras): each frame through its camera's detector on Triton."""

    model_config = SettingsConfigDict(env_prefix="VISIONLINE_DETECT_")

    min_score: float = Field(0.3, ge=0, le=1)  # boxes below it are not published
    max_objects: int = Field(100, ge=1)  # per frame, best first
    nms_iou: float = Field(0.6, gt=0, le=1)  # per class
    # Frames with objects get an annotated snapshot, which alerts about them point to; the
    # local stack points this into its state folder (<state>/snapshots), as for inspect.
    snapshot_dir: Path = REPO_ROOT / ".state" / "snapshots"
    snapshot_max_age_s: float = Field(7 * 24 * 3600.0, gt=0)
    snapshot_max_bytes: int = Field(2 << 30, gt=0)
    snapshot_prune_s: float = Field(60.0, gt=0)
    snapshot_jpeg_quality: int = Field(85, ge=1, le=100)
    triton_timeout_s: float = Field(10.0, gt=0)
    retry_attempts: int = Field(5, ge=0)
    retry_backoff_s: float = Field(0.2, ge=0)


class ObjectsSettings(_Settings):
    """The objects worker (detect cameras): tracking and the rules document's ``detect:``
    rules, one event per tracked object and rule."""

    model_config = SettingsConfigDict(env_prefix="VISIONLINE_OBJECTS_")

    rules_file: Path = REPO_ROOT / "infra" / "rules.yaml"  # its ``detect:`` list
    refresh_s: float = Field(2.0, gt=0)  # how often rule_sets is asked for a new version
    fps: float = Field(10.0, gt=0)  # the cameras' usual rate: sizes the tracker's lost buffer
    # A camera's tracker state in Redis (saved after every batch) expires after this silence.
    state_ttl_s: float = Field(24 * 3600.0, gt=0)
    # Signs the saved states (pickles): only a worker holding it loads one. Set your own in
    # production (docker-compose.yml asks for OBJECTS_STATE_SECRET).
    state_secret: SecretStr = SecretStr("dev")
    max_batch: int = Field(64, ge=1)
    max_wait_ms: float = Field(20.0, ge=0)  # after a batch's first message


class DriftSettings(_Settings):
    """The drift worker: River detectors per camera and signal, confirmation, checkpoints.

    Which detector watches which signal (and its parameters) is in ``detectors_file``; the
    thresholds of the confirmation policy are here (``visionline.drift.tracker``)."""

    model_config = SettingsConfigDict(env_prefix="VISIONLINE_DRIFT_")

    detectors_file: Path = REPO_ROOT / "infra" / "drift.yaml"
    # Frames a signal collects as its reference before its detector starts (the warm-up).
    reference_frames: int = Field(100, ge=10)
    # Frames after a detector's alarm before the drift is confirmed or dismissed: the minimum
    # number of frames of a drift.
    confirm_frames: int = Field(50, ge=5)
    # Two-sample KS test of the reference against those frames: a drift is confirmed when the
    # statistic reaches min_ks (about: that share of the frames moved) and p <= max_p_value.
    min_ks: float = Field(0.4, gt=0, le=1)
    max_p_value: float = Field(1e-3, gt=0, le=1)
    # After a confirmed drift, no new event for the same camera and signal for this many frames.
    cooldown_frames: int = Field(200, ge=0)
    # Detector state is saved per camera every this many of its frames, every interval for the
    # cameras with unsaved frames, and on shutdown; frames are acked only once saved.
    checkpoint_every: int = Field(100, ge=1)
    checkpoint_interval_s: float = Field(5.0, gt=0)
    # Off the decision path: fetches wait for this many bytes, up to kafka_fetch_max_wait_ms
    # (Worker.fetch_min_bytes), so the worker wakes a few times a second, not per frame.
    fetch_min_bytes: int = Field(64 * 1024, ge=1)


class LabelsSettings(_Settings):
    """The labels worker: how predictions are joined to labels (``visionline.labels.join``)."""

    model_config = SettingsConfigDict(env_prefix="VISIONLINE_LABELS_")

    # A part seen in a frame is predicted defective when its score reaches this; the score is
    # the part's defect_score (anomaly and defect models) or its highest defect class score.
    defect_threshold: float = Field(0.5, ge=0, le=1)
    score_source: Literal["defect_score", "class_scores"] = "defect_score"
    # An observed part and a labelled part match from this IoU on (greedy, best pair first).
    min_iou: float = Field(0.3, gt=0, le=1)
    # A labelled part nothing matched is a miss when at least this much of it is in the frame.
    min_visible_fraction: float = Field(0.5, ge=0, le=1)
    # How often visionline_model_f1 is read back from PostgreSQL.
    f1_refresh_s: float = Field(30.0, gt=0)
    # Observations, verdicts and detections are stored in batches of up to max_batch, waiting
    # at most max_wait_ms to fill one: a transaction per batch, not per frame.
    max_batch: int = Field(64, ge=1)
    max_wait_ms: float = Field(200.0, ge=0)
    # Off the decision path: fetches wait for this many bytes, up to kafka_fetch_max_wait_ms
    # (Worker.fetch_min_bytes), so the worker wakes a few times a second, not per frame.
    fetch_min_bytes: int = Field(64 * 1024, ge=1)


class RetrainSettings(_Settings):
    """The retrain worker (services/retrain): which models it retrains, how big a job's
    training is, and when a candidate is promoted (``visionline.retrain``)."""

    model_config = SettingsConfigDict(env_prefix="VISIONLINE_RETRAIN_")

    # Models a drift event may retrain; an operator can still create a job for any of them.
    enabled_models: tuple[str, ...] = ("defect_detector",)
    # Promote only when the candidate beats the serving version by at least ``margin`` on
    # ``metric`` (a dotted path into the evaluation, higher is better), on the same frames.
    metric: str = "summary.nuisance_mean.detector_auroc"
    margin: float = Field(0.005, ge=0)
    # Training data of a job: seeded generator conditions (clean, each nuisance alone, the drift
    # window's nuisance at several strengths), this many frames each.
    train_conditions: int = Field(24, ge=2)
    train_frames_per_condition: int = Field(24, ge=1)
    drift_conditions: int = Field(6, ge=0)  # extra conditions with the drift's nuisance
    train_epochs: int = Field(6, ge=1)
    # Held-out frames both versions are scored on, per evaluation condition.
    eval_frames_per_condition: int = Field(12, ge=1)
    threads: int = Field(2, ge=1)
    promote_timeout_s: float = Field(120.0, gt=0)
    # Jobs for a drift on an inspection camera fine-tune the defect detector on that camera's own
    # frames from the drift window on (replayed from Kafka), labelled by the labels feedback:
    # they wait up to ``traffic_wait_s`` for ``traffic_min_frames`` labelled frames (0: never
    # use traffic), and hold each camera's last ``traffic_held_out`` of them out for the shadow
    # run.
    traffic_min_frames: int = Field(300, ge=0)
    traffic_max_frames: int = Field(600, ge=1)
    traffic_wait_s: float = Field(900.0, gt=0)
    traffic_held_out: float = Field(0.3, gt=0, lt=1)
    rehearsal_frames_per_condition: int = Field(3, ge=1)  # generator frames per eval condition
    # After a lighting drift, the camera's last labelled frames from before it, relit to the
    # drift's histogram, train beside its new frames (0: none).
    relight_frames: int = Field(300, ge=0)
    fine_tune_epochs: int = Field(4, ge=1)
    # A traffic job is promoted on the shadow run (``traffic_metric``: the held-out frames
    # through the models and each camera's tracker and rules, ``rules_file`` while no rules
    # version is saved), if ``metric`` on the generator's held-out frames fell by no more than
    # ``max_regression`` and the other cameras' shadow F1 by no more than
    # ``others_max_regression`` (about one part of 60).
    traffic_metric: str = "shadow.f1"
    rules_file: Path = REPO_ROOT / "infra" / "rules.yaml"
    max_regression: float = Field(0.01, ge=0)
    others_max_regression: float = Field(0.03, ge=0)
    # Scheduled jobs: model -> every how many hours, in slots aligned to the epoch (one job per
    # slot, ``visionline.retrain.schedule``); empty: none. By env as JSON, e.g.
    # VISIONLINE_RETRAIN_SCHEDULE_HOURS='{"defect_detector": 24}'.
    schedule_hours: dict[str, float] = Field(default_factory=dict)
    schedule_check_s: float = Field(60.0, gt=0)  # how often the worker looks at the schedule
    # How often it checks that part_crops is built from the crop models served (a promotion
    # through the API or the CLI does not rebuild it; the retrain worker does, then).
    part_crops_check_s: float = Field(30.0, gt=0)

    @field_validator("schedule_hours")
    @classmethod
    def _known_models_and_intervals(cls, value: dict[str, float]) -> dict[str, float]:
        from visionline.retrain.policy import MODELS  # settings sit below retrain: on use

        unknown = sorted(set(value) - set(MODELS))
        if unknown:
            raise ValueError(f"unknown model(s) {', '.join(unknown)}; one of {', '.join(MODELS)}")
        wrong = sorted(m for m, hours in value.items() if not 1 / 60 <= hours <= 87_600)
        if wrong:
            raise ValueError(f"interval of {', '.join(wrong)}: from 1/60 h (a minute) to 87600 h")
        return value


class UploadSettings(_Settings):
    model_config = SettingsConfigDict(env_prefix="VISIONLINE_UPLOAD_")

    host: str = "127.0.0.1"
    port: int = Field(18080, gt=0)
    max_bytes: int = Field(8 << 20, gt=0)
    # How long an upload waits for the broker's ack; also librdkafka's message timeout, so
    # both give up together.
    ack_timeout_s: float = Field(10.0, gt=0)
    key_pepper: str = "dev"
    # Wrong upload keys (and unknown cameras, answered alike): from the auth_max_failures-th in
    # auth_window_s from one client address, or the auth_max_failures_per_camera-th for one
    # camera id from all clients together, requests get 429 until the window ends.
    auth_max_failures: int = Field(20, ge=1)
    auth_max_failures_per_camera: int = Field(60, ge=1)
    auth_window_s: int = Field(60, ge=1)

    @field_validator("key_pepper")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class ApiSettings(_Settings):
    """The operator API and dashboard (services/api)."""

    model_config = SettingsConfigDict(env_prefix="VISIONLINE_API_")

    host: str = "127.0.0.1"
    port: int = Field(18090, gt=0)
    # Bodies larger than this are refused (413) before they are read: the API takes JSON only.
    max_body_bytes: int = Field(1 << 20, gt=0)
    max_page: int = Field(500, ge=1)  # most items one list request returns
    # Annotated snapshots the inspect worker stores (InspectSettings.snapshot_dir).
    snapshot_dir: Path = REPO_ROOT / ".state" / "snapshots"
    # Live stream: a comment line this often keeps proxies from closing an idle stream.
    sse_keepalive_s: float = Field(15.0, gt=0)
    # The upload keys the API rotates are hashed as the upload service checks them.
    key_pepper: str = "dev"
    # Wrong or revoked tokens: from the auth_max_failures-th in auth_window_s from one client
    # address on, its requests get 429 until the window ends.
    auth_max_failures: int = Field(20, ge=1)
    auth_window_s: int = Field(60, ge=1)


class WebhookSettings(_Settings):
    """The webhook worker (services/webhooks): alerts POSTed to subscribers, signed, retried."""

    model_config = SettingsConfigDict(env_prefix="VISIONLINE_WEBHOOKS_")

    timeout_s: float = Field(5.0, gt=0)
    max_attempts: int = Field(8, ge=1)
    backoff_s: float = Field(1.0, gt=0)  # doubled after each failed attempt
    max_backoff_s: float = Field(300.0, gt=0)
    poll_s: float = Field(0.5, gt=0)  # how often due deliveries are looked for
    concurrency: int = Field(4, ge=1, le=32)  # deliveries in flight at once, per process
    # Receivers on a private network: loopback, private and link-local addresses are refused
    # as targets (registration in the API, each connection in the worker) unless inside one of
    # these networks, e.g. '["10.20.0.0/16", "192.168.7.12/32"]'. Metadata addresses never.
    # Both the API and the webhooks worker read it: give them the same value.
    allowed_networks: tuple[IPvAnyNetwork, ...] = ()


class DatasetSettings(_Settings):
    """The dataset store (``visionline datasets``): where imported images and manifests go."""

    model_config = SettingsConfigDict(env_prefix="VISIONLINE_DATASETS_")

    # A local folder; the store is one small interface (visionline.datasets.store), so an
    # object store can take its place.
    store_dir: Path = REPO_ROOT / ".state" / "datasets"


def refuse_dev_secrets(common: CommonSettings, **secrets: str) -> None:
    """Placeholder secrets are fine on a laptop and refused in production."""
    if common.is_production:
        weak = [name for name, value in secrets.items() if value in _DEV_SECRETS]
        if weak:
            raise ValueError(f"placeholder secret(s) {', '.join(weak)} refused in production")
