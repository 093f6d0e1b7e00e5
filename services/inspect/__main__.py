"""python -m services.inspect: inspection frames in, parts and their defects out (the
handlers: ``services/inspect/handlers.py``)."""

from __future__ import annotations

import redis

from services.inspect.handlers import InspectHandlers, ShedCounter, build_inspector
from visionline.messages import Topic
from visionline.settings import CommonSettings, InspectSettings
from visionline.worker import Worker, configure_logging


def main() -> None:
    common, settings = CommonSettings(), InspectSettings()
    configure_logging(common, "inspect")
    worker = Worker("inspect", common)
    shed = ShedCounter(redis.Redis.from_url(common.redis_url, socket_timeout=1.0))
    inspector = build_inspector(common, settings)
    inspect = InspectHandlers(inspector, settings, worker.model_in_use, shed)
    # Triton down: the worker waits for it; any other error crashes it, counted against the frame.
    frames = Topic.INSPECTION_FRAMES
    worker.each(frames, Topic.PART_OBSERVATIONS, inspect.inspect, settings.frames_in_flight)
    worker.every(settings.snapshot_prune_s, inspect.prune, "prune")
    worker.run()


if __name__ == "__main__":
    main()
