"""PostgreSQL side of the labels service: labels, predictions waiting for them, outcomes.

Observations usually come before their frame's labels, but either order works: both are
stored, and whichever arrives second makes the outcomes. Each write runs in one transaction
under an advisory lock on its frame (a batch of predictions: on each of its frames, taken in
one order), so two replicas never both miss the join. Outcome rows are
keyed by a hash of (prediction, label, slot, model): a redelivered message inserts nothing new.
A newer label of a frame replaces the older one's outcomes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, delete, func, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert

from visionline.db.models import FrameLabelRow, LabelOutcomeRow, LabelPredictionRow
from visionline.db.outbox import utc
from visionline.db.rows import row_of
from visionline.labels.join import JoinPolicy, PredictedPart, Prediction, outcomes
from visionline.messages import LabelFeedback, validate_fields

UNKNOWN_MODEL = ("unknown", "")  # a prediction that names no model still counts


@dataclass(frozen=True)
class NewOutcome:
    """An outcome row this write inserted (for ``visionline_labelled_parts_total``)."""

    camera_id: str
    model: str
    version: str
    kind: str
    outcome: str


def _when(value: float | datetime) -> datetime:
    return value if isinstance(value, datetime) else utc(value)


def _lock(conn: Connection, camera_id: str, frame_id: str) -> None:
    _lock_frames(conn, [(camera_id, frame_id)])


# The locks of several frames in one round trip, in the order of their lock keys (the
# subquery's ORDER BY: a volatile function above keeps it from being flattened), so that two
# transactions never wait on each other's frames in opposite orders.
_LOCK_FRAMES = text(
    "SELECT pg_advisory_xact_lock(h) FROM "
    "(SELECT DISTINCT hashtext(k) AS h FROM unnest(CAST(:keys AS text[])) AS k ORDER BY 1) s"
)


def _lock_frames(conn: Connection, frames: Iterable[tuple[str, str]]) -> None:
    conn.execute(_LOCK_FRAMES, {"keys": [f"{camera}/{frame}" for camera, frame in frames]})


# ================================ writes =====================================================


def record_label(engine: Engine, label: LabelFeedback, policy: JoinPolicy) -> list[NewOutcome]:
    """Store a frame's labels (idempotent on ``label_id``; only a newer labelling replaces the
    stored one) and join them to the frame's stored predictions."""
    with engine.begin() as conn:
        _lock(conn, label.camera_id, label.frame_id)
        _upsert_label(conn, label)
        current = _current_label(conn, label.camera_id, label.frame_id)
        assert current is not None  # the label just upserted, or a newer one
        stale = delete(LabelOutcomeRow).where(
            LabelOutcomeRow.camera_id == label.camera_id,
            LabelOutcomeRow.frame_id == label.frame_id,
            LabelOutcomeRow.label_id != current.label_id,
        )
        conn.execute(stale)
        pending = _predictions(conn, label.camera_id, label.frame_id)
        return _insert_outcomes(conn, [(p, current) for p in pending], policy)


def record_prediction(
    engine: Engine, prediction: Prediction, policy: JoinPolicy
) -> list[NewOutcome]:
    """Store a prediction (the first copy wins) and join it to its frame's labels if known."""
    return record_predictions(engine, [prediction], policy)


def record_predictions(
    engine: Engine, predictions: Sequence[Prediction], policy: JoinPolicy
) -> list[NewOutcome]:
    """``record_prediction`` of each, in one transaction: one round trip each for the locks,
    the rows and the look for labels, whatever the batch's size (the labels worker takes its
    frames' observations and verdicts in batches)."""
    first = {p.prediction_id: p for p in reversed(predictions)}  # a repeat in the batch: once
    if not first:
        return []
    frames = sorted({(p.camera_id, p.frame_id) for p in first.values()})
    with engine.begin() as conn:
        _lock_frames(conn, frames)
        rows = [_prediction_row(p) for p in first.values()]
        conn.execute(insert(LabelPredictionRow).values(rows).on_conflict_do_nothing())
        labelled = _labelled(conn, frames)
        if not labelled:
            return []
        ids = [i for i, p in first.items() if (p.camera_id, p.frame_id) in labelled]
        stored = conn.execute(
            select(LabelPredictionRow).where(LabelPredictionRow.prediction_id.in_(ids))
        )
        current = {frame: _current_label(conn, *frame) for frame in labelled}  # once a frame
        joined = [(_prediction(r), current[(r.camera_id, r.frame_id)]) for r in stored.all()]
        return _insert_outcomes(
            conn, [(p, label) for p, label in joined if label is not None], policy
        )


