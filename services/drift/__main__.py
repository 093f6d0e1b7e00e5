"""python -m services.drift: predictions, part observations and detections in; drift events out
(the handlers and their delivery guarantees: ``services/drift/handlers.py``)."""

from __future__ import annotations

from functools import partial

from services.drift.handlers import WATCHED, DriftHandlers
from visionline.db import make_engine
from visionline.drift.bank import DriftMonitor
from visionline.drift.detectors import load_detectors
from visionline.drift.store import PostgresState
from visionline.drift.tracker import Policy
from visionline.messages import Topic
from visionline.observability import DriftStates
from visionline.settings import CommonSettings, DriftSettings
from visionline.worker import ManualAcks, Worker, configure_logging


def main() -> None:
    common, settings = CommonSettings(), DriftSettings()
    configure_logging(common, "drift")
    engine = make_engine(common.database_url)
    detectors, state = load_detectors(settings.detectors_file), PostgresState(engine)
    monitor = DriftMonitor(Policy.of(settings), detectors, state, settings.checkpoint_every)
    worker = Worker("drift", common, fetch_min_bytes=settings.fetch_min_bytes)
    events, seen = worker.outbox(Topic.DRIFT_EVENTS, "event_id")
    drift = DriftHandlers(monitor, engine, events, DriftStates(), seen)
    for source, schema in WATCHED:
        acks = ManualAcks()
        worker.manual(source, schema, partial(drift.observe, acks), acks)
    worker.every(settings.checkpoint_interval_s, drift.checkpoint, "checkpoint")
    worker.on_revoked(drift.forget)
    worker.on_shutdown(drift.shutdown)
    worker.run()


if __name__ == "__main__":
    main()
