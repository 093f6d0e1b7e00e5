"""PostgreSQL writes of the rules service: idempotent, one transaction per batch."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, func, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from visionline.db import outbox
from visionline.db.models import AlertRow, PartDecisionRow, PredictionRow
from visionline.db.rows import fields_of, row_of
from visionline.messages import (
    Alert,
    LineCounts,
    ModelRef,
    ObjectAlertDetail,
    PartAlertDetail,
    PartVerdict,
    Prediction,
)


def prediction_row(p: Prediction) -> dict:
    return row_of(
        p,
        PredictionRow,
        model_name=p.model.name,
        model_version=p.model.version,
        served_by=p.model.served_by,
        top_k=[e.model_dump() for e in p.top_k],
        quality=p.quality.model_dump(exclude={"histogram"}),  # only the drift service reads it
    )


def alert_row(a: Alert) -> dict:
    part = a.part.model_dump(mode="json") if a.part else None
    tracked = a.object.model_dump(mode="json") if a.object else None
    model_name, model_version = a.model.name, a.model.version
    return row_of(
        a, AlertRow, model_name=model_name, model_version=model_version, part=part, object=tracked
    )


# A redelivered prediction carries its frame's capture time exactly; another frame sent under
# the same id (a camera that reuses ids, ids counted again by a new broker) does not.
SAME_FRAME_S = 0.001


def record(
    engine: Engine, predictions: Sequence[Prediction], alerts: Sequence[Alert]
) -> tuple[outbox.Unpublished, list[Prediction]]:
    """Insert predictions and alerts (a repeat is a no-op). Returns the ids of alerts that are
    not yet on the alerts topic, and the predictions of frames whose id another frame of the
    camera already holds: neither they nor their alerts are stored, so the caller must
    dead-letter them rather than let them vanish."""
    clashes: list[Prediction] = []
    with engine.begin() as conn:
        if predictions:
            stmt = insert(PredictionRow).values([prediction_row(p) for p in predictions])
            stmt = stmt.on_conflict_do_nothing(constraint="uq_predictions_frame")
            keys = (PredictionRow.camera_id, PredictionRow.frame_id)
            inserted = set(conn.execute(stmt.returning(*keys)).tuples())
            clashes = frame_id_clashes(conn, repeats(predictions, inserted))
        taken = {(p.camera_id, p.frame_id) for p in clashes}
        rows = [alert_row(a) for a in alerts if (a.camera_id, a.frame_id) not in taken]
        return outbox.insert_unpublished(conn, AlertRow.alert_id, AlertRow.published, rows), clashes


def repeats(predictions: Sequence[Prediction], inserted: set[tuple]) -> list[Prediction]:
    """The predictions whose (camera, frame id) was stored before: not inserted now, or
    inserted by an earlier one of the same batch."""
    seen: set[tuple] = set()
    out = []
    for p in predictions:
        key = (p.camera_id, p.frame_id)
        if key not in inserted or key in seen:
            out.append(p)
        seen.add(key)
    return out


def frame_id_clashes(conn, stored_before: Sequence[Prediction]) -> list[Prediction]:
    """Of predictions whose (camera, frame id) is stored already, those of another frame."""
    if not stored_before:
        return []
    keys = {(p.camera_id, p.frame_id) for p in stored_before}
    query = select(PredictionRow.camera_id, PredictionRow.frame_id, PredictionRow.captured_at)
    query = query.where(tuple_(PredictionRow.camera_id, PredictionRow.frame_id).in_(keys))
    stored = {(c, f): at.timestamp() for c, f, at in conn.execute(query)}
    return [
        p
        for p in stored_before
        if abs(stored.get((p.camera_id, p.frame_id), p.captured_at) - p.captured_at) > SAME_FRAME_S
    ]


def record_object_alerts(engine: Engine, alerts: Sequence[Alert]) -> outbox.Unpublished:
    """Insert the alerts of object events (a repeat is a no-op); the ids not yet published."""
    with engine.begin() as conn:
        rows = [alert_row(a) for a in alerts]
        return outbox.insert_unpublished(conn, AlertRow.alert_id, AlertRow.published, rows)


def mark_published(engine: Engine, alert_ids: Sequence[str]) -> None:
    outbox.mark_published(engine, AlertRow.alert_id, AlertRow.published, alert_ids)


# Inspection cameras ---------------------------------------------------------------------------


def part_decision_row(v: PartVerdict) -> dict:
    return row_of(
        v,
        PartDecisionRow,
        box=list(v.box),
        defects=[d.model_dump(mode="json") for d in v.defects],
        models=[m.model_dump() for m in v.models],
        counts=v.counts.model_dump(),
    )


def alert_from_row(row: AlertRow) -> Alert:
    """A stored alert as published, for one whose verdict is not in hand (see record_parts)."""
    part = PartAlertDetail.model_validate(row.part) if row.part else None
    tracked = ObjectAlertDetail.model_validate(row.object) if row.object else None
    models = part.models if part else []
    same = [m for m in models if (m.name, m.version) == (row.model_name, row.model_version)]
    model = (
        same[0]
        if same
        else ModelRef(name=row.model_name, version=row.model_version, served_by="triton")
    )
    return Alert(**fields_of(row, Alert, model=model, part=part, object=tracked))


def record_parts(
    engine: Engine, verdicts: Sequence[PartVerdict], alerts: Sequence[Alert]
) -> tuple[list[Alert], outbox.Unpublished]:
    """Insert the verdicts (a repeat is a no-op) and, in the same transaction, the alerts of
    the verdicts inserted just now: a replayed verdict never raises a second alert, even if
    it disagrees. Returns every alert of these decisions not yet on the alerts topic (also
    one written before a crash that came before its publication)."""
    if not verdicts:
        return [], outbox.Unpublished()
    ids = list(dict.fromkeys(v.decision_id for v in verdicts))
    unique = {v.decision_id: v for v in verdicts}
    with Session(engine) as session, session.begin():
        stmt = insert(PartDecisionRow).values([part_decision_row(v) for v in unique.values()])
        stmt = stmt.on_conflict_do_nothing(index_elements=["decision_id"])
        new = set(session.execute(stmt.returning(PartDecisionRow.decision_id)).scalars())
        fresh = {a.alert_id: a for a in alerts if a.part and a.part.decision_id in new}
        if fresh:
            stmt = insert(AlertRow).values([alert_row(a) for a in fresh.values()])
            session.execute(stmt.on_conflict_do_nothing(index_elements=["alert_id"]))
        query = select(AlertRow).where(
            AlertRow.published.is_(False), AlertRow.part["decision_id"].as_string().in_(ids)
        )
        rows = session.scalars(query).all()
        stored = outbox.unpublished_of([(r.alert_id, r.created_at) for r in rows], set(fresh))
        return [fresh.get(row.alert_id) or alert_from_row(row) for row in rows], stored


def line_counts(engine: Engine, camera_id: str | None = None) -> dict[str, LineCounts]:
    """Parts that crossed each camera's exit line, from every decision stored (the same numbers
    as the ``part_line_counts`` view): crossed, passed (not rejected), rejected, insufficient."""
    crossed = PartDecisionRow.crossed_line

    def count(condition) -> object:
        return func.count().filter(condition)

    stmt = select(
        PartDecisionRow.camera_id,
        count(crossed),
        count(crossed & ~PartDecisionRow.defective),
        count(crossed & PartDecisionRow.defective),
        count(crossed & (PartDecisionRow.status == "insufficient")),
    ).group_by(PartDecisionRow.camera_id)
    if camera_id is not None:
        stmt = stmt.where(PartDecisionRow.camera_id == camera_id)
    with engine.connect() as conn:
        return {
            row[0]: LineCounts(crossed=row[1], passed=row[2], rejected=row[3], insufficient=row[4])
            for row in conn.execute(stmt)
        }
