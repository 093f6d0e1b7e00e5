"""``ConveyorSource``: the line generator as a ``visionline camera`` frame source (``sim:line``)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from visionline.camera.frames import EncodedFrame
from visionline.inspection.generator import LineGenerator
from visionline.inspection.truth import FrameTruth


class ConveyorSource:
    """Yields JPEG frames of a ``LineGenerator`` from ``start`` on; ``last_truth`` is the GT.

    With ``realtime_fps`` the belt runs on the wall clock like a real one: each frame is the one
    due now (late frames are skipped, not delayed) and carries its exact capture time, so the
    tracker's belt-speed compensation stays right however busy the machine is.
    """

    def __init__(
        self,
        resolution: tuple[int, int] = (1280, 720),
        seed: int = 0,
        jpeg_quality: int = 90,
        start: int = 0,
        realtime_fps: float | None = None,
        clock: Callable[[], float] = time.time,
        **generator: Any,
    ) -> None:
        self.generator = LineGenerator(seed, resolution, jpeg_base=jpeg_quality, **generator)
        self.start, self.realtime_fps, self.clock = start, realtime_fps, clock
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
            data, self.last_truth = self.generator.encode(index)
            self.last_index = index
            yield EncodedFrame(data, captured_at_ms=captured_ms)
            index += 1

    def close(self) -> None:
        pass
