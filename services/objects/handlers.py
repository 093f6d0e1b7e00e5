"""The objects worker's handler: detections of detect cameras in, events of their tracked
objects against the rules document's ``detect:`` rules out (``visionline.detect.events``).

One ``CameraObjects`` per camera (``visionline.detection.objects``), saved in Redis after every
batch with the offset of the last message folded in. The detections topic is keyed by camera,
so one replica sees a camera's frames in order; another replica that takes the partition over
loads the state from Redis.

Delivery: per batch, fold each message into its camera's state, send the events and wait for
the broker's ack, save the states, then let Faust commit. A crash before the save replays the
batch from the saved states: the same frames give the same events with the same ids (ids hold
the state's epoch and track ids, see ``CameraObjects``), which the rules worker writes once. A
crash after the save skips the messages already folded in. A state lost (Redis flushed, or
expired after ``VISIONLINE_OBJECTS_STATE_TTL_S`` of silence) restarts under a new epoch: an
object still in view is then a new track and may alert once more.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.objects.logic import (
    STATE_KEY,
    SavedState,
    detect_frame,
    event_message,
    seal,
    unseal,
)
from visionline.detection.objects import CameraObjects
from visionline.messages import keyed_by_camera
from visionline.observability import OBJECT_EVENTS
from visionline.rulesets import RulesWatcher
from visionline.settings import CommonSettings, ObjectsSettings, refuse_dev_secrets

log = logging.getLogger("visionline.objects")


@dataclass
class ObjectsHandlers:
    watcher: RulesWatcher
    redis: object  # redis.Redis
    secret: bytes
    fps: float
    ttl_s: float
    send_events: Callable[[list[tuple[bytes | None, bytes]]], Awaitable[None]]

    @classmethod
    def of(cls, common: CommonSettings, settings: ObjectsSettings, watcher, send_events):
        """From the settings: Redis, the state secret (a placeholder refused in production)."""
        import redis

        secret = settings.state_secret.get_secret_value()
        refuse_dev_secrets(common, VISIONLINE_OBJECTS_STATE_SECRET=secret)
        client = redis.Redis.from_url(common.redis_url)
        ttl = settings.state_ttl_s
        return cls(watcher, client, secret.encode(), settings.fps, ttl, send_events)

    def load(self, camera: str) -> SavedState | None:
        blob = self.redis.get(STATE_KEY.format(camera=camera))  # type: ignore[attr-defined]
        if blob is None:
            return None
        state = unseal(blob, self.secret)
        if state is None:
            log.error("tracker state of %s is not signed with this secret: starting anew", camera)
        return state

    def save(self, camera: str, state: SavedState) -> None:
        key, ttl = STATE_KEY.format(camera=camera), max(1, round(self.ttl_s))
        self.redis.set(key, seal(state, self.secret), ex=ttl)  # type: ignore[attr-defined]

    async def observe(self, parsed: list[tuple]) -> None:
        """``parsed``: ``(event, FrameDetections)`` pairs of a batch, in partition order."""
        self.watcher.poll()
        rules = self.watcher.current.rules.detect
        states: dict[str, SavedState | None] = {}
        out = []
        for event, message in parsed:
            camera = message.frame.camera_id
            if camera not in states:
                states[camera] = self.load(camera)
            tp, offset = event.message.tp, event.message.offset
            state = states[camera]
            if state is not None and state.has_seen(tp.partition, offset):
                continue
            if state is None:
                objects = CameraObjects(camera, message.frame.frame_id, fps=self.fps)
                state = states[camera] = SavedState(objects, tp.partition, offset)
            state.partition, state.offset = tp.partition, offset
            found = state.objects.update(detect_frame(message), rules)
            out += [event_message(e, message) for e in found]
        if out:
            await self.send_events(keyed_by_camera(out))
            for e in out:
                direction = str(e.detail.get("direction", ""))
                OBJECT_EVENTS.labels(e.camera_id, e.rule, e.kind, direction).inc()
        for camera, state in states.items():
            if state is not None:
                self.save(camera, state)
