"""PostgreSQL side of the drift service: events (idempotent, with an outbox flag) and state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.orm import Session

from visionline.db import outbox
from visionline.db.models import Camera, DriftEventRow, DriftStateRow
from visionline.db.rows import row_of
from visionline.drift.bank import SavedBank
from visionline.messages import DriftEvent


def event_row(e: DriftEvent) -> dict:
    return row_of(e, DriftEventRow, before=e.before.model_dump(), after=e.after.model_dump())


def record_events(
    engine: Engine, events: Sequence[DriftEvent]
) -> tuple[list[DriftEvent], outbox.Unpublished]:
    """Insert the events (a repeat is a no-op); those not yet on the drift-events topic."""
    if not events:
        return [], outbox.Unpublished()
    unique = {e.event_id: e for e in events}
    rows = [event_row(e) for e in unique.values()]
    with engine.begin() as conn:
        pending = outbox.insert_unpublished(
            conn, DriftEventRow.event_id, DriftEventRow.published, rows
        )
    return [e for i, e in unique.items() if i in pending], pending


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
            {
                "camera_id": b.camera_id,
                "state": b.state,
                "offsets": b.offsets,
                "frames": b.frames,
                "updated_at": now,
            }
            for b in banks
        ]
        stmt = insert(DriftStateRow).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=["camera_id"],
            set_={c: stmt.excluded[c] for c in ("state", "offsets", "frames", "updated_at")},
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)


# --- queries (the operator API) ----------------------------------------------------------------


def list_events(
    engine: Engine,
    camera_id: str | None = None,
    signal: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
) -> list[DriftEventRow]:
    """Events newest first (capture time of the confirming frame), filtered on what is given;
    ``since`` and ``until`` bound that capture time, both included."""
    t = DriftEventRow
    query = select(t).order_by(t.captured_at.desc(), t.event_id).limit(limit)
    if camera_id is not None:
        query = query.where(t.camera_id == camera_id)
    if signal is not None:
        query = query.where(t.signal == signal)
    if since is not None:
        query = query.where(t.captured_at >= since)
    if until is not None:
        query = query.where(t.captured_at <= until)
    with Session(engine) as session:
        return list(session.scalars(query))


def get_event(engine: Engine, event_id: str) -> DriftEventRow | None:
    with Session(engine) as session:
        return session.get(DriftEventRow, event_id)


@dataclass(frozen=True)
class CameraDrift:
    """A camera's drift now: its last event, and the signals confirmed drifting since
    ``recent_since`` (drifting when there is any)."""

    camera_id: str
    last_event_id: str | None
    last_signal: str | None
    last_event_at: datetime | None  # when the last drift was confirmed (wall clock)
    recent_signals: tuple[str, ...]

    @property
    def drifting(self) -> bool:
        return bool(self.recent_signals)


def camera_drift(engine: Engine, recent_since: datetime) -> list[CameraDrift]:
    """Every registered camera and every camera with events, by camera id."""
    t = DriftEventRow
    last = (
        select(t.camera_id, t.event_id, t.signal, t.created_at)
        .ext(distinct_on(t.camera_id))
        .order_by(t.camera_id, t.created_at.desc(), t.event_id.desc())
    )
    recent = (
        select(t.camera_id, t.signal)
        .where(t.created_at >= recent_since)
        .distinct()
        .order_by(t.camera_id, t.signal)
    )
    with engine.connect() as conn:
        latest = {r.camera_id: r for r in conn.execute(last)}
        signals: dict[str, list[str]] = {}
        for camera, signal in conn.execute(recent):
            signals.setdefault(camera, []).append(signal)
        cameras = set(conn.scalars(select(Camera.camera_id))) | set(latest)
    out = []
    for camera in sorted(cameras):
        row = latest.get(camera)
        out.append(
            CameraDrift(
                camera,
                row and row.event_id,
                row and row.signal,
                row and row.created_at,
                tuple(signals.get(camera, ())),
            )
        )
    return out
