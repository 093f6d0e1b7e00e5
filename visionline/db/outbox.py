"""The outbox pattern of alerts and drift events: a row is written once (its id is the key, so a
replay is a no-op), published to Kafka, then marked published. A crash between the two leaves
it unpublished, and the next write of the same id returns it to be published again.

A crash after the broker's ack and before the mark would publish it twice: a row an earlier
attempt stored (``Unpublished.retried``) is first looked for on its topic, from the time it
was stored (``publish_once``), and one found there is only marked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import InstrumentedAttribute


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@dataclass(frozen=True)
class Unpublished:
    """Rows not on their topic yet, as far as the table knows."""

    ids: set[str] = field(default_factory=set)
    # Of those, the rows an earlier attempt stored (a send may have reached the broker), and
    # the earliest time one of them was stored (epoch s).
    retried: set[str] = field(default_factory=set)
    retried_since: float | None = None

    def __contains__(self, key: object) -> bool:
        return key in self.ids


def insert_unpublished(
    conn: Connection, key: InstrumentedAttribute, published: InstrumentedAttribute, rows: list[dict]
) -> Unpublished:
    """Insert ``rows`` (a key already stored is left as it is); the keys among them whose row
    is not published yet, and which of them were stored before."""
    if not rows:
        return Unpublished()
    table = key.class_
    stmt = insert(table).values(rows).on_conflict_do_nothing(index_elements=[key.key])
    inserted = set(conn.execute(stmt.returning(key)).scalars())
    ids = [row[key.key] for row in rows]
    query = select(key, table.created_at).where(key.in_(ids), published.is_(False))
    return unpublished_of([(k, at) for k, at in conn.execute(query)], inserted)


def unpublished_of(rows: Sequence[tuple[str, datetime]], new: set[str]) -> Unpublished:
    """``rows`` (key, created at) not published; ``new``: the keys inserted just now."""
    retried = {k: at for k, at in rows if k not in new}
    since = min(retried.values()).timestamp() if retried else None
    return Unpublished({k for k, _ in rows}, set(retried), since)


T = TypeVar("T")


async def publish_once(
    pending: list[T],
    unpublished: Unpublished,
    id_of: Callable[[T], str],
    on_topic: Callable[[list[str], float], Awaitable[set[str]]],
    send: Callable[[list[T]], Awaitable[None]],
    mark: Callable[[list[str]], None],
) -> list[T]:
    """Send ``pending`` and mark them published; those an earlier attempt stored are first
    looked for on the topic (``on_topic(ids, since)``) and only marked when found. Returns
    what was sent."""
    maybe_sent = [id_of(x) for x in pending if id_of(x) in unpublished.retried]
    if maybe_sent:
        assert unpublished.retried_since is not None
        found = await on_topic(maybe_sent, unpublished.retried_since)
        mark(sorted(found))
        pending = [x for x in pending if id_of(x) not in found]
    if pending:
        await send(pending)
        mark([id_of(x) for x in pending])
    return pending


def mark_published(
    engine: Engine, key: InstrumentedAttribute, published: InstrumentedAttribute, ids: Sequence[str]
) -> None:
    if ids:
        with engine.begin() as conn:
            conn.execute(update(key.class_).where(key.in_(ids)).values({published.key: True}))
