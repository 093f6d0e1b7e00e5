"""Retraining jobs as the retrain worker uses them: debounced creation and ``run_job``.

``run_job`` drives one job through its state machine (``visionline.model_registry.job_states``)::

    queued -> building_dataset -> training -> evaluating -> promoted | rejected
    any exception in a step -> failed, with the error as the reason

The work is done by injected steps (``JobSteps``), so the state machine is tested without
training; ``visionline.retrain.steps`` has the real ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from visionline.db.models import Camera, RetrainJobRow
from visionline.messages import DriftEvent, RetrainRequest
from visionline.model_registry.job_states import FINAL, InvalidTransition, JobState, Trigger
from visionline.model_registry.store import advance_job, create_job, get_job, model_lock
from visionline.retrain.policy import model_for_drift

log = logging.getLogger(__name__)
OPEN = tuple(s.value for s in JobState if s not in FINAL)  # queued or running
RUNNING = tuple(s for s in OPEN if s != JobState.QUEUED.value)
MAX_REASON = 2000  # the reason column


# --- creation, debounced per model ----------------------------------------------------------


def open_job(engine: Engine, model: str) -> RetrainJobRow | None:
    """The oldest job of ``model`` that is queued or running, if any."""
    query = (
        select(RetrainJobRow)
        .where(RetrainJobRow.model == model, RetrainJobRow.state.in_(OPEN))
        .order_by(RetrainJobRow.id)
        .limit(1)
    )
    with Session(engine, expire_on_commit=False) as session:
        return session.scalars(query).first()


@dataclass(frozen=True)
class Created:
    """What a request to create a job led to: ``job_id`` is the new job, or None and why."""

    model: str | None
    job_id: int | None
    reason: str
    open_job_id: int | None = None  # the job that debounced this one
    publish: bool = True  # whether its request is still to be published (the job is queued)


def create_job_once(
    engine: Engine,
    model: str,
    trigger: Trigger | str,
    trigger_ref: str | None = None,
    reason: str = "",
    dataset: dict[str, Any] | None = None,
    on_created: Callable[[Session, int], None] | None = None,
) -> Created:
    """A new queued job for ``model``, unless one is queued or running already (then none).
    Check and insert happen under a per-model lock (PostgreSQL advisory lock). ``on_created``:
    as for ``visionline.model_registry.store.create_job``."""
    with model_lock(engine, f"retrain-jobs:{model}"):
        existing = open_job(engine, model)
        if existing is not None:
            why = (
                f"not created: job {existing.id} for {model} is already {existing.state} ({reason})"
            )
            return Created(model, None, why[:MAX_REASON], existing.id)
        job_id = create_job(
            engine,
            model,
            trigger,
            trigger_ref,
            reason=reason[:MAX_REASON],
            dataset=dataset,
            on_created=on_created,
        )
    return Created(model, job_id, reason)


def job_for_trigger(engine: Engine, trigger: Trigger | str, ref: str) -> RetrainJobRow | None:
    query = select(RetrainJobRow).where(
        RetrainJobRow.trigger == Trigger(trigger).value, RetrainJobRow.trigger_ref == ref
    )
    with Session(engine, expire_on_commit=False) as session:
        return session.scalars(query.order_by(RetrainJobRow.id).limit(1)).first()


def camera_pipeline(engine: Engine, camera_id: str) -> str | None:
    """``classify`` or ``inspect`` for a registered camera; None for an unknown one."""
    with Session(engine) as session:
        row = session.get(Camera, camera_id)
    return None if row is None else (row.pipeline or "classify")


def jobs_for_drift(
    engine: Engine,
    event: DriftEvent,
    pipeline: str | None,
    enabled: tuple[str, ...] | frozenset[str],
) -> Created:
    """The job a confirmed drift creates: its model (``model_for_drift``), debounced per model
    (no new job while one for the same model is queued or running)."""
    model, reason = model_for_drift(event, pipeline, enabled)
    if model is None:
        return Created(None, None, reason)
    earlier = job_for_trigger(engine, Trigger.DRIFT, event.event_id)
    if earlier is not None:  # the event again (a redelivery): its job, published again if queued
        queued = earlier.state == JobState.QUEUED.value
        return Created(
            earlier.model,
            earlier.id,
            f"drift event {event.event_id} already created job {earlier.id} ({earlier.state})",
            publish=queued,
        )
    drift = {
        "drift": {
            "event_id": event.event_id,
            "camera_id": event.camera_id,
            "signal": event.signal,
            "detector": event.detector,
            "window": event.after.model_dump(),
            "reference": event.before.model_dump(),
            "statistic": event.statistic,
            "p_value": event.p_value,
        }
    }
    return create_job_once(engine, model, Trigger.DRIFT, event.event_id, reason, drift)


def request_for(job: RetrainJobRow) -> RetrainRequest:
    """The message that asks a retrain worker to run ``job``."""
    drift = (job.dataset or {}).get("drift") or {}
    return RetrainRequest(
        job_id=job.id,
        model=job.model,
        trigger=job.trigger,
        trigger_ref=job.trigger_ref,
        camera_id=drift.get("camera_id"),
        created_at=job.created_at.timestamp(),
    )


def outcome(job: RetrainJobRow) -> str:
    """A job's state and reason in one line (a decision's reason begins with its state already)."""
    said = job.reason or ""
    return said if said.startswith(job.state) else f"{job.state}: {said}"


def list_jobs(
    engine: Engine, model: str | None = None, limit: int = 50, state: str | None = None
) -> list[RetrainJobRow]:
    """Jobs newest first, of ``model`` and in ``state`` when given."""
    query = select(RetrainJobRow).order_by(RetrainJobRow.id.desc()).limit(limit)
    if model:
        query = query.where(RetrainJobRow.model == model)
    if state:
        query = query.where(RetrainJobRow.state == state)
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(query))


def queued_jobs(engine: Engine) -> list[RetrainJobRow]:
    query = select(RetrainJobRow).where(RetrainJobRow.state == JobState.QUEUED.value)
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(query.order_by(RetrainJobRow.id)))


def fail_interrupted(engine: Engine) -> list[int]:
    """Jobs left running by a worker that stopped (one retrain replica: none is running at its
    start) become failed, so they no longer hold back new jobs of their model."""
    query = select(RetrainJobRow.id, RetrainJobRow.state).where(RetrainJobRow.state.in_(RUNNING))
    with Session(engine) as session:
        stale = list(session.execute(query))
    for job_id, state in stale:
        advance_job(
            engine,
            job_id,
            JobState.FAILED,
            f"interrupted: the retrain worker stopped while the job was {state}",
        )
    return [job_id for job_id, _ in stale]


def record_metrics(engine: Engine, job_id: int, metrics: dict[str, Any]) -> None:
    """Set a job's metrics without moving it (before the promotion moves it)."""
    with Session(engine) as session, session.begin():
        row = session.get(RetrainJobRow, job_id, with_for_update=True)
        assert row is not None, f"no retrain job {job_id}"
        row.metrics, row.updated_at = metrics, datetime.now(UTC)


