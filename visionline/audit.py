"""The audit log: who changed what, and when (``audit_log``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from visionline.db.models import AuditRow


def record(session: Session, actor: str, action: str, target: str, **detail: Any) -> None:
    """Add an entry in the caller's transaction: the change and its record land together."""
    session.add(
        AuditRow(at=datetime.now(UTC), actor=actor, action=action, target=target, detail=detail)
    )


def history(engine: Engine, target: str | None = None, limit: int = 100) -> list[AuditRow]:
    stmt = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
    if target is not None:
        stmt = stmt.where(AuditRow.target == target)
    with Session(engine) as session:
        return list(session.scalars(stmt))
