"""A message that crashes a worker on every try is dead-lettered after a few, and the line goes on
(issue 15, finding 3).

No frame crashes the inspect worker any more (the 1 x 4000 PNG that did is decided on now:
test_extreme_frames.py), so the crash comes from the stack's fault injection: the inspect worker
raises on a frame whose bytes hold ``FAULT_MARKER``, as it would on a bug. The worker must crash
(the frame is redelivered), then, once the frame has crashed it ``poison_after_crashes`` times,
dead-letter it as ``poison_message`` with the error, go on with the next frame, and be shown
unhealthy (a crash loop) while it happened.
"""

from __future__ import annotations

import time
import uuid

from tests.integration.conftest import FAULT_MARKER
from tests.integration.pipeline import Camera, TopicReader
from visionline.camera_registry import CameraSpec, upsert_cameras
from visionline.messages import Topic
from visionline.settings import CommonSettings
from visionline.synthetic import LineGenerator


def with_comment(jpeg: bytes, comment: bytes) -> bytes:
    """The same JPEG with a COM segment after SOI: still a valid image."""
    segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
    return jpeg[:2] + segment + jpeg[2:]


def test_a_frame_that_keeps_crashing_inspect_is_dead_lettered_and_the_line_goes_on(
    stack, engine, dead_letters
):
    camera_id = f"test-line-{uuid.uuid4().hex[:8]}"
    upsert_cameras(engine, [CameraSpec(camera_id=camera_id, pipeline="inspect")], pepper="dev")
    observations = TopicReader(stack.kafka_bootstrap, Topic.PART_OBSERVATIONS)
    frames = LineGenerator(seed=11)
    tag = uuid.uuid4().hex[:6]
    poison_id, good_id = f"poison-{tag}", f"good-after-{tag}"
    first_pid = stack.pids("inspect")[0]
    camera = Camera(stack.kafka_bootstrap)
    camera.send(camera_id, with_comment(frames.encode(0)[0], FAULT_MARKER.encode()), poison_id)
    camera.send(camera_id, frames.encode(1)[0], good_id)
    camera.flush()

    # While it crashes, `make status` shows the worker unhealthy (a crash loop), not healthy.
    looping, deadline = None, time.monotonic() + 180
    while looping is None and time.monotonic() < deadline:
        inspect = stack.status().members("inspect")[0]
        if inspect.state == "unhealthy" and "crash loop" in (inspect.last_error or ""):
            looping = inspect
        time.sleep(0.2)
    assert looping is not None, "the crash-looping inspect worker was never shown unhealthy"

    def poison(seen):
        return [d for d in seen if d["frame_id"] == poison_id]

    letters = poison(dead_letters.wait_for(lambda seen: poison(seen), timeout=180))
    assert len(letters) == 1
    letter = letters[0]
    crashes = CommonSettings().poison_after_crashes
    assert letter["error_type"] == "poison_message" and letter["stage"] == "inspect"
    assert f"crashed the inspect worker {crashes} times" in letter["error_message"]
    assert "InjectedFault" in letter["error_message"]
    assert letter["camera_id"] == camera_id

    def mine(seen):
        return {m["frame"]["frame_id"] for m in seen if m["frame"]["camera_id"] == camera_id}

    seen = observations.wait_for(lambda seen: good_id in mine(seen), timeout=120)
    assert mine(seen) == {good_id}  # the poison never came out as an observation
    observations.close()
    assert first_pid not in stack.pids("inspect")  # it did crash: the crashes were real
