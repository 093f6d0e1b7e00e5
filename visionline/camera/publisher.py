"""Publishing camera frames to Kafka, and the paced loop that runs a camera.

Wire format (see ``visionline.messages``): topic ``Topic.RAW_FRAMES``, key = camera id,
value = the encoded image, headers frame-id / captured-at (epoch ms) / content-type.
"""

from __future__ import annotations

import itertools
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from confluent_kafka import KafkaError, KafkaException, Message

from visionline.camera.frames import JPEG, FrameSource, encode_jpeg, to_encoded
from visionline.kafka import producer
from visionline.messages import HEADER_CAPTURED_AT, HEADER_CONTENT_TYPE, HEADER_FRAME_ID, Topic

__all__ = ["FramePublisher", "Pacer", "encode_jpeg", "run_camera", "run_cameras"]

log = logging.getLogger(__name__)

DeliveryCallback = Callable[[KafkaError | None, Message], None]


def epoch_ms() -> int:
    return time.time_ns() // 1_000_000


def new_frame_id(camera_id: str, counter: int) -> str:
    """``<camera>-<counter>-<random>``: ordered within a run, unique across restarts."""
    return f"{camera_id}-{counter}-{secrets.token_hex(4)}"


def frame_headers(
    frame_id: str, captured_at_ms: int, content_type: str
) -> list[tuple[str, str | bytes | None]]:  # as Producer.produce takes them
    return [
        (HEADER_FRAME_ID, frame_id.encode()),
        (HEADER_CAPTURED_AT, str(captured_at_ms).encode()),
        (HEADER_CONTENT_TYPE, content_type.encode()),
    ]


class FramePublisher:
    """A thread-safe producer of camera frames; one can serve many cameras of a process."""

    def __init__(
        self,
        bootstrap: str,
        *,
        topic: str = Topic.RAW_FRAMES,
        delivery_timeout_s: float = 30.0,
        **config: object,
    ) -> None:
        # A frame older than the delivery timeout is worthless: librdkafka gives up on it then.
        config.setdefault("message.timeout.ms", int(delivery_timeout_s * 1000))
        self._producer = producer(bootstrap, **config)
        self.topic = str(topic)
        self._lock = threading.Lock()
        self._counters: dict[str, itertools.count[int]] = {}
        self.delivered = 0
        self.delivery_errors = 0
        self._poller: threading.Thread | None = None
        self._stop_polling = threading.Event()

    def next_frame_id(self, camera_id: str) -> str:
        with self._lock:
            counter = self._counters.setdefault(camera_id, itertools.count(1))
            return new_frame_id(camera_id, next(counter))

    def publish(
        self,
        camera_id: str,
        image_bytes: bytes,
        frame_id: str | None = None,
        captured_at: int | None = None,
        content_type: str = JPEG,
        on_delivery: DeliveryCallback | None = None,
    ) -> str:
        """Queue one frame (never blocks; BufferError when the local queue is full)."""
        frame_id = frame_id or self.next_frame_id(camera_id)
        captured = epoch_ms() if captured_at is None else captured_at
        self._producer.produce(
            self.topic,
            value=image_bytes,
            key=camera_id.encode(),
            headers=frame_headers(frame_id, captured, content_type),
            on_delivery=partial(self._on_delivery, on_delivery),
        )
        self._producer.poll(0)  # serve delivery reports without waiting
        return frame_id

    def _on_delivery(self, callback: DeliveryCallback | None, err: KafkaError | None, msg) -> None:
        with self._lock:
            if err is None:
                self.delivered += 1
            else:
                self.delivery_errors += 1
                errors = self.delivery_errors
        if err is not None and (errors == 1 or errors % 100 == 0):
            log.warning("frame delivery failed (%d so far): %s", errors, err)
        if callback is not None:
            callback(err, msg)

    def poll(self, timeout: float = 0.0) -> int:
        return self._producer.poll(timeout)

    def flush(self, timeout: float = 10.0) -> int:
        """Wait for queued frames; returns how many are still undelivered."""
        return self._producer.flush(timeout)

    def ping(self, timeout: float = 2.0) -> None:
        """Raise unless the broker answers and knows the frames topic."""
        # All topics: asking for one by name could make a broker auto-create it.
        metadata = self._producer.list_topics(timeout=timeout)
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None:
            raise KafkaException(topic.error if topic else f"topic {self.topic} unknown")

    def start_polling(self, interval: float = 0.05) -> None:
        """Serve delivery reports from a background thread (for callers that await them)."""
        if self._poller is None:
            self._stop_polling.clear()
            self._poller = threading.Thread(
                target=self._poll_loop, args=(interval,), name="kafka-poll", daemon=True
            )
            self._poller.start()

    def _poll_loop(self, interval: float) -> None:
        while not self._stop_polling.is_set():
            self._producer.poll(interval)

    def close(self, timeout: float = 10.0) -> int:
        """Flush, drop what is still queued after ``timeout``, and close the producer.

        Returns how many frames were dropped undelivered. The publisher is unusable afterwards.
        """
        remaining = self.flush(timeout)
        if remaining:
            self._producer.purge()
            self._producer.flush(1.0)  # serve the purged frames' (failed) delivery reports
        if self._poller is not None:
            self._stop_polling.set()
            self._poller.join()
            self._poller = None
        self._producer.close()
        return remaining


