"""The retrain worker's handlers: retraining jobs, one at a time per model.

- ``visionline.retrain.requests`` (RetrainRequest, key = model): run the job in a child
  process (``visionline retrain run``: ``run_job`` with the real steps), so the consumer keeps
  its heartbeat; jobs of one model wait for each other, other models' do not. A child that
  dies mid-job leaves the job failed.
  The request is acked once its job is final; a repeated request finds its job no longer
  queued and does nothing.
- ``visionline.drift.events`` (DriftEvent): the bridge from the drift service. A drift that
  should retrain a model creates a job (debounced: none while one of that model is queued or
  running) and publishes its RetrainRequest.
- The schedule (``VISIONLINE_RETRAIN_SCHEDULE_HOURS``, model -> hours): every
  ``VISIONLINE_RETRAIN_SCHEDULE_CHECK_S`` the current slot of each scheduled model gets its job
  once (``visionline.retrain.schedule``), debounced the same way, and its request is published.

At start, jobs a stopped worker left running are failed (hence one replica), and a request is
published again for every queued job (one whose request was lost; duplicates are harmless).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from visionline.inspection.crop_pair import part_crops_stale
from visionline.messages import DriftEvent, RetrainRequest
from visionline.model_registry.job_states import FINAL, JobState
from visionline.model_registry.store import advance_job, get_job
from visionline.retrain.cli import NOT_QUEUED
from visionline.retrain.jobs import (
    camera_pipeline,
    fail_interrupted,
    jobs_for_drift,
    outcome,
    queued_jobs,
    request_for,
)
from visionline.retrain.schedule import create_scheduled_jobs
from visionline.stack.process import parent_death_signal

log = logging.getLogger("visionline.retrain")


@dataclass
class RetrainHandlers:
    engine: Engine
    send_request: Callable[[RetrainRequest], Awaitable[None]]
    ack: Callable[[object], Awaitable[None]]
    crash: Callable[[BaseException, list], None]
    enabled_models: tuple[str, ...]
    locks: defaultdict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    running: set[asyncio.Task] = field(default_factory=set)
    told: dict[str, str] = field(default_factory=dict)  # the last reason logged per model
    crops_refresh: asyncio.subprocess.Process | None = None  # a part_crops rebuild under way

    async def on_request(self, event, request: RetrainRequest) -> None:
        """Run the job in the background: the consumer goes on (other models' jobs too)."""
        task = asyncio.ensure_future(self.run(event, request))
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    async def run(self, event, request: RetrainRequest) -> None:
        try:
            async with self.locks[request.model]:
                job = await self.run_in_child(request.job_id)
            if job is not None:
                log.warning("job %s (%s): %s", job.id, job.model, outcome(job))
        except Exception as exc:  # noqa: BLE001 - crash: the request comes back
            self.crash(exc, [event])
        await self.ack(event)

    async def run_in_child(self, job_id: int):
        """The job in its own process (``visionline retrain run``): training would starve this
        process's consumer of the interpreter. The final row, or None when not queued."""
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "visionline.retrain", "run", str(job_id)),
            preexec_fn=parent_death_signal(signal.SIGTERM),  # no orphan job when this one dies
        )
        status = await child.wait()
        if status == NOT_QUEUED:
            log.info("job %s was not queued: nothing to do", job_id)
            return None
        job = get_job(self.engine, job_id)
        if job.state not in {s.value for s in FINAL}:  # the child died mid-job
            why = f"the job's process exited with status {status}"
            job = advance_job(self.engine, job_id, JobState.FAILED, why)
        return job

    async def keep_part_crops_current(self, repository: Path) -> None:
        """Rebuild ``part_crops`` (``visionline retrain part-crops``, a child process: torch and
        the ONNX export) when the crop models served are no longer the pair it was built from,
        whoever promoted them. Until then the inspect worker asks the two models apart."""
        if self.crops_refresh is not None:
            return
        try:
            stale = await asyncio.to_thread(part_crops_stale, repository)
        except Exception:  # noqa: BLE001 - as scheduled_jobs: a timer's error crashes the worker
            log.exception("part_crops check failed; retrying at the next check")
            return
        if not stale:
            return
        log.warning("part_crops was built from other versions than those served: rebuilding")
        self.crops_refresh = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "visionline.retrain", "part-crops"),
            preexec_fn=parent_death_signal(signal.SIGTERM),
        )
        try:
            status = await self.crops_refresh.wait()
        finally:
            self.crops_refresh = None
        if status != 0:  # the next check tries again
            log.error("part_crops rebuild exited with status %s", status)

    async def on_drift(self, drift: DriftEvent) -> None:
        """A drift that should retrain a model creates a job (debounced) and its request."""
        pipeline = camera_pipeline(self.engine, drift.camera_id)
        created = jobs_for_drift(self.engine, drift, pipeline, self.enabled_models)
        if created.job_id is not None and created.publish:
            await self.send_request(request_for(get_job(self.engine, created.job_id)))
        log.warning("drift %s: %s", drift.event_id, created.reason)

    async def scheduled_jobs(self, schedule_hours: dict[str, float]) -> None:
        """Each scheduled model's current slot gets its job once; its request is published."""
        try:
            outcomes = await asyncio.to_thread(create_scheduled_jobs, self.engine, schedule_hours)
        except Exception:  # noqa: BLE001 - nothing to redeliver: the next check retries
            log.exception("schedule check failed; retrying at the next check")
            return
        for scheduled in outcomes:
            if scheduled.request is not None:
                await self.send_request(scheduled.request)  # failing: a restart publishes it
            if self.told.get(scheduled.model) != scheduled.reason:  # a debounce logs once
                self.told[scheduled.model] = scheduled.reason
                say = log.warning if scheduled.created else log.info
                say("schedule %s: %s", scheduled.ref, scheduled.reason)

    async def resume(self) -> None:
        """At start: fail the jobs a stopped worker left running, publish the queued ones."""
        for job_id in fail_interrupted(self.engine):
            log.warning("job %s failed: interrupted by a restart", job_id)
        for job in queued_jobs(self.engine):
            await self.send_request(request_for(job))
