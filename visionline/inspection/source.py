"""``ConveyorSource``: the line generator as a ``visionline camera`` frame source (``sim:line``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from visionline.camera.frames import EncodedFrame
from visionline.inspection.generator import LineGenerator
from visionline.inspection.truth import FrameTruth


class ConveyorSource:
    """Yields JPEG frames of a ``LineGenerator`` from ``start`` on; ``last_truth`` is the GT."""

    def __init__(
        self,
        resolution: tuple[int, int] = (1280, 720),
        seed: int = 0,
        jpeg_quality: int = 90,
        start: int = 0,
        **generator: Any,
    ) -> None:
        self.generator = LineGenerator(seed, resolution, jpeg_base=jpeg_quality, **generator)
        self.start = start
        self.last_truth: FrameTruth | None = None

    def __iter__(self) -> Iterator[EncodedFrame]:
        index = self.start
        while True:
            data, self.last_truth = self.generator.encode(index)
            yield EncodedFrame(data)
            index += 1

    def close(self) -> None:
        pass
