"""Structured logs: one JSON object per line, carrying the frame being handled.

Every record has ``time``, ``level``, ``logger``, ``message`` and ``service``; while a worker
handles a frame, ``camera_id`` and ``frame_id`` as well, so one frame can be followed through
every service (``grep '"frame_id": "f-42"'`` or a log store's query). The frame comes from a
context variable the worker sets when it decodes a message: each asyncio task (agent, timer)
has its own, so a timer's records never carry an agent's frame.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Literal

LogFormat = Literal["json", "text"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


@dataclass(frozen=True)
class FrameIds:
    camera_id: str | None
    frame_id: str | None = None


_frame: ContextVar[FrameIds | None] = ContextVar("visionline_frame", default=None)
_service: str | None = None  # the process's service, set by its Worker


def set_service(name: str | None) -> None:
    global _service
    _service = name


def frame_ids(message: object) -> FrameIds | None:
    """The camera and frame of a decoded message: a FrameMeta, a message carrying one in
    ``frame``, or one with ``camera_id`` (and ``frame_id``) fields of its own."""
    inner = getattr(message, "frame", None)
    if inner is not None and hasattr(inner, "camera_id"):
        message = inner
    camera_id = getattr(message, "camera_id", None)
    if not isinstance(camera_id, str):
        return None
    frame_id = getattr(message, "frame_id", None)
    return FrameIds(camera_id, frame_id if isinstance(frame_id, str) else None)


def bind_frame(message: object) -> None:
    """Tag this task's next records with the message's frame (no change if it names none)."""
    ids = frame_ids(message)
    if ids is not None:
        _frame.set(ids)


def set_frame(camera_id: str | None, frame_id: str | None = None) -> None:
    _frame.set(FrameIds(camera_id, frame_id) if camera_id or frame_id else None)


def clear_frame() -> None:
    _frame.set(None)


def current_frame() -> FrameIds | None:
    return _frame.get()


@contextmanager
def frame_context(camera_id: str | None, frame_id: str | None = None) -> Iterator[None]:
    """The frame for the records logged inside the block, restored afterwards."""
    token = _frame.set(FrameIds(camera_id, frame_id) if camera_id or frame_id else None)
    try:
        yield
    finally:
        _frame.reset(token)


def log_entry(record: logging.LogRecord, service: str | None) -> dict:
    """The fields of one JSON log line (``extra={"camera_id": ...}`` overrides the context)."""
    entry = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
        "service": service,
    }
    frame = current_frame()
    for key in ("camera_id", "frame_id"):
        value = getattr(record, key, None) or (getattr(frame, key) if frame else None)
        if value is not None:
            entry[key] = value
    return entry


class JsonFormatter(logging.Formatter):
    """One JSON object per line; tracebacks go in ``exception`` instead of extra lines."""

    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = log_entry(record, self.service or _service)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter(log_format: LogFormat, service: str | None = None) -> logging.Formatter:
    return JsonFormatter(service) if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(
    level: str | int, log_format: LogFormat, service: str | None = None, stream: IO | None = None
) -> logging.Handler:
    """The root logger writes to ``stream`` (stderr) in ``log_format``, replacing its handlers."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(log_format, service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return handler
