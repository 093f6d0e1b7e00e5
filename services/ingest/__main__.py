"""python -m services.ingest: raw camera frames in, valid frames out, rejects dead-lettered
(the handler: ``services/ingest/handlers.py``)."""

from __future__ import annotations

import redis

from services.ingest.handlers import Ingest
from services.ingest.logic import PIPELINE_TOPICS
from visionline.camera_registry import CameraRegistry
from visionline.db import make_engine
from visionline.messages import Topic
from visionline.settings import CommonSettings, IngestSettings
from visionline.worker import Worker, configure_logging


def main() -> None:
    common, settings = CommonSettings(), IngestSettings()
    configure_logging(common, "ingest")
    ingest = Ingest(
        settings,
        CameraRegistry(make_engine(common.database_url), settings.registry_refresh_s),
        redis.Redis.from_url(common.redis_url),
    )
    worker = Worker("ingest", common)
    worker.routed(Topic.RAW_FRAMES, tuple(PIPELINE_TOPICS.values()), ingest.handle)
    worker.run()


if __name__ == "__main__":
    main()
