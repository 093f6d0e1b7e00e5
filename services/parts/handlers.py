"""The parts worker's handlers: part observations in, one verdict per physical part out.

One ``PartTracker`` per camera (``visionline.inspection.tracking``). The observations topic is
keyed by camera, so one worker sees every frame of a camera, in order. Belt compensation uses
each frame's capture time times the camera's belt speed (``inspection:`` in the rules file), so
a dropped frame does not break a track; a per-camera frame counter drives min/lost frames.
Each decided part goes to ``visionline.inspection.decisions`` as a ``PartVerdict`` whose
``decision_id`` is ``camera:frame id of the deciding frame``, with ``:1``, ``:2``, ... for
further parts decided in that same frame (most recently seen first, see ``build_verdicts``). A
timer decides the open tracks of cameras silent for ``VISIONLINE_PARTS_IDLE_FLUSH_S`` in their
last frame, then starts them afresh.

Delivery: at least once, no part lost. The stream does not ack on its own (``noack``): an
observation is acked only once no open track of its camera was first seen at or before it
(``TrackEvidence.first_sighting``: ByteTrack sees a part a frame before it names it), and after
the verdicts decided with it are on the broker. Faust commits the contiguous acked prefix of each
partition, so after a crash (or a lost partition) the replay starts at or before the first
frame of every part that was not yet decided: such a part is tracked again from its start and
decided in the same frame, giving the same decision id, which the rules worker writes once.
Observations of a frame seen already (the inspect worker, restarted, redelivers the frames it
handled before its crash) are acked and not tracked again (``CameraLine.seen``: the last 2048
frame ids per camera). A part already decided whose frames fall after the replay point may be
decided again from fewer frames: same deciding frame, same id, ignored downstream; if the
replay decides it in another frame, the new id makes a second row (and at most a second
alert). A camera restarted after an idle flush keeps the parts decided lately (on the belt's
absolute axis): a part still in view when its frames resume (an upstream worker was down for
longer than the flush) is known, and decided again only to reject it.

Across a crash the same holds by Redis (``LineMemoryStore``): after the verdicts of a publish
are on the broker, and before their frames are acked, each camera's line counts and lately
decided parts are saved. A worker that takes a camera over starts from them, so a part it
replays that was decided before the crash is known (and its count kept), not decided again from
the fewer frames the replay shows of it. Redis down costs only that memory, never a verdict:
the worker logs it and goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from services.parts.logic import MEMORY_KEY, LineMemory, Lines
from visionline.messages import PartObservations, PartVerdict, keyed_by_camera
from visionline.resilience import RestAfterFailure
from visionline.rulesets import RulesWatcher
from visionline.settings import CommonSettings, PartsSettings

log = logging.getLogger("visionline.parts")


@dataclass
class LineMemoryStore:
    """Cameras' ``LineMemory`` in Redis, one key each, expiring after ``ttl_s`` of silence.
    Best effort: a Redis that fails is logged and the line goes on without its memory."""

    redis: Any  # redis.Redis
    ttl_s: float
    trust_s: float  # decided parts older than this are not recalled
    # After a failure Redis is left alone: a publish per frame, each blocked for the socket
    # timeout of a hung Redis, would add up past the group session.
    rest: RestAfterFailure = field(default_factory=RestAfterFailure)

    @classmethod
    def of(cls, common: CommonSettings, settings: PartsSettings) -> LineMemoryStore:
        import redis

        client = redis.Redis.from_url(common.redis_url, socket_timeout=2, socket_connect_timeout=2)
        return cls(client, settings.memory_ttl_s, settings.recall_decided_s)

    def recall(self, camera_id: str) -> LineMemory | None:
        if self.rest.resting():
            return None
        try:
            blob = self.redis.get(MEMORY_KEY.format(camera=camera_id))
        except RedisError as exc:
            self.rest.failed()
            log.warning("line memory of %s not read (%s): starting without it", camera_id, exc)
            return None
        if blob is None:
            return None
        memory = LineMemory.from_json(blob)
        if memory is None:
            log.error("line memory of %s is not readable: starting without it", camera_id)
            return None
        return memory.recalled(time.time(), self.trust_s)

    def save(self, camera_id: str, memory: LineMemory) -> None:
        key, ttl = MEMORY_KEY.format(camera=camera_id), max(1, round(self.ttl_s))
        if self.rest.resting():
            return
        try:
            self.redis.set(key, memory.to_json(), ex=ttl)
        except RedisError as exc:
            self.rest.failed()
            log.warning("line memory of %s not saved (%s)", camera_id, exc)


@dataclass
class PartsHandlers:
    lines: Lines
    watcher: RulesWatcher
    send_verdicts: Callable[[list[tuple[bytes | None, bytes]]], Awaitable[None]]
    ack: Callable[[object], Awaitable[None]]
    store: LineMemoryStore | None = None

    @classmethod
    def of(cls, common: CommonSettings, settings: PartsSettings, watcher, send_verdicts, ack):
        """Lines that recall their cameras' memory from Redis, and keep it there."""
        store = LineMemoryStore.of(common, settings)
        lines = Lines(watcher.current.rules.inspection, recall=store.recall)
        return cls(lines, watcher, send_verdicts, ack, store)

    async def publish(self, verdicts: list[PartVerdict], events: list) -> None:
        """Verdicts on the broker first, then their cameras' memory, then the acks that let
        their frames be committed."""
        await self.send_verdicts(keyed_by_camera(verdicts))
        if self.store is not None:
            wall = time.time()
            for camera_id in {v.camera_id for v in verdicts}:
                if (memory := self.lines.memory(camera_id, wall)) is not None:
                    self.store.save(camera_id, memory)
        for event in events:
            await self.ack(event)

    async def observe(self, event, obs: PartObservations) -> None:
        # The version of the rules in effect (rule_sets, else the file), looked for again at
        # most every refresh_s: see Lines.reconfigure for what a change does.
        if (fresh := self.watcher.poll()) is not None:
            await self.publish(*self.lines.reconfigure(fresh.rules.inspection, time.time()))
        tp, offset = event.message.tp, event.message.offset
        verdicts, ready = self.lines.observe(obs, event, time.monotonic(), time.time(), tp, offset)
        await self.publish(verdicts, ready)

    async def flush_silent_cameras(self, idle_flush_s: float, highwater) -> None:
        """Decide the open tracks of cameras silent for ``idle_flush_s``."""
        verdicts, ready = self.lines.flush_idle(
            time.monotonic(), idle_flush_s, time.time(), highwater
        )
        await self.publish(verdicts, ready)

    async def forget(self, revoked: set) -> None:
        """Partitions taken away: their cameras' tracks are replayed by their new owner."""
        if gone := self.lines.drop(revoked):
            log.info("partitions revoked: %d camera(s) will be replayed", len(gone))