def _prediction_row(prediction: Prediction) -> dict[str, Any]:
    return {
        "prediction_id": prediction.prediction_id,
        "kind": prediction.kind,
        "camera_id": prediction.camera_id,
        "frame_id": prediction.frame_id,
        "captured_at": utc(prediction.captured_at),
        "parts": [asdict(p) for p in prediction.parts],
        "models": [list(m) for m in prediction.models],
        "created_at": datetime.now(UTC),
    }


def _labelled(conn: Connection, frames: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of ``frames`` (camera, frame id) have a label stored."""
    key = tuple_(FrameLabelRow.camera_id, FrameLabelRow.frame_id)
    query = select(FrameLabelRow.camera_id, FrameLabelRow.frame_id).where(key.in_(frames))
    return {(camera, frame) for camera, frame in conn.execute(query)}


def _upsert_label(conn: Connection, label: LabelFeedback) -> None:
    message, now = label.model_dump(mode="json"), datetime.now(UTC)
    row = row_of(label, FrameLabelRow, message=message, updated_at=now)
    stmt = insert(FrameLabelRow).values(row)
    newer = tuple_(stmt.excluded.labelled_at, stmt.excluded.label_id) > tuple_(
        FrameLabelRow.labelled_at, FrameLabelRow.label_id
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["camera_id", "frame_id", "source"],
        set_={
            c: stmt.excluded[c]
            for c in ("label_id", "captured_at", "labelled_at", "message", "updated_at")
        },
        where=newer,
    )
    conn.execute(stmt)


def _current_label(conn: Connection, camera_id: str, frame_id: str) -> LabelFeedback | None:
    """The frame's latest labelling, whatever its source."""
    query = (
        select(FrameLabelRow.message)
        .where(FrameLabelRow.camera_id == camera_id, FrameLabelRow.frame_id == frame_id)
        .order_by(FrameLabelRow.labelled_at.desc(), FrameLabelRow.label_id.desc())
        .limit(1)
    )
    message = conn.execute(query).scalar_one_or_none()
    return None if message is None else validate_fields(message, LabelFeedback)


def _prediction(row) -> Prediction:
    """A ``label_predictions`` row (of a Core select: named columns) as a ``Prediction``."""
    parts = tuple(
        PredictedPart(tuple(p["box"]), p["score"], p.get("defective"), p.get("class_name"))
        for p in row.parts
    )
    return Prediction(
        row.prediction_id,
        row.kind,
        row.camera_id,
        row.frame_id,
        row.captured_at.timestamp(),
        parts,
        tuple((m[0], m[1]) for m in row.models),
    )


def _predictions(conn: Connection, camera_id: str, frame_id: str) -> list[Prediction]:
    query = select(LabelPredictionRow).where(
        LabelPredictionRow.camera_id == camera_id, LabelPredictionRow.frame_id == frame_id
    )
    return [_prediction(r) for r in conn.execute(query)]


def outcome_id(prediction_id: str, label_id: str, slot: str, model: str, version: str) -> str:
    key = "\x1f".join((prediction_id, label_id, slot, model, version))
    return hashlib.sha256(key.encode()).hexdigest()[:64]


def outcome_rows(prediction: Prediction, label: LabelFeedback, policy: JoinPolicy) -> list[dict]:
    """The rows of a prediction joined to its labels: each part's outcome once per model."""
    now = datetime.now(UTC)
    rows = []
    for o in outcomes(prediction, label, policy):
        for model, version in prediction.models or (UNKNOWN_MODEL,):
            rows.append(
                {
                    "outcome_id": outcome_id(
                        prediction.prediction_id, label.label_id, o.slot, model, version
                    ),
                    "kind": prediction.kind,
                    "camera_id": prediction.camera_id,
                    "frame_id": prediction.frame_id,
                    "prediction_id": prediction.prediction_id,
                    "label_id": label.label_id,
                    "model": model,
                    "version": version,
                    "slot": o.slot,
                    "match": o.match,
                    "outcome": o.outcome,
                    "predicted_defective": o.predicted_defective,
                    "true_defective": o.true_defective,
                    "score": o.score,
                    "part_id": o.part_id,
                    "iou": o.iou,
                    "captured_at": utc(prediction.captured_at),
                    "created_at": now,
                }
            )
    return rows


def _insert_outcomes(
    conn: Connection, joined: Iterable[tuple[Prediction, LabelFeedback]], policy: JoinPolicy
) -> list[NewOutcome]:
    rows = [r for p, label in joined for r in outcome_rows(p, label, policy)]
    if not rows:
        return []
    t = LabelOutcomeRow
    stmt = (
        insert(t)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["outcome_id"])
        .returning(t.camera_id, t.model, t.version, t.kind, t.outcome)
    )
    return [NewOutcome(*r) for r in conn.execute(stmt)]


