"""Scheduled retraining jobs against the real PostgreSQL: one job per slot, whoever checks
(threads at once, a new engine as after a restart)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from visionline.db import make_engine
from visionline.model_registry.store import advance_job
from visionline.retrain.jobs import job_for_trigger
from visionline.retrain.schedule import create_scheduled_jobs

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, tzinfo=UTC).timestamp()


def test_one_job_per_slot_across_checks_and_restarts(engine, database_url) -> None:
    model = f"sched-{uuid.uuid4().hex[:8]}"  # a model of its own: no other test's job debounces
    schedule = {model: 6}

    def check(_: int) -> list:
        return create_scheduled_jobs(engine, schedule, T0 + 60)

    with ThreadPoolExecutor(4) as pool:
        checks = list(pool.map(check, range(8)))
    outcomes = [c[0] for c in checks]
    created = [o for o in outcomes if o.created]
    assert len(created) == 1, [o.reason for o in outcomes]
    job_id = created[0].job_id
    assert all(o.job_id in (None, job_id) for o in outcomes)
    job = job_for_trigger(engine, "schedule", f"{model}@2024-05-01T00:00:00+00:00")
    assert job is not None and job.id == job_id and job.state == "queued"

    advance_job(engine, job_id, "building_dataset", "x")
    advance_job(engine, job_id, "failed", "x")
    restarted = make_engine(database_url)
    try:
        again = create_scheduled_jobs(restarted, schedule, T0 + 5 * 3600)
        assert again[0].job_id == job_id and not again[0].created
        following = create_scheduled_jobs(restarted, schedule, T0 + 6 * 3600)
        assert following[0].created and following[0].job_id != job_id
        assert following[0].ref == f"{model}@2024-05-01T06:00:00+00:00"
    finally:
        restarted.dispose()
