"""Scheduled retraining: a job per model every ``RetrainSettings.schedule_hours[model]`` hours.

Time is cut into slots aligned to the epoch (``slot_of``), so every replica and every restart
computes the same slot for the same moment. A slot's job is known by its trigger reference,
``<model>@<slot start, ISO 8601 UTC>``: ``create_scheduled_jobs`` creates it once per slot
(found again after a restart), debounced like any job (none while a job of that model is queued
or running: then it is tried again at the next check of the same slot). The first check after a
model is scheduled creates the current slot's job.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from visionline.messages import RetrainRequest
from visionline.model_registry.job_states import Trigger
from visionline.model_registry.store import get_job
from visionline.retrain.jobs import create_job_once, job_for_trigger, request_for


@dataclass(frozen=True)
class Slot:
    """``[start, end)`` in epoch seconds."""

    start: int
    end: int

    @property
    def start_iso(self) -> str:
        return iso(self.start)

    @property
    def end_iso(self) -> str:
        return iso(self.end)


def iso(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")


def slot_seconds(every_hours: float) -> int:
    """A slot's length in whole seconds; at least a minute."""
    seconds = round(every_hours * 3600)
    if seconds < 60:
        raise ValueError(f"a schedule interval of {every_hours} h is shorter than a minute")
    return seconds


def slot_of(at: float, every_hours: float) -> Slot:
    """The slot that the moment ``at`` (epoch seconds) belongs to."""
    length = slot_seconds(every_hours)
    start = int(at // length) * length
    return Slot(start, start + length)


def trigger_ref(model: str, slot: Slot) -> str:
    return f"{model}@{slot.start_iso}"


@dataclass(frozen=True)
class Scheduled:
    """What one check did for one model: the slot's job (new, earlier, or None when debounced),
    why, and the request to publish (only for a job created now)."""

    model: str
    ref: str
    job_id: int | None
    reason: str
    request: RetrainRequest | None = None

    @property
    def created(self) -> bool:
        return self.request is not None


def create_scheduled_jobs(
    engine: Engine, schedule: Mapping[str, float], now: float | None = None
) -> list[Scheduled]:
    """For each scheduled model, the job of the slot ``now`` falls in, created if it has none."""
    at = time.time() if now is None else now
    return [schedule_model(engine, model, hours, at) for model, hours in schedule.items()]


def schedule_model(engine: Engine, model: str, every_hours: float, at: float) -> Scheduled:
    slot = slot_of(at, every_hours)
    ref = trigger_ref(model, slot)
    earlier = job_for_trigger(engine, Trigger.SCHEDULE, ref)
    if earlier is not None:
        return Scheduled(
            model, ref, earlier.id, f"the slot's job is {earlier.id} ({earlier.state})"
        )
    reason = f"scheduled every {every_hours:g} h: slot {slot.start_iso} to {slot.end_iso}"
    dataset = {
        "schedule": {
            "every_hours": every_hours,
            "slot_start": slot.start_iso,
            "slot_end": slot.end_iso,
        }
    }
    created = create_job_once(engine, model, Trigger.SCHEDULE, ref, reason, dataset)
    if created.job_id is None:
        return Scheduled(model, ref, None, created.reason)
    request = request_for(get_job(engine, created.job_id))
    return Scheduled(model, ref, created.job_id, f"job {created.job_id}: {reason}", request)