# ================================ queries ====================================================


@dataclass(frozen=True)
class Accuracy:
    """Counts of one (camera, model, version, kind); the rates are None while undefined."""

    camera_id: str
    model: str
    version: str
    kind: str
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else None

    def as_dict(self) -> dict:
        return {**asdict(self), "precision": self.precision, "recall": self.recall, "f1": self.f1}


def accuracy(
    engine: Engine,
    camera_id: str | None = None,
    model: str | None = None,
    since: float | datetime | None = None,
) -> list[Accuracy]:
    """tp/fp/fn/tn and the rates per (camera, model, version, kind), of the outcomes of frames
    captured at or after ``since``."""
    t = LabelOutcomeRow
    group = (t.camera_id, t.model, t.version, t.kind)
    counts = [func.count().filter(t.outcome == o) for o in ("tp", "fp", "fn", "tn")]
    # Typed as rows of any width: the stubs read ``*group, *counts`` as ten columns or more.
    query: Select[*tuple[Any, ...]] = select(*group, *counts).group_by(*group).order_by(*group)
    if camera_id is not None:
        query = query.where(t.camera_id == camera_id)
    if model is not None:
        query = query.where(t.model == model)
    if since is not None:
        query = query.where(t.captured_at >= _when(since))
    with engine.connect() as conn:
        return [Accuracy(*r) for r in conn.execute(query)]


def _latest(rows: Iterable) -> dict[str, LabelFeedback]:
    """frame id -> its latest labelling, of rows ordered oldest labelling first."""
    return {r.frame_id: validate_fields(r.message, LabelFeedback) for r in rows}


def labels_for_frames(engine: Engine, frame_ids: Sequence[str]) -> dict[str, LabelFeedback]:
    """The latest labels of each of ``frame_ids`` that has any (frames without are left out)."""
    ids = list(dict.fromkeys(frame_ids))
    out: dict[str, LabelFeedback] = {}
    t = FrameLabelRow
    with engine.connect() as conn:
        for start in range(0, len(ids), 1000):
            query = (
                select(t.frame_id, t.message)
                .where(t.frame_id.in_(ids[start : start + 1000]))
                .order_by(t.labelled_at, t.label_id)
            )
            out.update(_latest(conn.execute(query)))
    return out


def labelled_frames(
    engine: Engine,
    camera_id: str,
    start_captured_at: float | datetime,
    end_captured_at: float | datetime,
) -> list[LabelFeedback]:
    """The latest labels of ``camera_id``'s frames captured from start to end (both included),
    in capture order."""
    t = FrameLabelRow
    query = (
        select(t.frame_id, t.message)
        .where(
            t.camera_id == camera_id,
            t.captured_at >= _when(start_captured_at),
            t.captured_at <= _when(end_captured_at),
        )
        .order_by(t.labelled_at, t.label_id)
    )
    with engine.connect() as conn:
        latest = _latest(conn.execute(query))
    return sorted(latest.values(), key=lambda label: (label.captured_at, label.frame_id))


def labelled_cameras(
    engine: Engine, start_captured_at: float | datetime, end_captured_at: float | datetime
) -> list[str]:
    """The cameras with labelled frames captured from start to end (both included)."""
    t = FrameLabelRow
    query = (
        select(t.camera_id)
        .where(t.captured_at >= _when(start_captured_at), t.captured_at <= _when(end_captured_at))
        .distinct()
        .order_by(t.camera_id)
    )
    with engine.connect() as conn:
        return list(conn.scalars(query))
