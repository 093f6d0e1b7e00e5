"""python -m services.objects: detections of detect cameras in; one event per tracked object
and detect rule out (the handler and its delivery guarantees: ``services/objects/handlers.py``)."""

from __future__ import annotations

from functools import partial

import redis

from services.objects.handlers import ObjectsHandlers
from visionline import rulesets
from visionline.db import make_engine
from visionline.messages import FrameDetections, Topic
from visionline.settings import CommonSettings, ObjectsSettings, refuse_dev_secrets
from visionline.worker import Worker, configure_logging


def main() -> None:
    common, settings = CommonSettings(), ObjectsSettings()
    configure_logging(common, "objects")
    secret = settings.state_secret.get_secret_value()
    refuse_dev_secrets(common, state_secret=secret)
    watcher = rulesets.watch(
        make_engine(common.database_url), settings.rules_file, settings.refresh_s
    )
    worker = Worker("objects", common)
    objects = ObjectsHandlers(
        watcher,
        redis.Redis.from_url(common.redis_url),
        secret.encode(),
        settings.fps,
        settings.state_ttl_s,
        partial(worker.send_many, worker.topic(Topic.OBJECT_EVENTS)),
    )
    # Nothing of a batch is committed before its events are on the broker and states saved.
    batches = settings.max_batch, settings.max_wait_ms
    worker.batched(Topic.DETECTIONS, FrameDetections, objects.observe, *batches)
    worker.run()


if __name__ == "__main__":
    main()