def next_tick(start: float, period: float, last_tick: int, now: float) -> int:
    """The tick to run after ``last_tick``: the next one, or when late the latest one due.

    Tick k is due at ``start + k * period``; deadlines come from ``start``, so nothing drifts.
    """
    due = math.floor((now - start) / period)
    return max(last_tick + 1, due)


class Pacer:
    """Keeps a loop at ``fps``: sleeps until the next tick, skips the ticks it was late for."""

    def __init__(self, fps: float, clock: Callable[[], float] = time.monotonic) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.period = 1.0 / fps
        self._clock = clock
        self.start = clock()
        self.tick = 0

    def elapsed(self) -> float:
        return self._clock() - self.start

    def wait(self, stop: threading.Event) -> int:
        """Sleep until the next tick (or ``stop``); returns how many ticks were skipped."""
        now = self._clock()
        tick = next_tick(self.start, self.period, self.tick, now)
        skipped, self.tick = tick - self.tick - 1, tick
        deadline = self.start + tick * self.period
        while (delay := deadline - self._clock()) > 0 and not stop.wait(delay):
            pass  # Event.wait may return a hair early: never run a tick before its time
        return skipped


@dataclass
class CameraStats:
    camera_id: str
    sent: int = 0
    bytes_sent: int = 0
    skipped_ticks: int = 0  # ticks missed because a frame came or went too slowly
    dropped: int = 0  # frames refused by a full producer queue
    elapsed_s: float = 0.0
    error: str | None = None

    @property
    def fps(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


def run_camera(
    camera_id: str,
    source: FrameSource,
    fps: float,
    jpeg_quality: int,
    publisher: FramePublisher,
    max_frames: int | None = None,
    duration_s: float | None = None,
    stop_event: threading.Event | None = None,
) -> CameraStats:
    """Push ``source`` at ``fps`` until it ends, a limit is reached or ``stop_event`` is set."""
    stop = stop_event or threading.Event()
    stats = CameraStats(camera_id)
    pacer = Pacer(fps)
    frames = iter(source)
    while not stop.is_set():
        frame = next(frames, None)
        if frame is None:
            break
        captured = epoch_ms()
        encoded = to_encoded(frame, jpeg_quality)  # once per frame, whatever happens next
        captured = encoded.captured_at_ms or captured
        try:
            publisher.publish(
                camera_id,
                encoded.data,
                frame_id=encoded.frame_id,
                captured_at=captured,
                content_type=encoded.content_type,
            )
        except BufferError:
            stats.dropped += 1  # a camera drops frames rather than block on a full queue
        else:
            stats.sent += 1
            stats.bytes_sent += len(encoded.data)
        if max_frames is not None and stats.sent + stats.dropped >= max_frames:
            break
        stats.skipped_ticks += pacer.wait(stop)
        if duration_s is not None and pacer.elapsed() >= duration_s:
            break
    stats.elapsed_s = pacer.elapsed()
    return stats


def run_cameras(
    cameras: Iterable[tuple[str, FrameSource]],
    fps: float,
    jpeg_quality: int,
    publisher: FramePublisher,
    duration_s: float | None = None,
    stop_event: threading.Event | None = None,
    report_every_s: float = 60.0,
) -> list[CameraStats]:
    """Run several cameras on one shared producer, a thread each; closes their sources."""
    stop = stop_event or threading.Event()
    cameras = list(cameras)
    results = [CameraStats(camera_id) for camera_id, _ in cameras]
    # Spread the cameras' ticks over a period so their encodes do not all land at once.
    stagger = 1.0 / (len(cameras) * fps) if cameras else 0.0

    def work(index: int) -> None:
        camera_id, source = cameras[index]
        try:
            if not stop.wait(index * stagger):
                results[index] = run_camera(
                    camera_id, source, fps, jpeg_quality, publisher, None, duration_s, stop
                )
        except Exception as exc:  # noqa: BLE001 - one broken camera must not stop the others
            log.exception("camera %s failed", camera_id)
            results[index].error = f"{type(exc).__name__}: {exc}"
        finally:
            source.close()

    threads = [
        threading.Thread(target=work, args=(i,), name=f"camera-{camera_id}", daemon=True)
        for i, (camera_id, _) in enumerate(cameras)
    ]
    for thread in threads:
        thread.start()
    _wait_for(threads, stop, publisher, report_every_s)
    return results


def _wait_for(
    threads: list[threading.Thread],
    stop: threading.Event,
    publisher: FramePublisher,
    report_every_s: float,
) -> None:
    last_report = time.monotonic()
    while any(t.is_alive() for t in threads):
        if stop.wait(0.5):  # short waits keep the main thread responsive to signals
            for thread in threads:
                thread.join(timeout=20.0)  # a live source may take a moment to return
            return
        if time.monotonic() - last_report >= report_every_s:
            last_report = time.monotonic()
            log.info("%d frames delivered so far", publisher.delivered)
