"""python -m services.objects: detections of detect cameras in; one event per tracked object
and detect rule out (the handler and its delivery guarantees: ``services/objects/handlers.py``)."""

from __future__ import annotations

from functools import partial

from services.objects.handlers import ObjectsHandlers
from visionline import rulesets
from visionline.db import make_engine
from visionline.messages import FrameDetections, Topic
from visionline.settings import CommonSettings, ObjectsSettings
from visionline.worker import Worker, configure_logging


def main() -> None:
    common, settings = CommonSettings(), ObjectsSettings()
    configure_logging(common, "objects")
    engine = make_engine(common.database_url)
    watcher = rulesets.watch(engine, settings.rules_file, settings.refresh_s)
    worker = Worker("objects", common)
    send = partial(worker.send_many, worker.topic(Topic.OBJECT_EVENTS))
    objects = ObjectsHandlers.of(common, settings, watcher, send)
    # Nothing of a batch is committed before its events are on the broker and states saved.
    batch = settings.max_batch, settings.max_wait_ms
    worker.batched(Topic.DETECTIONS, FrameDetections, objects.observe, *batch)
    worker.run()


if __name__ == "__main__":
    main()
