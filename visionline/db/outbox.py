"""The outbox pattern of alerts and drift events: a row is written once (its id is the key, so a
replay is a no-op), published to Kafka, then marked published. A crash between the two leaves
it unpublished, and the next write of the same id returns it to be published again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import InstrumentedAttribute


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def insert_unpublished(
    conn: Connection, key: InstrumentedAttribute, published: InstrumentedAttribute, rows: list[dict]
) -> set[str]:
    """Insert ``rows`` (a key already stored is left as it is); the keys among them whose row
    is not published yet."""
    if not rows:
        return set()
    stmt = insert(key.class_).values(rows).on_conflict_do_nothing(index_elements=[key.key])
    conn.execute(stmt)
    ids = [row[key.key] for row in rows]
    return set(conn.execute(select(key).where(key.in_(ids), published.is_(False))).scalars())


def mark_published(
    engine: Engine, key: InstrumentedAttribute, published: InstrumentedAttribute, ids: Sequence[str]
) -> None:
    if ids:
        with engine.begin() as conn:
            conn.execute(update(key.class_).where(key.in_(ids)).values({published.key: True}))