# --- running a job ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What the steps know of the job they work for."""

    id: int
    model: str
    trigger: str
    trigger_ref: str | None
    parent_version: int | None
    dataset: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, row: RetrainJobRow) -> Job:
        return cls(
            row.id,
            row.model,
            row.trigger,
            row.trigger_ref,
            row.parent_version,
            dict(row.dataset or {}),
        )


@dataclass(frozen=True)
class Evaluation:
    """Both versions scored on the same held-out frames."""

    candidate: dict[str, Any]
    serving: dict[str, Any]
    serving_version: int | None = None


@dataclass(frozen=True)
class JobSteps:
    """The work of each state. ``build_dataset`` returns the dataset description and the
    version serving now (the parent); ``train`` the candidate version; ``promote`` serves the
    candidate (and may itself move the job to promoted)."""

    build_dataset: Callable[[Job], tuple[dict[str, Any], int | None]]
    train: Callable[[Job], int]
    evaluate: Callable[[Job, int], Evaluation]
    decide: Callable[[dict[str, Any], dict[str, Any]], tuple[bool, str]]
    promote: Callable[[Job, int, dict[str, Any], str], None]


class JobNotQueued(RuntimeError):
    """The job was already claimed (running or final): a repeated request, nothing to do."""


def claim(engine: Engine, job_id: int) -> Job:
    """Move a queued job to building_dataset (row-locked: only one worker wins)."""
    try:
        row = advance_job(engine, job_id, JobState.BUILDING_DATASET, "building the dataset")
    except InvalidTransition as exc:
        raise JobNotQueued(f"job {job_id} is not queued: {exc}") from exc
    return Job.of(row)


def run_job(engine: Engine, job_id: int, steps: JobSteps) -> RetrainJobRow:
    """Run a queued job to promoted, rejected or failed; the final row. Raises JobNotQueued
    (and changes nothing) when the job is not queued."""
    job = claim(engine, job_id)
    try:
        _run(engine, job, steps)
    except Exception as exc:  # noqa: BLE001 - any step's error fails the job, with why
        log.exception("retraining job %s (%s) failed", job.id, job.model)
        reason = f"{type(exc).__name__}: {exc}"[:MAX_REASON]
        if get_job(engine, job.id).state not in {s.value for s in FINAL}:
            advance_job(engine, job.id, JobState.FAILED, reason)
    return get_job(engine, job.id)


def _run(engine: Engine, job: Job, steps: JobSteps) -> None:
    dataset, parent = steps.build_dataset(job)
    dataset = {**job.dataset, **dataset}
    advance_job(
        engine,
        job.id,
        JobState.TRAINING,
        f"training on {dataset.get('frames', '?')} frames",
        dataset=dataset,
        parent_version=parent,
    )
    job = Job(job.id, job.model, job.trigger, job.trigger_ref, parent, dataset)
    candidate = steps.train(job)
    advance_job(
        engine,
        job.id,
        JobState.EVALUATING,
        f"evaluating version {candidate} against version {parent}",
        candidate_version=candidate,
    )
    evaluation = steps.evaluate(job, candidate)
    promote, reason = steps.decide(evaluation.candidate, evaluation.serving)
    metrics = {
        "candidate_version": candidate,
        "serving_version": evaluation.serving_version,
        "candidate": evaluation.candidate,
        "serving": evaluation.serving,
        "decision": reason,
    }
    if not promote:
        advance_job(engine, job.id, JobState.REJECTED, reason[:MAX_REASON], metrics=metrics)
        return
    record_metrics(engine, job.id, metrics)
    steps.promote(job, candidate, metrics, reason[:MAX_REASON])
    if get_job(engine, job.id).state == JobState.EVALUATING.value:
        advance_job(engine, job.id, JobState.PROMOTED, reason[:MAX_REASON])
