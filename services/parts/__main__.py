"""python -m services.parts: part observations in; one verdict per physical part out
(the handlers and their delivery guarantees: ``services/parts/handlers.py``)."""

from __future__ import annotations

from functools import partial

from services.parts.handlers import PartsHandlers
from visionline import rulesets
from visionline.db import make_engine
from visionline.messages import PartObservations, Topic
from visionline.settings import CommonSettings, PartsSettings
from visionline.worker import ManualAcks, Worker, configure_logging


def main() -> None:
    common, settings = CommonSettings(), PartsSettings()
    configure_logging(common, "parts")
    watcher = rulesets.watch(
        make_engine(common.database_url), settings.rules_file, settings.refresh_s
    )
    worker, acks = Worker("parts", common), ManualAcks()
    decisions = partial(worker.send_many, worker.topic(Topic.PART_DECISIONS))
    parts = PartsHandlers.of(common, settings, watcher, decisions, acks)
    observations = Topic.PART_OBSERVATIONS
    worker.manual(observations, PartObservations, parts.observe, acks, name="visionline.parts")

    async def flush_silent_cameras() -> None:
        if acks.running:
            await parts.flush_silent_cameras(settings.idle_flush_s, worker.app.consumer.highwater)

    worker.every(settings.flush_check_s, flush_silent_cameras, "flush")
    worker.on_revoked(parts.forget)
    worker.run()


if __name__ == "__main__":
    main()
