"""What every router does the same way: text PostgreSQL can store, times, publishing on Kafka
(page sizes: ``services.api.deps.PageSize``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import HTTPException, Query

from visionline.messages import Schema, Topic, to_json

NO_NUL = r"^[^\x00]+$"  # PostgreSQL text holds no NUL
# Optional filters of list requests: a camera id or signal name, a model name.
ShortFilter = Annotated[str | None, Query(max_length=64, pattern=NO_NUL)]
ModelFilter = Annotated[str | None, Query(max_length=100, pattern=NO_NUL)]


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


PUBLISH_TIMEOUT_S = 10.0  # how long a request waits for the broker's ack


def publish(producer, topic: Topic, key: str, message: Schema) -> bool:
    """Publish ``message`` and wait for the broker; whether it acked (False without producer)."""
    if producer is None:
        return False
    errors: list[str] = []

    def delivered(err, _message) -> None:
        if err is not None:
            errors.append(str(err))

    producer.produce(str(topic), to_json(message), key.encode(), on_delivery=delivered)
    return producer.flush(PUBLISH_TIMEOUT_S) == 0 and not errors
