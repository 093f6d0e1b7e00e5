"""python -m services.labels: true labels, part observations and part verdicts in; outcomes
and accuracy to PostgreSQL (the handlers: ``services/labels/handlers.py``)."""

from __future__ import annotations

from functools import partial

from services.labels.handlers import LabelsHandlers
from visionline.db import make_engine
from visionline.labels.join import JoinPolicy
from visionline.messages import (
    FrameDetections,
    LabelFeedback,
    PartObservations,
    PartVerdict,
    Topic,
)
from visionline.observability import ModelScores
from visionline.settings import CommonSettings, LabelsSettings
from visionline.worker import Worker, configure_logging


def main() -> None:
    common, settings = CommonSettings(), LabelsSettings()
    configure_logging(common, "labels")
    engine = make_engine(common.database_url, pre_ping=False)  # writes retry (Worker.attempt)
    labels = LabelsHandlers(engine, JoinPolicy.of(settings))
    worker = Worker("labels", common, fetch_min_bytes=settings.fetch_min_bytes)
    worker.sink(Topic.LABELS_FEEDBACK, LabelFeedback, labels.on_label)
    # In batches: one transaction per batch, not per frame (labels may lag by a batch's wait).
    batches = settings.max_batch, settings.max_wait_ms
    worker.batched(Topic.PART_OBSERVATIONS, PartObservations, labels.on_observations, *batches)
    worker.batched(Topic.PART_DECISIONS, PartVerdict, labels.on_verdicts, *batches)
    worker.batched(Topic.DETECTIONS, FrameDetections, labels.on_detections, *batches)
    worker.every(settings.f1_refresh_s, partial(labels.refresh_f1, ModelScores()), "f1")
    worker.run()


if __name__ == "__main__":
    main()
