"""python -m services.retrain: retraining jobs from requests, drift events and the schedule,
one at a time per model (the handlers: ``services/retrain/handlers.py``)."""

from __future__ import annotations

from functools import partial

from services.retrain.handlers import RetrainHandlers
from visionline.db import make_engine
from visionline.messages import DriftEvent, RetrainRequest, Topic, to_json
from visionline.settings import CommonSettings, RetrainSettings
from visionline.worker import ManualAcks, Worker, configure_logging


def main() -> None:
    common, settings = CommonSettings(), RetrainSettings()
    configure_logging(common, "retrain")
    worker, acks = Worker("retrain", common), ManualAcks()
    requests = worker.topic(Topic.RETRAIN_REQUESTS)

    async def send_request(request: RetrainRequest) -> None:
        await worker.send(requests, request.model.encode(), to_json(request))

    engine = make_engine(common.database_url)
    jobs = RetrainHandlers(engine, send_request, acks, worker.crash, settings.enabled_models)
    worker.manual(
        Topic.RETRAIN_REQUESTS, RetrainRequest, jobs.on_request, acks, "visionline.retrain.requests"
    )
    worker.sink(Topic.DRIFT_EVENTS, DriftEvent, jobs.on_drift, name="visionline.retrain.drift")
    if settings.schedule_hours:
        tick = partial(jobs.scheduled_jobs, settings.schedule_hours)
        worker.every(settings.schedule_check_s, tick, "schedule")
    check = partial(jobs.keep_part_crops_current, common.model_repository)
    worker.every(settings.part_crops_check_s, check, "part_crops")
    worker.at_start(jobs.resume)
    worker.run()


if __name__ == "__main__":
    main()
