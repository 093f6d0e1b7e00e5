"""The alerts topic fanned out to the live streams of ``GET /v1/live/alerts``.

One ``AlertFeed`` per API process reads the alerts topic on a thread of its own and hands each
alert to every open stream. It assigns itself all partitions and never commits (a
``visionline.kafka.reader``), so it joins no consumer group and disturbs none; replicas of the
API each read the whole topic.

Where it starts: at the partitions' high watermarks read once assigned, a known point after
which nothing is missed (``ready`` is set there).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

from pydantic import ValidationError

from visionline.kafka import assign_all, high_watermark, reader
from visionline.messages import Alert, Topic, from_json

log = logging.getLogger(__name__)

QUEUE_SIZE = 256  # alerts a stream may fall behind before it loses the oldest


@dataclass(eq=False)
class Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue  # of Alert, then None when the feed stops


def offer(queue: asyncio.Queue, item: Alert | None) -> None:
    """Put without waiting (on the queue's loop): a full queue drops its oldest alert, so a
    slow client loses events rather than holding back the others."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)


class AlertFeed:
    """The alerts topic, fanned out to subscribers' asyncio queues."""

    def __init__(
        self,
        bootstrap: str,
        queue_size: int = QUEUE_SIZE,
        poll_s: float = 0.5,
        retry_s: float = 2.0,
    ) -> None:
        self.bootstrap, self.queue_size = bootstrap, queue_size
        self.poll_s, self.retry_s = poll_s, retry_s
        self.ready = threading.Event()  # set once positioned: later alerts all arrive
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self.ready.clear()
        self._thread = threading.Thread(target=self._run, name="alert-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            subscribers = list(self._subscribers)
        for s in subscribers:  # open streams end instead of waiting forever
            self._hand_off(s, None)

    def subscribe(self) -> Subscriber:
        """A new queue on the running loop; ``unsubscribe`` it when the stream ends."""
        s = Subscriber(asyncio.get_running_loop(), asyncio.Queue(self.queue_size))
        with self._lock:
            self._subscribers.add(s)
        return s

    def unsubscribe(self, s: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(s)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def publish(self, alert: Alert) -> None:
        """Hand ``alert`` to every subscriber (from any thread)."""
        with self._lock:
            subscribers = list(self._subscribers)
        for s in subscribers:
            self._hand_off(s, alert)

    def _hand_off(self, s: Subscriber, item: Alert | None) -> None:
        try:
            s.loop.call_soon_threadsafe(offer, s.queue, item)
        except RuntimeError:  # its loop is closed: the stream is gone
            self.unsubscribe(s)

    def _run(self) -> None:
        """Read until stopped; a broker that fails is retried, not fatal to the API."""
        while not self._stop.is_set():
            try:
                self._consume()
            except Exception as exc:  # noqa: BLE001 - log, wait, reconnect
                log.warning("alert feed failed (%s: %s); retrying", type(exc).__name__, exc)
                self._stop.wait(self.retry_s)

    def _consume(self) -> None:
        consumer = reader(self.bootstrap, group="visionline-api-live")
        try:
            assign_all(consumer, Topic.ALERTS, high_watermark)
            self.ready.set()
            while not self._stop.is_set():
                message = consumer.poll(self.poll_s)
                if message is not None and message.error() is None:
                    self._dispatch(message)
        finally:
            consumer.close()

    def _dispatch(self, message) -> None:
        try:
            alert = from_json(message.value() or b"", Alert)
        except ValidationError as exc:
            log.warning("live feed skipped an unparsable alert: %s", str(exc)[:300])
            return
        self.publish(alert)
