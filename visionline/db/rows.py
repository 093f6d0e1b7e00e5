"""Rows from messages and back: a table's columns filled from the message's fields of the same
name (and the fields from the columns), so a mapper names only what is stored differently (a
nested model, a renamed field)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import DateTime

from visionline.db.models import Base
from visionline.db.outbox import utc


def row_of(message: BaseModel, table: type[Base], /, **columns: Any) -> dict[str, Any]:
    """``columns``, and each other column of ``table`` that ``message`` has a field of the same
    name: a time (epoch seconds) for a DateTime column as a UTC datetime, any other value as it
    is. A nested model must be given in ``columns``: which of its fields are stored, and in
    which JSON mode, is the caller's choice (a TypeError otherwise). ``message`` and ``table``
    are positional only: a table may have a column named ``message``."""
    fields = type(message).model_fields
    row = {}
    for column in table.__table__.columns:
        if column.name in columns or column.name not in fields:
            continue
        value = getattr(message, column.name)
        if _holds_a_model(value):
            raise TypeError(f"{type(message).__name__}.{column.name} is a model: map it")
        timed = isinstance(column.type, DateTime) and value is not None
        row[column.name] = utc(value) if timed else value
    return row | columns


def _holds_a_model(value: Any) -> bool:
    items = value if isinstance(value, list | tuple) else [value]
    return any(isinstance(v, BaseModel) for v in items)


def fields_of(row: Any, schema: type[BaseModel], /, **fields: Any) -> dict[str, Any]:
    """``fields``, and each other field of ``schema`` that ``row`` has a column of the same
    name: a datetime as epoch seconds where the field is a number, any other value as it is."""
    out = {}
    for name, info in schema.model_fields.items():
        if name in fields or not hasattr(row, name):
            continue
        value = getattr(row, name)
        wants_number = info.annotation in (float, float | None)
        out[name] = value.timestamp() if wants_number and isinstance(value, datetime) else value
    return out | fields
