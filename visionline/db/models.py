"""PostgreSQL tables (SQLAlchemy 2). The schema itself is created by the Alembic migrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

Json = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    pass


class Camera(Base):
    __tablename__ = "cameras"

    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    max_fps: Mapped[float] = mapped_column(Float, default=30.0)
    upload_key_hash: Mapped[str | None] = mapped_column(String(128))
    # Which path its frames take after ingest: "classify" (the classifier) or "inspect".
    pipeline: Mapped[str] = mapped_column(String(16), default="classify", server_default="classify")
    # Its model (a folder of the Triton repository): a classify camera's classifier (NULL: the
    # default one), a detect camera's detector.
    model: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PredictionRow(Base):
    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("camera_id", "frame_id", name="uq_predictions_frame"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    camera_id: Mapped[str] = mapped_column(String(64), index=True)
    frame_id: Mapped[str] = mapped_column(String(128))
    captured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    model_name: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(20))
    served_by: Mapped[str] = mapped_column(String(40))
    label: Mapped[str | None] = mapped_column(String(200))
    confidence: Mapped[float] = mapped_column(Float)
    top_k: Mapped[list] = mapped_column(Json)
    quality: Mapped[dict] = mapped_column(Json)
    stages: Mapped[dict] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AlertRow(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_unpublished", "alert_id", postgresql_where=text("NOT published")),
    )

    alert_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(64), index=True)
    frame_id: Mapped[str] = mapped_column(String(128))
    rule: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(200))
    confidence: Mapped[float] = mapped_column(Float)
    severity: Mapped[str] = mapped_column(String(20), index=True)
    captured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    model_name: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(20))
    # Outbox flag: set once the alert is on the alerts topic, so a redelivered frame
    # publishes only what was not yet published.
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    # An alert about a tracked part (inspection cameras): ``PartAlertDetail`` as JSON.
    part: Mapped[dict | None] = mapped_column(Json, nullable=True)
    # An alert about a tracked object (detect cameras): ``ObjectAlertDetail`` as JSON.
    object: Mapped[dict | None] = mapped_column(Json, nullable=True)
    # What operators did with it (the API): open -> acknowledged -> resolved.
    state: Mapped[str] = mapped_column(
        String(16), default="open", server_default="open", index=True
    )
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[str | None] = mapped_column(String(100))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolution: Mapped[str | None] = mapped_column(String(2000))


class PartDecisionRow(Base):
    """One per physical part an inspection camera decided (``PartVerdict``)."""

    __tablename__ = "part_decisions"
    __table_args__ = (Index("ix_part_decisions_camera_decided", "camera_id", "decided_at"),)

    decision_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(64))
    track_id: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), index=True)
    defective: Mapped[bool] = mapped_column(Boolean)
    defect_class: Mapped[str | None] = mapped_column(String(100))
    score: Mapped[float] = mapped_column(Float)
    frames_seen: Mapped[int] = mapped_column(Integer)
    defect_frames: Mapped[int] = mapped_column(Integer)
    first_frame_id: Mapped[str] = mapped_column(String(128))
    last_frame_id: Mapped[str] = mapped_column(String(128))
    best_frame_id: Mapped[str] = mapped_column(String(128))
    crossed_line: Mapped[bool] = mapped_column(Boolean)
    box: Mapped[list] = mapped_column(Json)
    defects: Mapped[list] = mapped_column(Json)
    snapshot: Mapped[str | None] = mapped_column(String(500))
    models: Mapped[list] = mapped_column(Json)
    counts: Mapped[dict] = mapped_column(Json)  # the worker's line counts after this part
    captured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # of the best frame
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DriftEventRow(Base):
    """One per confirmed drift (``DriftEvent``); ``event_id`` = camera:signal:confirming frame."""

    __tablename__ = "drift_events"
    __table_args__ = (
        Index("ix_drift_events_camera_captured", "camera_id", "captured_at"),
        Index("ix_drift_events_unpublished", "event_id", postgresql_where=text("NOT published")),
    )

    event_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(64))
    signal: Mapped[str] = mapped_column(String(64))
    detector: Mapped[str] = mapped_column(String(32))
    detector_params: Mapped[dict] = mapped_column(Json)
    detected_frame_id: Mapped[str] = mapped_column(String(128))
    detected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    frame_id: Mapped[str] = mapped_column(String(128))
    captured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    before: Mapped[dict] = mapped_column(Json)  # WindowStats of the reference window
    after: Mapped[dict] = mapped_column(Json)  # WindowStats from the alarm to the confirmation
    statistic: Mapped[float] = mapped_column(Float)
    p_value: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Outbox flag, as for alerts: set once the event is on the drift-events topic.
    published: Mapped[bool] = mapped_column(Boolean, default=False)


class DriftStateRow(Base):
    """A camera's pickled detector bank and the offset of the last message it reflects, per
    topic partition (``visionline.drift.bank``)."""

    __tablename__ = "drift_state"

    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    offsets: Mapped[dict] = mapped_column(Json)  # "topic:partition" -> offset
    frames: Mapped[int] = mapped_column(BigInteger)  # frames the bank reflects
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RetrainJobRow(Base):
    """A retraining job (``visionline.model_registry.job_states``): its state, why it ran, what
    it made."""

    __tablename__ = "retrain_jobs"
    __table_args__ = (Index("ix_retrain_jobs_model_created", "model", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(100))
    trigger: Mapped[str] = mapped_column(String(16))  # drift | schedule | operator
    trigger_ref: Mapped[str | None] = mapped_column(String(300))  # e.g. a drift event id
    state: Mapped[str] = mapped_column(String(32), index=True)
    reason: Mapped[str] = mapped_column(String(2000), default="")  # of the last transition
    history: Mapped[list] = mapped_column(Json)  # [{from, to, at, reason}, ...]
    parent_version: Mapped[int | None] = mapped_column(Integer)  # serving when it started
    candidate_version: Mapped[int | None] = mapped_column(Integer)  # the version it trained
    metrics: Mapped[dict] = mapped_column(Json)
    dataset: Mapped[dict] = mapped_column(Json)  # description: source, counts, split, ...
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ModelVersionRow(Base):
    """Lineage of a served model version: what it replaced, which job made it, its metrics."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model", "version", name="uq_model_versions_version"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # serving | retired | rolled_back
    parent_version: Mapped[int | None] = mapped_column(Integer)  # served before it
    job_id: Mapped[int | None] = mapped_column(ForeignKey("retrain_jobs.id", ondelete="SET NULL"))
    metrics: Mapped[dict] = mapped_column(Json)
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    promoted_by: Mapped[str] = mapped_column(String(100), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # last status change


class FrameLabelRow(Base):
    """The true labels of one frame from one source (``LabelFeedback``); a newer labelling
    (``labelled_at``) replaces an older one, the same ``label_id`` again changes nothing."""

    __tablename__ = "frame_labels"
    __table_args__ = (
        Index("ix_frame_labels_camera_captured", "camera_id", "captured_at"),
        Index("ix_frame_labels_frame", "frame_id"),
    )

    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    frame_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    label_id: Mapped[str] = mapped_column(String(300))
    captured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    labelled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    message: Mapped[dict] = mapped_column(Json)  # the LabelFeedback
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LabelPredictionRow(Base):
    """A prediction waiting for (or joined to) its frame's labels: a frame's observed parts, or
    a tracked part's verdict on its best frame (``visionline.labels.join.Prediction``)."""

    __tablename__ = "label_predictions"
    __table_args__ = (Index("ix_label_predictions_frame", "camera_id", "frame_id"),)

    prediction_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # frame_part | tracked_part | frame_object
    camera_id: Mapped[str] = mapped_column(String(64))
    frame_id: Mapped[str] = mapped_column(String(128))
    captured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    parts: Mapped[list] = mapped_column(Json)  # [{box, score, defective}]
    models: Mapped[list] = mapped_column(Json)  # [[name, version], ...]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LabelOutcomeRow(Base):
    """One part's outcome (tp, fp, fn, tn) for one model that took part in the prediction.
    ``outcome_id`` hashes prediction, label, slot and model: a replay never counts twice."""

    __tablename__ = "label_outcomes"
    __table_args__ = (
        Index("ix_label_outcomes_frame", "camera_id", "frame_id"),
        Index("ix_label_outcomes_group", "camera_id", "model", "version", "kind"),
        Index("ix_label_outcomes_captured", "captured_at"),
    )

    outcome_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    camera_id: Mapped[str] = mapped_column(String(64))
    frame_id: Mapped[str] = mapped_column(String(128))
    prediction_id: Mapped[str] = mapped_column(String(300))
    label_id: Mapped[str] = mapped_column(String(300))
    model: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(20))
    slot: Mapped[str] = mapped_column(String(200))
    match: Mapped[str] = mapped_column(String(16))  # matched | false_detection | miss
    outcome: Mapped[str] = mapped_column(String(2))  # tp | fp | fn | tn
    predicted_defective: Mapped[bool] = mapped_column(Boolean)
    true_defective: Mapped[bool] = mapped_column(Boolean)
    score: Mapped[float | None] = mapped_column(Float)
    part_id: Mapped[str | None] = mapped_column(String(128))
    iou: Mapped[float | None] = mapped_column(Float)
    captured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiTokenRow(Base):
    """An operator API token: only its SHA-256 is stored; ``token_id`` is its public prefix."""

    __tablename__ = "api_tokens"

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))  # viewer | operator | admin
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(100), default="")
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditRow(Base):
    """Who changed what through the API (or the CLI), and when."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_target", "target", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))  # e.g. alert.acknowledge, rules.update
    target: Mapped[str] = mapped_column(String(300))  # e.g. alert:<id>, camera:<id>, rules
    detail: Mapped[dict] = mapped_column(Json)


class RuleSetRow(Base):
    """One version of the rules document (``RulesFile`` as JSON); the highest is in effect.
    With no row, the workers read ``infra/rules.yaml``."""

    __tablename__ = "rule_sets"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    document: Mapped[dict] = mapped_column(Json)
    changed_by: Mapped[str] = mapped_column(String(100))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    comment: Mapped[str] = mapped_column(String(2000), default="")


class WebhookSubscriptionRow(Base):
    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))  # signs each delivery (HMAC-SHA256)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    filter: Mapped[dict] = mapped_column(Json)  # e.g. {"camera_ids": [...], "severities": [...]}
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(100))


class WebhookDeliveryRow(Base):
    """One alert to one subscriber: pending until delivered, or failed after the last retry."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("state = 'pending'"),
        ),
    )

    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), primary_key=True
    )
    alert_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    payload: Mapped[dict] = mapped_column(Json)  # the Alert message as sent
    state: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(2000))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DatasetVersionRow(Base):
    """One immutable dataset version: ``version`` is the sha256 of its images and labels
    (``visionline.datasets.model.Dataset.version_id``); its files are in the dataset store."""

    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("name", "version", name="uq_dataset_versions_version"),
        Index("ix_dataset_versions_name", "name", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(16))  # the format it was imported from
    task: Mapped[str] = mapped_column(String(16))  # classification | detection
    classes: Mapped[list] = mapped_column(Json)
    image_count: Mapped[int] = mapped_column(Integer)
    counts: Mapped[dict] = mapped_column(Json)  # {"per_class": {...}, "per_split": {...}}
    sizes: Mapped[dict] = mapped_column(Json)  # {"min": [w, h], "median": [...], "max": [...]}
    skipped: Mapped[list] = mapped_column(Json)  # [{"file": ..., "reason": ...}]
    source: Mapped[str] = mapped_column(String(2000), default="")
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
