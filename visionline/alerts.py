"""Reading alerts back: live from the alerts topic, or stored from PostgreSQL."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import ValidationError
from sqlalchemy import Engine, literal, select, tuple_
from sqlalchemy.orm import Session

from visionline import audit
from visionline.db.models import AlertRow
from visionline.kafka import read_topic, topic_consumer
from visionline.messages import Alert, Topic, from_json

log = logging.getLogger(__name__)


def tail_alerts(bootstrap: str, from_beginning: bool = False, until: float | None = None):
    """Alerts as they arrive (None on each idle second); a message that is not an alert is
    logged and stepped over: the topic is public, anything may be written to it."""
    consumer = topic_consumer(bootstrap, Topic.ALERTS, from_beginning)
    try:
        for value in read_topic(consumer, until):
            if value is None:
                yield None
            elif (alert := _alert_or_none(value)) is not None:
                yield alert
    finally:
        consumer.close()


def _alert_or_none(value: bytes) -> Alert | None:
    try:
        return from_json(value, Alert)
    except ValidationError as exc:
        log.warning(
            "skipped a message on %s that is not an alert: %s",
            Topic.ALERTS,
            exc.errors(include_input=False)[:1],
        )
        return None


@dataclass(frozen=True)
class AlertFilter:
    camera_id: str | None = None
    severity: str | None = None
    rule: str | None = None
    limit: int = 50
    label: str | None = None
    defect_class: str | None = None  # of the part, on part alerts
    state: str | None = None
    since: datetime | None = None  # captured_at >= since
    until: datetime | None = None  # captured_at < until
    # Keyset cursor: alerts older than this (captured_at, alert_id), i.e. the next page.
    before: datetime | None = None
    before_id: str | None = None


def list_alerts(engine: Engine, query: AlertFilter) -> list[AlertRow]:
    """Newest first; ties on captured_at (several rules on one frame) broken by alert_id."""
    stmt = select(AlertRow).order_by(AlertRow.captured_at.desc(), AlertRow.alert_id.desc())
    for column, value in (
        (AlertRow.camera_id, query.camera_id),
        (AlertRow.severity, query.severity),
        (AlertRow.rule, query.rule),
        (AlertRow.label, query.label),
        (AlertRow.state, query.state),
        (AlertRow.part["defect_class"].as_string(), query.defect_class),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if query.since is not None:
        stmt = stmt.where(AlertRow.captured_at >= query.since)
    if query.until is not None:
        stmt = stmt.where(AlertRow.captured_at < query.until)
    if query.before is not None:
        if query.before_id is None:
            stmt = stmt.where(AlertRow.captured_at < query.before)
        else:
            key = tuple_(AlertRow.captured_at, AlertRow.alert_id)
            stmt = stmt.where(key < tuple_(literal(query.before), literal(query.before_id)))
    with Session(engine) as session:
        return list(session.scalars(stmt.limit(query.limit)))


# --- what operators do with an alert: open -> acknowledged -> resolved ----------------------


class AlertNotFound(LookupError):
    pass


class AlertConflict(Exception):
    """The transition is not allowed from the alert's state (e.g. acknowledging a resolved one)."""


Action = Literal["acknowledge", "resolve"]
TARGET_STATE: dict[str, str] = {"acknowledge": "acknowledged", "resolve": "resolved"}
# Where each action may start from; its own target state is a repeat (no change, no error).
ALLOWED_FROM: dict[str, frozenset[str]] = {
    "acknowledge": frozenset({"open"}),
    "resolve": frozenset({"open", "acknowledged"}),
}


def transition(state: str, action: Action) -> bool:
    """True when ``action`` changes an alert in ``state``, False when it is a repeat;
    AlertConflict when it is not allowed."""
    if state == TARGET_STATE[action]:
        return False
    if state not in ALLOWED_FROM[action]:
        raise AlertConflict(f"cannot {action} an alert that is {state}")
    return True


def get_alert(engine: Engine, alert_id: str) -> AlertRow:
    with Session(engine) as session:
        row = session.get(AlertRow, alert_id)
    if row is None:
        raise AlertNotFound(alert_id)
    return row


def apply_action(
    engine: Engine, alert_id: str, action: Action, actor: str, text: str | None = None
) -> AlertRow:
    """Acknowledge (``text``: a comment) or resolve (``text``: the resolution) an alert, and
    audit it in the same transaction. A repeat changes nothing: the first who and when stay."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        row = session.get(AlertRow, alert_id, with_for_update=True)  # concurrent operators
        if row is None:
            raise AlertNotFound(alert_id)
        if not transition(row.state, action):
            return row
        now = datetime.now(UTC)
        row.state = TARGET_STATE[action]
        if action == "acknowledge":
            row.acknowledged_by, row.acknowledged_at = actor, now
            audit.record(session, actor, "alert.acknowledge", f"alert:{alert_id}", comment=text)
        else:
            row.resolved_by, row.resolved_at, row.resolution = actor, now, text
            audit.record(session, actor, "alert.resolve", f"alert:{alert_id}", resolution=text)
    return row


def snapshot_ref(row: AlertRow) -> str | None:
    """The alert's annotated snapshot reference (``snapshot://...``), on part and object
    alerts."""
    detail = row.part if isinstance(row.part, dict) else row.object
    ref = detail.get("snapshot") if isinstance(detail, dict) else None
    return ref if isinstance(ref, str) and ref else None


def snapshot_image(root: Path, ref: str) -> bytes | None:
    """The snapshot of a reference as a JPEG (its boxes drawn now if it was stored as the
    camera's frame), if it is well-formed, inside ``root`` (no traversal, no symlink out) and
    not pruned yet."""
    from visionline.inspection.snapshots import SnapshotStore  # cv2: only when asked

    if not root.is_dir():  # the store would create it
        return None
    try:
        return SnapshotStore(root).render(ref)
    except (ValueError, OSError):
        return None
