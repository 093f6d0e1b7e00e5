"""``DelayedLabels``: labels held back for a while, then published on the feedback topic.

Real labels come long after the frame (an annotator, a later inspection); a camera source that
knows the truth (the conveyor simulator) publishes it through this so the labels worker sees
the same order of events as in production: observations first, labels later.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading

from visionline.messages import LabelFeedback, Topic, to_json

log = logging.getLogger(__name__)


class DelayedLabels:
    """A heap of labels by due time (added + ``delay_s``); thread-safe."""

    def __init__(self, delay_s: float, topic: Topic = Topic.LABELS_FEEDBACK) -> None:
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        self.delay_s = delay_s
        self.topic = str(topic)
        self.published = 0
        self._heap: list[tuple[float, int, LabelFeedback]] = []
        self._order = itertools.count()  # ties keep the order labels were added in
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, label: LabelFeedback, now: float) -> None:
        with self._lock:
            heapq.heappush(self._heap, (now + self.delay_s, next(self._order), label))

    def due(self, now: float) -> list[LabelFeedback]:
        """The labels due at ``now``, oldest first; nothing is removed."""
        with self._lock:
            return [label for at, _, label in sorted(self._heap) if at <= now]

    def pop_due(self, now: float | None = None) -> list[LabelFeedback]:
        """Remove and return the labels due at ``now`` (all of them when None), oldest first."""
        out = []
        with self._lock:
            while self._heap and (now is None or self._heap[0][0] <= now):
                out.append(heapq.heappop(self._heap)[2])
        return out

    def publish_due(self, producer, now: float) -> int:
        """Publish the labels due at ``now`` (key = camera id); how many were queued."""
        return self._publish(producer, self.pop_due(now))

    def flush(self, producer, timeout: float = 10.0) -> int:
        """At close: publish every label still held, wait for the broker; how many were not
        delivered."""
        self._publish(producer, self.pop_due(None))
        return producer.flush(timeout)

    def _publish(self, producer, labels: list[LabelFeedback]) -> int:
        for label in labels:
            value, key = to_json(label), label.camera_id.encode()
            try:
                producer.produce(self.topic, value=value, key=key)
            except BufferError:  # the local queue is full: let it drain once, then retry
                producer.poll(1.0)
                producer.produce(self.topic, value=value, key=key)
        if labels:
            producer.poll(0)
        self.published += len(labels)
        return len(labels)
