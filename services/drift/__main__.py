"""python -m services.drift: predictions and part observations in; drift events to PostgreSQL
and the drift-events topic.

Per message: take its signals, feed the camera's detector bank (``visionline.drift``), write
the drifts it confirmed (idempotent on the event id) and publish those not yet published (an
outbox flag, as for alerts). Messages are acked only once the camera's bank that reflects them
is saved (every ``VISIONLINE_DRIFT_CHECKPOINT_EVERY`` frames of a camera, every
``..._CHECKPOINT_INTERVAL_S``, on a revocation and on shutdown): see ``visionline.drift.bank``
for why a restart neither loses nor repeats a detector's input.
"""

from __future__ import annotations

from visionline.db import make_engine
from visionline.drift.bank import DriftMonitor, partition_key
from visionline.drift.detectors import load_detectors
from visionline.drift.store import PostgresState, mark_published, record_events
from visionline.drift.tracker import Policy
from visionline.kafka import source_of
from visionline.messages import DriftEvent, PartObservations, Prediction, Topic, to_json
from visionline.observability import DriftStates
from visionline.settings import CommonSettings, DriftSettings
from visionline.worker import Worker, configure_logging


def main() -> None:
    common, settings = CommonSettings(), DriftSettings()
    configure_logging(common, "drift")
    engine = make_engine(common.database_url)
    monitor = DriftMonitor(
        Policy.of(settings),
        load_detectors(settings.detectors_file),
        PostgresState(engine),
        settings.checkpoint_every,
    )
    worker = Worker("drift", common)
    drift_topic, gauge = worker.topic(Topic.DRIFT_EVENTS), DriftStates()

    async def publish(events: list[DriftEvent]) -> None:
        if not events:
            return
        pending = record_events(engine, events)
        await worker.send_many(drift_topic, [(e.camera_id.encode(), to_json(e)) for e in pending])
        mark_published(engine, [e.event_id for e in pending])
        for e in pending:
            worker.log.warning("drift on %s: %s (%s)", e.camera_id, e.signal, e.event_id)

    async def ack(tokens: list, keep=lambda event: True) -> None:
        for stream, event in tokens:
            if keep(event):
                await stream.ack(event)

    def watch(source: Topic, schema) -> None:
        @worker.app.agent(worker.topic(source), name=f"visionline.drift.{source.name.lower()}")
        async def agent(stream):
            manual = stream.noack()
            async for event, message, done in worker.decoded(
                manual.events(), schema, ack=manual.ack
            ):
                try:
                    seen = monitor.observe(message, source_of(event), (manual, event))
                    if seen.skipped:
                        await manual.ack(event)
                    gauge.show(seen.camera_id, monitor.states(seen.camera_id))
                    await publish(seen.events)
                    await ack(monitor.checkpoint(monitor.due()))
                except Exception as exc:  # noqa: BLE001 - crash so the message is redelivered
                    worker.crash(exc, [event])
                done()

    watch(Topic.PREDICTIONS, Prediction)
    watch(Topic.PART_OBSERVATIONS, PartObservations)

    @worker.app.timer(settings.checkpoint_interval_s, name="visionline.drift.checkpoint")
    async def checkpoint() -> None:
        try:
            await ack(monitor.checkpoint())
        except Exception as exc:  # noqa: BLE001 - crash: the unsaved frames come back
            worker.crash(exc)

    @worker.app.on_partitions_revoked.connect
    async def save_revoked(app, revoked, **kwargs) -> None:
        keys = {partition_key(tp.topic, tp.partition) for tp in revoked}
        await ack(monitor.checkpoint(), lambda e: e.message.tp not in revoked)
        gauge.forget(monitor.drop(lambda key: key in keys))

    @worker.app.on_before_shutdown.connect
    async def save_all(app, **kwargs) -> None:
        monitor.checkpoint()  # the consumer is stopped: saved state is what the restart skips

    worker.run()


if __name__ == "__main__":
    main()
