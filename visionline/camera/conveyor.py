"""``ConveyorSource``: the line generator as a ``visionline camera`` frame source (``sim:line``)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from visionline.camera.frames import EncodedFrame
from visionline.camera.publisher import new_frame_id
from visionline.labels.truth import feedback_from_truth
from visionline.synthetic.generator import LineGenerator
from visionline.synthetic.truth import FrameTruth

if TYPE_CHECKING:
    from visionline.labels.delayed import DelayedLabels


class ConveyorSource:
    """Yields JPEG frames of a ``LineGenerator`` from ``start`` on; ``last_truth`` is the GT.

    With ``realtime_fps`` the belt runs on the wall clock like a real one: each frame is the one
    due now (late frames are skipped, not delayed) and carries its exact capture time, so the
    tracker's belt-speed compensation stays right however busy the machine is.

    With ``labels`` (and ``label_producer``, a confluent-kafka producer) each frame gets its id
    here and its ground truth goes into that ``DelayedLabels``, published on the labels
    feedback topic once its delay is over; what is still held is published at ``close``.

    With ``loop`` (the generator's first frames, ``line_loops.LineLoop``) frame ``index`` is
    ``loop[index % len(loop)]``, replayed rather than rendered; it has no truth to label.
    """

    def __init__(
        self,
        resolution: tuple[int, int] = (1280, 720),
        seed: int = 0,
        jpeg_quality: int = 90,
        start: int = 0,
        realtime_fps: float | None = None,
        clock: Callable[[], float] = time.time,
        labels: DelayedLabels | None = None,
        label_producer: Any = None,
        loop: Sequence[bytes] | None = None,
        **generator: Any,
    ) -> None:
        if (labels is None) != (label_producer is None):
            raise ValueError("give both labels and label_producer, or neither")
        if loop is not None and (not loop or labels is not None):
            raise ValueError("a loop needs frames, and has no truth to label")
        self.loop = loop
        self.generator = LineGenerator(seed, resolution, jpeg_base=jpeg_quality, **generator)
        self.start, self.realtime_fps, self.clock = start, realtime_fps, clock
        self.labels, self.label_producer = labels, label_producer
        self.last_truth: FrameTruth | None = None
        self.last_index: int | None = None

    def __iter__(self) -> Iterator[EncodedFrame]:
        index, t0 = self.start, self.clock()
        while True:
            captured_ms = None
            if self.realtime_fps:
                due = self.start + math.floor((self.clock() - t0) * self.realtime_fps)
                index = max(due, index)
                captured_ms = round((t0 + (index - self.start) / self.realtime_fps) * 1000)
            if self.loop is None:
                data, self.last_truth = self.generator.encode(index)
            else:
                data = self.loop[index % len(self.loop)]
            self.last_index = index
            frame = EncodedFrame(data, captured_at_ms=captured_ms)
            yield frame if self.labels is None else self._labelled(frame, index)
            index += 1

    def _labelled(self, frame: EncodedFrame, index: int) -> EncodedFrame:
        """The frame under an id of its own (camera: the generator's), its truth held back in
        ``labels``; labels now due are published."""
        assert self.labels is not None and self.last_truth is not None  # see __iter__
        now = self.clock()
        captured_ms = frame.captured_at_ms or round(now * 1000)
        camera = self.generator.camera
        frame_id = new_frame_id(camera, index)
        truth = feedback_from_truth(camera, frame_id, captured_ms / 1000, self.last_truth)
        self.labels.add(truth, now)
        self.labels.publish_due(self.label_producer, now)
        return replace(frame, captured_at_ms=captured_ms, frame_id=frame_id)

    def close(self) -> None:
        if self.labels is not None:
            self.labels.flush(self.label_producer)
