"""PostgreSQL side of the drift service: events (idempotent, with an outbox flag) and state."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert

from visionline.db import outbox
from visionline.db.models import DriftEventRow, DriftStateRow
from visionline.db.outbox import utc
from visionline.drift.bank import SavedBank
from visionline.messages import DriftEvent


def event_row(e: DriftEvent) -> dict:
    return {
        "event_id": e.event_id,
        "camera_id": e.camera_id,
        "signal": e.signal,
        "detector": e.detector,
        "detector_params": e.detector_params,
        "detected_frame_id": e.detected_frame_id,
        "detected_at": utc(e.detected_at),
        "frame_id": e.frame_id,
        "captured_at": utc(e.captured_at),
        "before": e.before.model_dump(),
        "after": e.after.model_dump(),
        "statistic": e.statistic,
        "p_value": e.p_value,
        "created_at": utc(e.created_at),
    }


def record_events(engine: Engine, events: Sequence[DriftEvent]) -> list[DriftEvent]:
    """Insert the events (a repeat is a no-op); those not yet on the drift-events topic."""
    if not events:
        return []
    unique = {e.event_id: e for e in events}
    rows = [event_row(e) for e in unique.values()]
    with engine.begin() as conn:
        pending = outbox.insert_unpublished(
            conn, DriftEventRow.event_id, DriftEventRow.published, rows
        )
    return [e for i, e in unique.items() if i in pending]


def mark_published(engine: Engine, event_ids: Sequence[str]) -> None:
    outbox.mark_published(engine, DriftEventRow.event_id, DriftEventRow.published, event_ids)


class PostgresState:
    """``StateStore`` on the ``drift_state`` table: one row per camera, upserted."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self, camera_id: str) -> bytes | None:
        query = select(DriftStateRow.state).where(DriftStateRow.camera_id == camera_id)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def save(self, banks: list[SavedBank]) -> None:
        if not banks:
            return
        now = datetime.now(UTC)
        rows = [
            {"camera_id": b.camera_id, "state": b.state, "offsets": b.offsets,
             "frames": b.frames, "updated_at": now}
            for b in banks
        ]  # fmt: skip
        stmt = insert(DriftStateRow).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=["camera_id"],
            set_={c: stmt.excluded[c] for c in ("state", "offsets", "frames", "updated_at")},
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)
