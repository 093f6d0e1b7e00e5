"""PostgreSQL writes of the rules service: idempotent, one transaction per batch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.dialects.postgresql import insert

from visionline.db.models import AlertRow, PredictionRow
from visionline.messages import Alert, Prediction


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def prediction_row(p: Prediction) -> dict:
    return {
        "camera_id": p.camera_id,
        "frame_id": p.frame_id,
        "captured_at": _ts(p.captured_at),
        "model_name": p.model.name,
        "model_version": p.model.version,
        "served_by": p.model.served_by,
        "label": p.label,
        "confidence": p.confidence,
        "top_k": [e.model_dump() for e in p.top_k],
        "quality": p.quality.model_dump(),
        "stages": p.stages,
    }


def alert_row(a: Alert) -> dict:
    return {
        "alert_id": a.alert_id,
        "camera_id": a.camera_id,
        "frame_id": a.frame_id,
        "rule": a.rule,
        "label": a.label,
        "confidence": a.confidence,
        "severity": a.severity,
        "captured_at": _ts(a.captured_at),
        "created_at": _ts(a.created_at),
        "model_name": a.model.name,
        "model_version": a.model.version,
    }


def record(engine: Engine, predictions: Sequence[Prediction], alerts: Sequence[Alert]) -> set[str]:
    """Insert predictions and alerts (a repeat is a no-op); return the ids of alerts that are
    not yet on the alerts topic."""
    with engine.begin() as conn:
        if predictions:
            stmt = insert(PredictionRow).values([prediction_row(p) for p in predictions])
            conn.execute(stmt.on_conflict_do_nothing(constraint="uq_predictions_frame"))
        if not alerts:
            return set()
        stmt = insert(AlertRow).values([alert_row(a) for a in alerts])
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["alert_id"]))
        ids = [a.alert_id for a in alerts]
        query = select(AlertRow.alert_id).where(
            AlertRow.alert_id.in_(ids), AlertRow.published.is_(False)
        )
        return set(conn.execute(query).scalars())


def mark_published(engine: Engine, alert_ids: Sequence[str]) -> None:
    if alert_ids:
        with engine.begin() as conn:
            conn.execute(
                update(AlertRow).where(AlertRow.alert_id.in_(alert_ids)).values(published=True)
            )
