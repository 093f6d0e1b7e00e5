"""python -m services.parts: part observations in; one verdict per physical part out.

One ``PartTracker`` per camera (``visionline.inspection.tracking``). The observations topic is
keyed by camera, so one worker sees every frame of a camera, in order. Belt compensation uses
each frame's capture time times the camera's belt speed (``inspection:`` in the rules file), so
a dropped frame does not break a track; a per-camera frame counter drives min/lost frames.
Each decided part goes to ``visionline.inspection.decisions`` as a ``PartVerdict`` whose
``decision_id`` is ``camera:frame id of the deciding frame``, with ``:1``, ``:2``, ... for
further parts decided in that same frame (most recently seen first, see ``build_verdicts``). A
timer decides the open tracks of cameras silent for
``VISIONLINE_PARTS_IDLE_FLUSH_S`` in their last frame, then starts them afresh.

Delivery: at least once, no part lost. The stream does not ack on its own (``noack``): an
observation is acked only once no open track of its camera started at or before it (nor one
frame earlier, where ByteTrack first saw the part without an id), and after the verdicts
decided with it are on the broker. Faust commits the contiguous acked prefix of each
partition, so after a crash (or a lost partition) the replay starts at or before the first
frame of every part that was not yet decided: such a part is tracked again from its start and
decided in the same frame, giving the same decision id, which the rules worker writes once.
A part already decided whose frames fall after the replay point may be decided again from fewer
frames: same deciding frame, same id, ignored downstream; if the replay decides it in another
frame, the new id makes a second row (and at most a second alert). The line counts carried in
verdicts restart at zero with the worker; counts read from PostgreSQL do not.
"""

from __future__ import annotations

import time

from services.parts.logic import Lines
from visionline import rulesets
from visionline.db import make_engine
from visionline.messages import PartObservations, PartVerdict, Topic, to_json
from visionline.settings import CommonSettings, PartsSettings
from visionline.worker import Worker, configure_logging


def main() -> None:
    common, settings = CommonSettings(), PartsSettings()
    configure_logging(common, "parts")
    # The version of the rules in effect (rule_sets, else the file), looked for again at most
    # every refresh_s when a frame comes: see Lines.reconfigure for what a change does.
    engine = make_engine(common.database_url)
    watcher = rulesets.watch(engine, settings.rules_file, settings.refresh_s)
    lines = Lines(watcher.current.rules.inspection)
    worker = Worker("parts", common)
    decisions = worker.topic(Topic.PART_DECISIONS)
    acks = {}  # the manual-ack stream, once the agent runs

    async def publish(verdicts: list[PartVerdict], events: list) -> None:
        """Verdicts on the broker first, then the acks that let their frames be committed."""
        await worker.send_many(decisions, [(v.camera_id.encode(), to_json(v)) for v in verdicts])
        for event in events:
            await acks["stream"].ack(event)

    @worker.app.agent(worker.topic(Topic.PART_OBSERVATIONS), name="visionline.parts")
    async def track(stream):
        manual = acks["stream"] = stream.noack()
        async for event, obs, done in worker.decoded(
            manual.events(), PartObservations, ack=manual.ack
        ):
            try:
                if (fresh := watcher.poll()) is not None:
                    await publish(*lines.reconfigure(fresh.rules.inspection, time.time()))
                tp, offset = event.message.tp, event.message.offset
                verdicts, ready = lines.observe(
                    obs, event, time.monotonic(), time.time(), tp, offset
                )
                await publish(verdicts, ready)
            except Exception as exc:  # noqa: BLE001 - crash so the frames are redelivered
                worker.crash(exc, [event])
            done()

    @worker.app.timer(settings.flush_check_s)
    async def flush_silent_cameras():
        if "stream" not in acks:
            return
        try:
            verdicts, ready = lines.flush_idle(
                time.monotonic(), settings.idle_flush_s, time.time(), worker.app.consumer.highwater
            )
            await publish(verdicts, ready)
        except Exception as exc:  # noqa: BLE001 - crash so the frames are redelivered
            worker.crash(exc)

    @worker.app.on_partitions_revoked.connect
    async def forget_revoked(app, revoked, **kwargs) -> None:
        gone = lines.drop(revoked)
        if gone:
            worker.log.info("partitions revoked: %d camera(s) will be replayed", len(gone))

    worker.run()


if __name__ == "__main__":
    main()
