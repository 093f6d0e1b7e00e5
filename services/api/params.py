"""Query and body values every router reads the same way."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import HTTPException


def utc(value: datetime | None) -> datetime | None:
    """In UTC (PostgreSQL refuses offsets past +-15:59); a time without a zone is UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+16:00
        raise HTTPException(422, f"time {value.isoformat()} is out of range") from None
