"""The registry's PostgreSQL rows: retraining jobs and the lineage of served model versions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from visionline.db.models import ModelVersionRow, RetrainJobRow
from visionline.model_registry.job_states import JobState, Trigger, transition_record


class VersionStatus(StrEnum):
    SERVING = "serving"
    RETIRED = "retired"
    ROLLED_BACK = "rolled_back"


class JobNotFound(LookupError):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


# --- retraining jobs ----------------------------------------------------------------------


def create_job(
    engine: Engine,
    model: str,
    trigger: Trigger | str,
    trigger_ref: str | None = None,
    parent_version: int | None = None,
    reason: str = "",
    dataset: dict[str, Any] | None = None,
    on_created: Callable[[Session, int], None] | None = None,
) -> int:
    """A new job in state ``queued``; returns its id. ``on_created`` runs in the inserting
    transaction with the new id (an audit entry lands with the job or not at all)."""
    now = _now()
    entry = {"from": None, "to": JobState.QUEUED.value, "at": now.isoformat(), "reason": reason}
    row = RetrainJobRow(
        model=model,
        trigger=Trigger(trigger).value,
        trigger_ref=trigger_ref,
        state=JobState.QUEUED.value,
        reason=reason,
        history=[entry],
        parent_version=parent_version,
        metrics={},
        dataset=dataset or {},
        created_at=now,
        updated_at=now,
    )
    with Session(engine) as session, session.begin():
        session.add(row)
        session.flush()
        if on_created is not None:
            on_created(session, row.id)
        return row.id


def advance_job(
    engine: Engine,
    job_id: int,
    target: JobState | str,
    reason: str,
    *,
    session: Session | None = None,
    **fields: Any,
) -> RetrainJobRow:
    """Move job ``job_id`` to ``target`` (InvalidTransition if not allowed), recording when and
    why; ``fields`` (metrics, dataset, candidate_version) are set in the same update. The row is
    locked while it changes, so two writers cannot both move it."""
    if session is not None:
        return _advance(session, job_id, target, reason, fields)
    with Session(engine, expire_on_commit=False) as own, own.begin():
        return _advance(own, job_id, target, reason, fields)


def _advance(
    session: Session, job_id: int, target: JobState | str, reason: str, fields: dict[str, Any]
) -> RetrainJobRow:
    row = session.get(RetrainJobRow, job_id, with_for_update=True)
    if row is None:
        raise JobNotFound(f"no retraining job {job_id}")
    entry = transition_record(row.state, target, reason)
    for name, value in fields.items():
        if name not in ("metrics", "dataset", "candidate_version", "parent_version"):
            raise TypeError(f"advance_job cannot set {name!r}")
        setattr(row, name, value)
    row.state, row.reason = entry["to"], reason
    row.history = [*row.history, entry]
    row.updated_at = _now()
    return row


def get_job(engine: Engine, job_id: int) -> RetrainJobRow:
    with Session(engine, expire_on_commit=False) as session:
        row = session.get(RetrainJobRow, job_id)
    if row is None:
        raise JobNotFound(f"no retraining job {job_id}")
    return row


# --- lineage of served versions -----------------------------------------------------------


@dataclass(frozen=True)
class VersionInfo:
    model: str
    version: int
    status: str
    parent_version: int | None
    job_id: int | None
    metrics: dict[str, Any] = field(default_factory=dict)
    promoted_at: datetime | None = None
    promoted_by: str = ""
    updated_at: datetime | None = None

    @classmethod
    def of(cls, row: ModelVersionRow) -> VersionInfo:
        return cls(
            row.model,
            row.version,
            row.status,
            row.parent_version,
            row.job_id,
            dict(row.metrics or {}),
            row.promoted_at,
            row.promoted_by,
            row.updated_at,
        )


def list_versions(engine: Engine, model: str) -> list[VersionInfo]:
    """Every recorded version of ``model``, newest number first."""
    query = (
        select(ModelVersionRow)
        .where(ModelVersionRow.model == model)
        .order_by(ModelVersionRow.version.desc())
    )
    with Session(engine) as session:
        return [VersionInfo.of(row) for row in session.scalars(query)]


def serving_row(session: Session, model: str) -> ModelVersionRow | None:
    query = select(ModelVersionRow).where(
        ModelVersionRow.model == model, ModelVersionRow.status == VersionStatus.SERVING.value
    )
    return session.scalars(query.with_for_update()).one_or_none()


def version_row(session: Session, model: str, version: int) -> ModelVersionRow | None:
    query = select(ModelVersionRow).where(
        ModelVersionRow.model == model, ModelVersionRow.version == version
    )
    return session.scalars(query.with_for_update()).one_or_none()


def set_status(row: ModelVersionRow, status: VersionStatus) -> None:
    row.status, row.updated_at = status.value, _now()


@contextmanager
def model_lock(engine: Engine, model: str) -> Iterator[None]:
    """One promotion or rollback of ``model`` at a time (a PostgreSQL advisory lock held for the
    whole switch, Triton included); a no-op on other databases."""
    if engine.dialect.name != "postgresql":
        yield
        return
    key = select(func.hashtext(f"visionline.registry:{model}"))
    with engine.connect() as conn:
        conn.execute(select(func.pg_advisory_lock(key.scalar_subquery())))
        try:
            yield
        finally:
            conn.execute(select(func.pg_advisory_unlock(key.scalar_subquery())))
            conn.commit()
