"""python -m services.retrain: retraining jobs, one at a time per model.

- ``visionline.retrain.requests`` (RetrainRequest, key = model): run the job in a child
  process (``visionline jobs run``: ``run_job`` with the real steps), so the consumer keeps
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
import signal
import sys
from collections import defaultdict

from visionline.db import make_engine
from visionline.messages import DriftEvent, RetrainRequest, Topic, to_json
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
from visionline.settings import CommonSettings, RetrainSettings
from visionline.stack.process import parent_death_signal
from visionline.worker import Worker, configure_logging


def main() -> None:
    common, settings = CommonSettings(), RetrainSettings()
    configure_logging(common, "retrain")
    engine = make_engine(common.database_url)
    worker = Worker("retrain", common)
    requests = worker.topic(Topic.RETRAIN_REQUESTS)
    locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
    running: set[asyncio.Task] = set()

    async def publish(job) -> None:
        await publish_request(request_for(job))

    async def publish_request(request: RetrainRequest) -> None:
        await worker.send(requests, request.model.encode(), to_json(request))

    async def run(stream, event, request: RetrainRequest) -> None:
        try:
            async with locks[request.model]:
                job = await run_in_child(request.job_id)
            if job is not None:
                worker.log.warning("job %s (%s): %s", job.id, job.model, outcome(job))
        except Exception as exc:  # noqa: BLE001 - crash: the request comes back
            worker.crash(exc, [event])
        await stream.ack(event)

    async def run_in_child(job_id: int):
        """The job in its own process (``visionline jobs run``): training would starve this
        process's consumer of the interpreter. The final row, or None when not queued."""
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "visionline.retrain", "run", str(job_id),
            preexec_fn=parent_death_signal(signal.SIGTERM),  # no orphan job when this one dies
        )  # fmt: skip
        status = await child.wait()
        if status == NOT_QUEUED:
            worker.log.info("job %s was not queued: nothing to do", job_id)
            return None
        job = get_job(engine, job_id)
        if job.state not in {s.value for s in FINAL}:  # the child died mid-job
            job = advance_job(engine, job_id, JobState.FAILED,
                              f"the job's process exited with status {status}")  # fmt: skip
        return job

    @worker.app.agent(requests, name="visionline.retrain.requests")
    async def run_requests(stream):
        manual = stream.noack()
        async for event, request, _ in worker.decoded(
            manual.events(), RetrainRequest, ack=manual.ack
        ):
            task = asyncio.ensure_future(run(manual, event, request))
            running.add(task)
            task.add_done_callback(running.discard)

    @worker.app.agent(worker.topic(Topic.DRIFT_EVENTS), name="visionline.retrain.drift")
    async def drift_to_jobs(stream):
        async def jobs_for(drift: DriftEvent):
            pipeline = camera_pipeline(engine, drift.camera_id)
            created = jobs_for_drift(engine, drift, pipeline, settings.enabled_models)
            if created.job_id is not None and created.publish:
                await publish(get_job(engine, created.job_id))
            return created

        async for event, drift, done in worker.decoded(stream.events(), DriftEvent):
            created = await worker.attempt(lambda d=drift: jobs_for(d), [event])
            worker.log.warning("drift %s: %s", drift.event_id, created.reason)
            done()

    if settings.schedule_hours:
        told: dict[str, str] = {}  # the last reason logged per model: a debounce logs once

        @worker.app.timer(settings.schedule_check_s, name="visionline.retrain.schedule")
        async def scheduled_jobs() -> None:
            try:
                outcomes = await asyncio.to_thread(
                    create_scheduled_jobs, engine, settings.schedule_hours
                )
            except Exception:  # noqa: BLE001 - nothing to redeliver: the next check retries
                worker.log.exception("schedule check failed; retrying in %ss",
                                     settings.schedule_check_s)  # fmt: skip
                return
            for outcome in outcomes:
                if outcome.request is not None:
                    try:
                        await publish_request(outcome.request)
                    except Exception as exc:  # noqa: BLE001 - a restart publishes queued jobs
                        worker.crash(exc)
                if told.get(outcome.model) != outcome.reason:
                    told[outcome.model] = outcome.reason
                    log = worker.log.warning if outcome.created else worker.log.info
                    log("schedule %s: %s", outcome.ref, outcome.reason)

    @worker.app.task
    async def resume() -> None:
        for job_id in fail_interrupted(engine):
            worker.log.warning("job %s failed: interrupted by a restart", job_id)
        for job in queued_jobs(engine):
            await publish(job)

    worker.run()


if __name__ == "__main__":
    main()
