"""The drift worker's handlers: predictions and part observations in; drift events to
PostgreSQL and the drift-events topic.

Per message: take its signals, feed the camera's detector bank (``visionline.drift``), write
the drifts it confirmed (idempotent on the event id) and publish those not yet published (an
outbox flag, as for alerts). Messages are acked only once the camera's bank that reflects them
is saved (every ``VISIONLINE_DRIFT_CHECKPOINT_EVERY`` frames of a camera, every
``..._CHECKPOINT_INTERVAL_S``, on a revocation and on shutdown): see ``visionline.drift.bank``
for why a restart neither loses nor repeats a detector's input.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from sqlalchemy import Engine

from visionline.db.outbox import publish_once
from visionline.drift.bank import DriftMonitor, partition_key
from visionline.drift.store import mark_published, record_events
from visionline.kafka import source_of
from visionline.messages import (
    DriftEvent,
    FrameDetections,
    PartObservations,
    Prediction,
    Topic,
    keyed_by_camera,
)
from visionline.observability import DriftStates
from visionline.worker import ManualAcks

log = logging.getLogger("visionline.drift")
# What the drift worker watches: one message per frame from each pipeline.
WATCHED = (
    (Topic.PREDICTIONS, Prediction),  # classify
    (Topic.PART_OBSERVATIONS, PartObservations),  # inspect
    (Topic.DETECTIONS, FrameDetections),  # detect
)


@dataclass
class DriftHandlers:
    monitor: DriftMonitor
    engine: Engine
    send_events: Callable[[list[tuple[bytes | None, bytes]]], Awaitable[None]]
    gauge: DriftStates
    # Which event ids the drift-events topic already holds (``visionline.db.outbox``).
    events_on_topic: Callable[[list[str], float], Awaitable[set[str]]]

    async def observe(self, ack: ManualAcks, event, message) -> None:
        """One prediction or part observation (acked through ``ack``) into its camera's
        detectors."""
        seen = self.monitor.observe(message, source_of(event), (ack, event))
        if seen.skipped:
            await ack(event)
        self.gauge.show(seen.camera_id, self.monitor.states(seen.camera_id))
        await self.publish(seen.events)
        await self.acked(self.monitor.checkpoint(self.monitor.due()))

    async def publish(self, events: list[DriftEvent]) -> None:
        if not events:
            return
        pending, unpublished = record_events(self.engine, events)
        sent = await publish_once(
            pending,
            unpublished,
            lambda e: e.event_id,
            self.events_on_topic,
            lambda batch: self.send_events(keyed_by_camera(batch)),
            partial(mark_published, self.engine),
        )
        for e in sent:
            log.warning("drift on %s: %s (%s)", e.camera_id, e.signal, e.event_id)

    async def acked(self, tokens: list, keep=lambda event: True) -> None:
        """Ack the messages a checkpoint saved (those whose event ``keep`` admits)."""
        for ack, event in tokens:
            if keep(event):
                await ack(event)

    async def checkpoint(self) -> None:
        await self.acked(self.monitor.checkpoint())

    async def forget(self, revoked: set) -> None:
        """Save what the banks hold, ack what is still ours, drop the revoked cameras' banks."""
        keys = {partition_key(tp.topic, tp.partition) for tp in revoked}
        await self.acked(self.monitor.checkpoint(), lambda e: e.message.tp not in revoked)
        self.gauge.forget(self.monitor.drop(lambda key: key in keys))

    def shutdown(self) -> None:
        # The consumer is stopped: what is saved is what the restart skips.
        self.monitor.checkpoint()
