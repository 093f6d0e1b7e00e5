"""The inspect worker's handler with frames in flight: whether a frame is shed, and how many
of its camera's frames were shed just before it, are decided as the frames come, in order,
whatever order their inspections finish in (the parts worker counts those shed frames toward a
part's min_frames)."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace

import cv2
import numpy as np

from services.inspect.handlers import InspectHandlers
from visionline.messages import FrameMeta, ModelRef, SourceRef, pack_envelope
from visionline.settings import InspectSettings

JPEG = cv2.imencode(".jpg", np.full((72, 128, 3), 90, np.uint8))[1].tobytes()


class TimedInspector:
    """Finds no part; each inspection takes the time given for its frame's capture time."""

    def __init__(self, seconds_by_capture: dict[float, float]):
        self.seconds_by_capture = seconds_by_capture
        self.captured = 0.0  # the frame whose inspection starts next (set by the test)

    async def inspect(self, rgb, scaled):
        await asyncio.sleep(self.seconds_by_capture[self.captured])
        return [], [ModelRef(name="part_detector", version="1", served_by="triton")]


def frame_event(captured_at: float, waited_s: float):
    meta = FrameMeta(
        camera_id="line-1",
        frame_id=f"f-{captured_at:.1f}",
        captured_at=captured_at,
        content_type="image/jpeg",
        width=128,
        height=72,
        source=SourceRef(topic="raw", partition=0, offset=int(captured_at * 10)),
    )
    # The Kafka timestamp: when ingest forwarded the frame; the wait is measured from it.
    message = SimpleNamespace(value=pack_envelope(meta, JPEG), timestamp=time.time() - waited_s)
    return SimpleNamespace(message=message)


def test_frames_shed_before_each_inspected_frame_are_counted_as_the_frames_come(tmp_path):
    settings = InspectSettings(snapshot_dir=tmp_path / "snapshots", sample_dir=tmp_path / "samples")
    inspector = TimedInspector({100.0: 0.1, 100.3: 0.3})
    handlers = InspectHandlers(inspector, settings, lambda *refs: None)  # type: ignore[arg-type]

    async def handled(captured_at):
        inspector.captured = captured_at  # read by the inspection that starts now
        return await handlers.inspect(frame_event(captured_at, waited_s=1.0))

    async def overlapped():
        # Late frames (1 s of wait): the shedder wants 0.3 s between inspected frames, so the
        # frame at 100.1 is shed and the one at 100.3 is inspected. All three are in flight at
        # once, as the worker runs them; the first is done before the third.
        tasks = []
        for captured_at in (100.0, 100.1, 100.3):
            tasks.append(asyncio.ensure_future(handled(captured_at)))
            await asyncio.sleep(0.02)  # each runs up to its inspection before the next comes
        return await asyncio.gather(*tasks)

    first, shed, third = asyncio.run(overlapped())
    assert shed is None  # nothing published for a shed frame
    before = [json.loads(value)["frames_shed_before"] for _, value in (first, third)]
    # The frame shed after the first one counts before the third, although the first was
    # still being inspected when it was shed.
    assert before == [0, 1]
